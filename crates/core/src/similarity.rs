//! Whether two cases of one customer are the same request, e.g. asked once by e-mail and
//! once by WhatsApp ("cross-channel duplicates").
//!
//! Two rules, both pure:
//! - **similar text**: the requests (subject and first inbound message) share enough words.
//!   Words are lower-cased, umlauts folded (`ä` → `ae`, `ß` → `ss`), short words and a small
//!   German and English stop-word list dropped, and a light suffix stemming applied; two words
//!   also match when the shorter one (at least five letters) begins or ends the longer one,
//!   which catches German compounds ("Adresse" / "Adressänderung"). The score is the overlap
//!   coefficient: matched words divided by the number of words of the shorter request.
//! - **other channel**: two cases opened within 24 hours of each other on different channels.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Channel;

/// Two cases opened on different channels within this time (microseconds) are taken for the
/// same request; it is also how recent another case's activity must be to be considered.
pub const SAME_REQUEST_WINDOW_US: i64 = 24 * 3600 * 1_000_000;

/// Lowest overlap score at which two requests count as similar.
pub const MIN_SCORE: f64 = 0.3;

/// Words shorter than this (in characters) are ignored.
const MIN_WORD_CHARS: usize = 3;
/// At most this many distinct words of a request are compared (the beginning says what it
/// is about; signatures and quoted text come later).
const MAX_TOKENS: usize = 40;
/// A word matches a longer one it begins or ends only if it has at least this many characters.
const MIN_AFFIX_CHARS: usize = 5;
/// Stemming never leaves fewer characters than this.
const MIN_STEM_CHARS: usize = 4;

/// Suffixes stripped by the stemmer, longest first (after umlaut folding).
const SUFFIXES: &[&str] = &["ern", "en", "er", "es", "e", "n", "s"];

/// Words that say nothing about the request (German and English), umlauts folded, sorted.
#[rustfmt::skip]
const STOP_WORDS: &[&str] = &[
    "aber", "about", "after", "again", "alle", "allem", "allen", "aller", "alles", "also", "and", "anfrage", "any",
    "are", "auch", "auf", "aus", "been", "bei", "beim", "best", "bin", "bis", "bitte", "but", "bzw", "can", "could",
    "damen", "damit", "dank", "danke", "dann", "das", "dass", "dear", "dem", "den", "denn", "der", "des", "did",
    "die", "dies", "diese", "diesem", "diesen", "dieser", "dieses", "doch", "does", "dort", "durch", "ein", "eine",
    "einem", "einen", "einer", "eines", "etwas", "euch", "euer", "for", "frage", "fragen", "frau", "freundlichen",
    "from", "fuer", "geehrte", "geehrter", "gibt", "gruesse", "gruessen", "gruss", "guten", "habe", "haben", "had",
    "hallo", "has", "hat", "hatte", "have", "hello", "her", "here", "herr", "herren", "hier", "him", "his", "how",
    "ich", "ihm", "ihn", "ihnen", "ihr", "ihre", "ihrem", "ihren", "ihrer", "ins", "into", "ist", "its", "jetzt",
    "just", "kann", "kein", "keine", "kind", "koennen", "liebe", "lieben", "lieber", "mein", "meine", "meinem",
    "meinen", "meiner", "mfg", "mich", "mir", "mit", "more", "muss", "nach", "nein", "neu", "neue", "neuen",
    "neuer", "new", "nicht", "noch", "not", "now", "nun", "nur", "oder", "ohne", "our", "out", "please", "question",
    "regards", "schon", "sehr", "sein", "seine", "she", "should", "sich", "sie", "sind", "soll", "some", "tag",
    "than", "thank", "thanks", "that", "the", "their", "them", "then", "there", "these", "they", "this", "ueber",
    "und", "uns", "unser", "unsere", "viele", "vielen", "vom", "von", "vor", "war", "waren", "was", "weil", "wenn",
    "wer", "werde", "werden", "were", "what", "when", "where", "which", "who", "wie", "wieder", "will", "wir",
    "wird", "with", "would", "wurde", "you", "your", "zum", "zur",
];

/// How alike two requests are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// Overlap coefficient in `0.0..=1.0`.
    pub score: f64,
    /// Words that match a word of the other request (counted from both sides, the lower
    /// count; at most the number of words of the shorter request).
    pub shared: usize,
    /// Whether this is enough to call the requests similar: a score of at least
    /// [`MIN_SCORE`] and at least two shared words (one if the shorter request has one word).
    pub similar: bool,
}

/// Why two cases are taken for the same request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RelatedReason {
    /// Their requests share enough words.
    SimilarText,
    /// Opened within 24 hours of each other on different channels.
    OtherChannel,
}

/// What the rules need to know of one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSummary<'a> {
    /// Channel of the message that opened the case.
    pub channel: Channel,
    /// When the case was opened, microseconds since the epoch.
    pub opened_at_us: i64,
    /// Subject and text of the first inbound message.
    pub text: &'a str,
}

/// Why and how strongly two cases are related.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Relation {
    pub reason: RelatedReason,
    /// The text similarity score (also given when the reason is the channel).
    pub score: f64,
}

/// Lower-cases and folds German umlauts and `ß` so that "Straße" and "Strasse" meet.
fn fold(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 4);
    for ch in word.chars().flat_map(char::to_lowercase) {
        match ch {
            'ä' => out.push_str("ae"),
            'ö' => out.push_str("oe"),
            'ü' => out.push_str("ue"),
            'ß' => out.push_str("ss"),
            _ => out.push(ch),
        }
    }
    out
}

/// Strips one common inflection suffix, keeping at least [`MIN_STEM_CHARS`] characters.
fn stem(word: &str) -> String {
    if word.chars().all(|c| c.is_ascii_digit()) {
        return word.to_string();
    }
    for suffix in SUFFIXES {
        if let Some(rest) = word.strip_suffix(suffix) {
            if rest.chars().count() >= MIN_STEM_CHARS {
                return rest.to_string();
            }
        }
    }
    word.to_string()
}

/// The distinct significant words of a text, stemmed, in order of first appearance (at most
/// [`MAX_TOKENS`]).
pub fn tokens(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for raw in text.split(|c: char| !c.is_alphanumeric()) {
        if raw.chars().count() < MIN_WORD_CHARS {
            continue;
        }
        let word = fold(raw);
        if STOP_WORDS.binary_search(&word.as_str()).is_ok() {
            continue;
        }
        let word = stem(&word);
        if !out.contains(&word) {
            out.push(word);
            if out.len() == MAX_TOKENS {
                break;
            }
        }
    }
    out
}

/// Equal, or the shorter (of at least [`MIN_AFFIX_CHARS`]) begins or ends the longer.
fn words_match(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short.chars().count() >= MIN_AFFIX_CHARS && (long.starts_with(short) || long.ends_with(short))
}

/// Compares two requests (each: subject and first inbound message text).
pub fn compare(a: &str, b: &str) -> Similarity {
    let (ta, tb) = (tokens(a), tokens(b));
    let smaller = ta.len().min(tb.len());
    if smaller == 0 {
        return Similarity { score: 0.0, shared: 0, similar: false };
    }
    let matched = |xs: &[String], ys: &[String]| xs.iter().filter(|w| ys.iter().any(|v| words_match(w, v))).count();
    // A short word may match several longer ones: count from both sides and keep the lower.
    let shared = matched(&ta, &tb).min(matched(&tb, &ta));
    let score = shared as f64 / smaller as f64;
    let similar = score >= MIN_SCORE && shared >= smaller.min(2);
    Similarity { score, shared, similar }
}

/// Whether two cases of the same customer are the same request: similar text, or opened
/// within [`SAME_REQUEST_WINDOW_US`] of each other on different channels. Similar text is
/// reported in preference to the channel.
pub fn relate(a: &RequestSummary<'_>, b: &RequestSummary<'_>) -> Option<Relation> {
    let sim = compare(a.text, b.text);
    if sim.similar {
        return Some(Relation { reason: RelatedReason::SimilarText, score: sim.score });
    }
    // On another channel the same day, a request counts as related with less in common (short
    // messenger texts), but it must share at least one content word: "Hallo?" is no request.
    let close = (a.opened_at_us - b.opened_at_us).abs() <= SAME_REQUEST_WINDOW_US;
    (close && a.channel != b.channel && sim.shared >= 1)
        .then_some(Relation { reason: RelatedReason::OtherChannel, score: sim.score })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;

    #[test]
    fn stop_words_are_sorted_folded_and_unique() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]), "STOP_WORDS must be sorted and unique for binary search");
        for w in STOP_WORDS {
            assert_eq!(fold(w), *w, "stop word {w:?} must be folded");
            assert!(w.chars().count() >= MIN_WORD_CHARS, "stop word {w:?} is shorter than any word kept");
        }
    }

    #[test]
    fn tokens_are_normalised_stemmed_and_free_of_stop_words() {
        let table: &[(&str, &[&str])] = &[
            ("Umzug zum 1. Mai", &["umzug", "mai"]),
            ("Ich ziehe am 1. Mai um, neue Adresse Goethestraße 5", &["zieh", "mai", "adress", "goethestrass"]),
            ("Adressänderung: Umzug nach Berlin", &["adressaenderung", "umzug", "berli"]),
            ("Rechnung doppelt abgebucht", &["rechnung", "doppelt", "abgebucht"]),
            ("Rechnungen, RECHNUNG; rechnung!", &["rechnung"]),
            ("Hallo, bitte um Rückruf. Mit freundlichen Grüßen", &["rueckruf"]),
            ("Invoice 4711 paid twice", &["invoic", "4711", "paid", "twic"]),
            ("", &[]),
            ("!! -- ??", &[]),
        ];
        for (text, want) in table {
            assert_eq!(tokens(text), *want, "tokens of {text:?}");
        }
        let long: String = (0..100).map(|i| format!("wort{i} ")).collect();
        assert_eq!(tokens(&long).len(), MAX_TOKENS);
    }

    #[test]
    fn similar_requests_match_and_unrelated_ones_do_not() {
        let moving = "Umzug zum 1. Mai Ich ziehe am 1. Mai um, neue Adresse Goethestraße 5";
        let table: &[(&str, &str, bool)] = &[
            (moving, "Adressänderung: Umzug nach Berlin", true),
            (moving, "Adressänderung: Umzug nach Berlin. Bitte ändern Sie meine Adresse zum 1. Mai.", true),
            ("Umzug", "Umzug nach Berlin", true),
            ("Change of address", "New address: moving to Berlin, address change from May", true),
            ("Zählerstand", "Mein Zaehlerstand für April", true),
            ("Rechnung 4711 doppelt abgebucht", "Sie haben die Rechnung 4711 zweimal abgebucht!", true),
            (moving, "Rechnung doppelt abgebucht", false),
            ("Adressänderung: Umzug nach Berlin", "Rechnung doppelt abgebucht", false),
            ("Rechnung doppelt abgebucht", "Vertrag kündigen zum Jahresende", false),
            ("Zählerstand Mai", "Rechnung Mai", false),
            ("Hallo", "Hallo, bitte um Rückruf", false),
            ("", "", false),
        ];
        for (a, b, want) in table {
            let ab = compare(a, b);
            assert_eq!(ab.similar, *want, "compare({a:?}, {b:?}) = {ab:?}");
            assert_eq!(compare(b, a), ab, "compare is symmetric for {a:?} / {b:?}");
            assert!((0.0..=1.0).contains(&ab.score));
        }
    }

    #[test]
    fn relation_is_similar_text_or_a_shared_word_on_another_channel_within_a_day() {
        let s = |channel, hours: i64, text| RequestSummary { channel, opened_at_us: hours * HOUR, text };
        let moving = s(Channel::Email, 0, "Umzug zum 1. Mai, neue Adresse Goethestraße 5");
        let table: &[(RequestSummary<'_>, Option<RelatedReason>)] = &[
            (s(Channel::Whatsapp, 3, "Adressänderung: Umzug nach Berlin"), Some(RelatedReason::SimilarText)),
            (s(Channel::Email, 3, "Adressänderung: Umzug nach Berlin"), Some(RelatedReason::SimilarText)),
            (s(Channel::Email, 72, "Adressänderung: Umzug"), Some(RelatedReason::SimilarText)),
            (s(Channel::Whatsapp, 3, "Frage zur Rechnung und Adresse"), Some(RelatedReason::OtherChannel)),
            (s(Channel::Whatsapp, 3, "Rechnung doppelt abgebucht"), None),
            (s(Channel::Sms, -23, "Hallo?"), None),
            (s(Channel::Email, 3, "Rechnung doppelt abgebucht"), None),
            (s(Channel::Whatsapp, 25, "Rechnung doppelt abgebucht"), None),
        ];
        for (other, want) in table {
            let got = relate(&moving, other);
            assert_eq!(got.map(|r| r.reason), *want, "{other:?}: {got:?}");
            assert_eq!(relate(other, &moving).map(|r| r.reason), *want, "relate is symmetric for {other:?}");
        }
    }
}
