//! Sentiment of a customer message, German and English: a lexicon of words and stems (data,
//! `data/sentiment_lexicon.tsv`) with negation ("nicht schlecht", "not bad" are not negative:
//! a negated word counts with the opposite sign, a negative one at half, a positive one at
//! three quarters — "nicht zufrieden" is nearly "unzufrieden"), intensifiers ("sehr", "very": half
//! again) and exclamation marks (stronger feelings). The sum is squashed into −1 … +1.

use serde::Serialize;

const BUILTIN: &str = include_str!("../data/sentiment_lexicon.tsv");
/// Words a negation reaches after it.
const NEGATION_REACH: usize = 3;

/// The result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sentiment {
    /// −1 (very negative) … +1 (very positive).
    pub score: f32,
    pub label: SentimentLabel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SentimentLabel {
    Negative,
    Neutral,
    Positive,
}

#[derive(Debug, Clone)]
struct Entry {
    language: String,
    /// Words of the entry (a stem for the last one unless `whole`).
    words: Vec<String>,
    whole: bool,
    score: f32,
}

/// A lexicon.
#[derive(Debug, Clone)]
pub struct Lexicon {
    entries: Vec<Entry>,
}

fn negator(w: &str, language: &str) -> bool {
    match language {
        "de" => matches!(
            w,
            "nicht" | "kein" | "keine" | "keinen" | "keinem" | "keiner" | "nie" | "niemals" | "kaum" | "ohne"
        ),
        _ => matches!(
            w,
            "not"
                | "no"
                | "never"
                | "hardly"
                | "without"
                | "dont"
                | "didnt"
                | "isnt"
                | "wasnt"
                | "cant"
                | "wont"
                | "nt"
        ),
    }
}

fn intensifier(w: &str, language: &str) -> bool {
    match language {
        "de" => matches!(w, "sehr" | "total" | "extrem" | "absolut" | "echt" | "wirklich" | "äußerst" | "völlig"),
        _ => matches!(w, "very" | "really" | "extremely" | "absolutely" | "totally" | "so" | "completely"),
    }
}

impl Lexicon {
    /// The built-in lexicon.
    pub fn builtin() -> Lexicon {
        // Checked by a test; a broken built-in file is a build defect.
        Lexicon::parse(BUILTIN).unwrap_or(Lexicon { entries: Vec::new() })
    }

    /// A lexicon in the format of `data/sentiment_lexicon.tsv`.
    pub fn parse(tsv: &str) -> Result<Lexicon, String> {
        let mut entries = Vec::new();
        for (n, [language, stem, score]) in crate::data::rows::<3>(tsv)? {
            let score: f32 = score.trim().parse().map_err(|_| format!("line {n}: the score is not a number"))?;
            let whole = stem.ends_with('$');
            let words: Vec<String> = stem.trim_end_matches('$').split_whitespace().map(str::to_lowercase).collect();
            if words.is_empty() {
                return Err(format!("line {n}: empty word"));
            }
            entries.push(Entry { language: language.trim().to_string(), words, whole, score });
        }
        // Longer entries first: "keine antwort" is matched before "keine" is read as negation.
        entries.sort_by_key(|e| std::cmp::Reverse(e.words.len()));
        Ok(Lexicon { entries })
    }

    /// The sentiment of `text` in `language` (`de` or `en`).
    pub fn analyse(&self, text: &str, language: &str) -> Sentiment {
        // Clause ends ("|") end a negation's reach: "nicht schlecht, danke" thanks.
        let lowered: String = text
            .to_lowercase()
            .replace("n't", " nt")
            .chars()
            .map(|c| if matches!(c, ',' | '.' | ';' | ':' | '?' | '(' | ')') { '|' } else { c })
            .collect::<String>()
            .replace('|', " | ");
        let words: Vec<String> = lowered
            .split(|c: char| !c.is_alphanumeric() && c != '!' && c != '|')
            .flat_map(|w| {
                // "schlecht!!" → "schlecht", "!", "!"
                let bangs = w.chars().filter(|c| *c == '!').count();
                let word: String = w.chars().filter(|c| *c != '!').collect();
                std::iter::once(word).chain(std::iter::repeat_n("!".to_string(), bangs))
            })
            .filter(|w| !w.is_empty())
            .collect();
        let entries: Vec<&Entry> = self.entries.iter().filter(|e| e.language == language).collect();
        let mut sum = 0f32;
        let mut negated_until = 0usize;
        let mut boost = 1f32;
        let mut i = 0;
        while i < words.len() {
            let w = words[i].as_str();
            if w == "!" {
                sum *= 1.1;
                i += 1;
                continue;
            }
            if w == "|" {
                negated_until = 0;
                boost = 1.0;
                i += 1;
                continue;
            }
            let hit = entries.iter().find(|e| {
                let n = e.words.len();
                i + n <= words.len()
                    && e.words.iter().enumerate().all(|(k, ew)| {
                        let word = &words[i + k];
                        if k + 1 == n && !e.whole {
                            word.starts_with(ew.as_str())
                        } else {
                            word == ew
                        }
                    })
            });
            if let Some(e) = hit {
                let mut s = e.score * boost;
                if i < negated_until {
                    // "nicht zufrieden" is nearly "unzufrieden"; "nicht schlecht" is only
                    // mildly good.
                    s *= if s > 0.0 { -0.75 } else { -0.5 };
                }
                sum += s;
                boost = 1.0;
                i += e.words.len();
                continue;
            }
            if negator(w, language) {
                negated_until = i + 1 + NEGATION_REACH;
            } else if intensifier(w, language) {
                boost = 1.5;
            } else {
                boost = 1.0;
            }
            i += 1;
        }
        let score = sum / (sum * sum + 15.0).sqrt();
        let label = if score <= -0.3 {
            SentimentLabel::Negative
        } else if score >= 0.3 {
            SentimentLabel::Positive
        } else {
            SentimentLabel::Neutral
        };
        Sentiment { score, label }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SentimentLabel::*;

    #[test]
    fn the_builtin_lexicon_parses() {
        let l = Lexicon::parse(BUILTIN).unwrap();
        assert!(l.entries.len() > 80);
        assert!(Lexicon::parse("de\tgut").is_err());
        assert!(Lexicon::parse("de\tgut\tsehr").is_err());
    }

    #[test]
    fn negation_intensifiers_and_plain_texts() {
        let l = Lexicon::builtin();
        let cases: &[(&str, &str, SentimentLabel)] = &[
            ("de", "Der Service ist schlecht.", Negative),
            ("de", "Der Service ist nicht schlecht.", Neutral),
            ("de", "Das war gar nicht schlecht, danke!", Positive),
            ("de", "Ich bin sehr enttäuscht und verärgert!!", Negative),
            ("de", "Seit Wochen keine Antwort, eine Frechheit.", Negative),
            ("de", "Vielen Dank, super schnell erledigt!", Positive),
            ("de", "Ich bin nicht zufrieden.", Negative),
            ("de", "Mein Zählerstand ist 4711.", Neutral),
            ("en", "The service is not bad at all.", Neutral),
            ("en", "This is terrible, I'm really angry.", Negative),
            ("en", "Thanks, very helpful and friendly!", Positive),
            ("en", "I'm not happy with your answer.", Negative),
            ("en", "My meter reading is 4711.", Neutral),
            ("en", "It isn't good.", Negative),
        ];
        for (lang, text, want) in cases {
            let s = l.analyse(text, lang);
            assert_eq!(s.label, *want, "{text}: {s:?}");
            assert!((-1.0..=1.0).contains(&s.score));
        }
        let a = l.analyse("Ich bin enttäuscht.", "de").score;
        let b = l.analyse("Ich bin sehr enttäuscht!", "de").score;
        assert!(b < a, "stronger: {b} < {a}");
    }
}
