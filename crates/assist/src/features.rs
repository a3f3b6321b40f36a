//! A text as features for a linear model, in two blocks: its words (lower-cased unigrams and
//! bigrams) and the characters within its words (2- to 5-grams of each word padded with a space
//! on either side, so "kündigen" and "kündigung" share " künd"). Every n-gram is hashed into
//! `2^bits` buckets (FNV-1a, stable across builds and platforms).
//!
//! [`features`] weighs a text on its own (`1 + ln(count)`, unit length); the classifier
//! ([`crate::classifier`]) uses [`grams`] and adds the weights it learned from its training
//! set (inverse document frequency, each block scaled to unit length on its own).

/// Feature index and value.
pub type Sparse = Vec<(u32, f32)>;

/// The blocks of features: 0 the words, 1 the characters.
pub(crate) const BLOCKS: usize = 2;

/// FNV-1a of `kind` and the parts, with a separator between parts.
fn fnv1a(kind: u8, parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    eat(kind);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            eat(0x1f);
        }
        for b in p.bytes() {
            eat(b);
        }
    }
    h
}

/// FNV-1a of `kind` and the UTF-8 of `chars`.
fn fnv1a_chars(kind: u8, chars: &[char]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    eat(kind);
    let mut buf = [0u8; 4];
    for c in chars {
        for b in c.encode_utf8(&mut buf).bytes() {
            eat(b);
        }
    }
    h
}

/// The lower-cased runs of letters and digits of a text.
fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(|w| w.to_lowercase())
}

/// The words of a text: lower-cased runs of letters and digits, a number as `<num>` (umlauts
/// kept; "ue"-spelling and umlaut spelling meet in the character n-grams).
pub fn words(text: &str) -> Vec<String> {
    tokens(text).map(|w| if w.chars().all(|c| c.is_ascii_digit()) { "<num>".to_string() } else { w }).collect()
}

/// Calls `emit(block, hash)` for every n-gram of `text`, repeats included: each word and each
/// pair of neighbouring words ([`words`], block 0), and the character 2- to 5-grams of each
/// token padded with spaces, digits as they are (block 1; a token shorter than `n` counts once,
/// whole, as in scikit-learn's `char_wb`).
pub(crate) fn grams(text: &str, mut emit: impl FnMut(usize, u64)) {
    let ws = words(text);
    for (i, w) in ws.iter().enumerate() {
        emit(0, fnv1a(b'w', &[w]));
        if let Some(next) = ws.get(i + 1) {
            emit(0, fnv1a(b'b', &[w, next]));
        }
    }
    let mut chars = Vec::new();
    for t in tokens(text) {
        chars.clear();
        chars.push(' ');
        chars.extend(t.chars());
        chars.push(' ');
        for n in 2..=5 {
            if n >= chars.len() {
                emit(1, fnv1a_chars(b'c', &chars));
                break;
            }
            for g in chars.windows(n) {
                emit(1, fnv1a_chars(b'c', g));
            }
        }
    }
}

/// The hashed features of `text` on their own: each bucket weighted `1 + ln(count)`, the whole
/// scaled to unit length, sorted by bucket.
pub fn features(text: &str, bits: u8) -> Sparse {
    let mask = (1u64 << bits) - 1;
    let mut counts: std::collections::HashMap<u32, f32> = std::collections::HashMap::new();
    grams(text, |_, h| *counts.entry((h & mask) as u32).or_insert(0.0) += 1.0);
    let mut out: Sparse = counts.into_iter().map(|(i, c)| (i, 1.0 + c.ln())).collect();
    let norm = out.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        for (_, v) in &mut out {
            *v /= norm;
        }
    }
    out.sort_unstable_by_key(|(i, _)| *i);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_stable_unit_length_and_share_word_stems() {
        let a = features("Ich möchte kündigen", 18);
        assert_eq!(a, features("ich MÖCHTE kündigen!", 18), "case and punctuation do not matter");
        let norm: f32 = a.iter().map(|(_, v)| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        let b: std::collections::HashSet<u32> = features("Kündigung", 18).into_iter().map(|(i, _)| i).collect();
        let shared = a.iter().filter(|(i, _)| b.contains(i)).count();
        assert!(shared >= 3, "kündigen and Kündigung share n-grams: {shared}");
        assert!(features("", 18).is_empty());
        assert_eq!(words("Vertrag 4711, ab 1.5."), ["vertrag", "<num>", "ab", "<num>", "<num>"]);
    }

    #[test]
    fn grams_are_words_pairs_and_padded_character_n_grams() {
        let mut seen = Vec::new();
        grams("Ab", |b, h| seen.push((b, h)));
        // "ab" as a word; " a", "ab", "b " and " ab", "ab " and, shorter than 4, " ab " once.
        assert_eq!(seen.iter().filter(|(b, _)| *b == 0).count(), 1);
        assert_eq!(seen.iter().filter(|(b, _)| *b == 1).count(), 6);
        let mut two = 0;
        grams("ja ja", |b, _| two += usize::from(b == 0));
        assert_eq!(two, 3, "two words and their pair");
    }
}
