//! The style check of outgoing replies: outdated or bureaucratic phrases (a list that is data,
//! `data/style_phrases.tsv`), passive constructions and very long sentences — each finding
//! with its span (in Unicode characters), the phrase, the reason and a modern suggestion.

use serde::Serialize;

/// The built-in phrase list.
const BUILTIN: &str = include_str!("../data/style_phrases.tsv");
/// A sentence with more words than this is flagged.
const LONG_SENTENCE_WORDS: usize = 30;

/// One thing the check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Start, in characters from the beginning of the text.
    pub start: usize,
    /// End (exclusive), in characters.
    pub end: usize,
    pub phrase: String,
    pub reason: String,
    pub suggestion: String,
    /// `phrase`, `passive` or `long_sentence`.
    pub kind: &'static str,
}

#[derive(Debug, Clone)]
struct Phrase {
    language: String,
    words: Vec<char>,
    reason: String,
    suggestion: String,
}

/// A phrase list and the rules.
#[derive(Debug, Clone)]
pub struct StyleGuide {
    phrases: Vec<Phrase>,
}

fn lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

impl StyleGuide {
    /// The built-in list.
    pub fn builtin() -> StyleGuide {
        // The built-in file is checked by a test; a broken line there is a build defect.
        StyleGuide::parse(BUILTIN).unwrap_or(StyleGuide { phrases: Vec::new() })
    }

    /// A list in the format of `data/style_phrases.tsv` (`language`, `phrase`, `reason`,
    /// `suggestion`, tab-separated; `#` comments).
    pub fn parse(tsv: &str) -> Result<StyleGuide, String> {
        let mut phrases = Vec::new();
        for (n, [language, phrase, reason, suggestion]) in crate::data::rows::<4>(tsv)? {
            if phrase.trim().is_empty() {
                return Err(format!("line {n}: empty phrase"));
            }
            phrases.push(Phrase {
                language: language.trim().to_string(),
                words: phrase.trim().chars().map(lower).collect(),
                reason: reason.trim().to_string(),
                suggestion: suggestion.trim().to_string(),
            });
        }
        // Longest first, so that "sehr verehrte damen und herren" wins over "sehr verehrte".
        phrases.sort_by_key(|p| std::cmp::Reverse(p.words.len()));
        Ok(StyleGuide { phrases })
    }

    /// The findings for `text` in `language` (`de` or `en`), in text order.
    pub fn check(&self, text: &str, language: &str) -> Vec<Finding> {
        let chars: Vec<char> = text.chars().collect();
        let low: Vec<char> = chars.iter().map(|c| lower(*c)).collect();
        let boundary = |i: usize| i >= low.len() || !low[i].is_alphanumeric();
        let mut out: Vec<Finding> = Vec::new();
        for p in self.phrases.iter().filter(|p| p.language == language) {
            let n = p.words.len();
            let mut i = 0;
            while i + n <= low.len() {
                let starts_word = i == 0 || !low[i - 1].is_alphanumeric();
                if starts_word && low[i..i + n] == p.words[..] && boundary(i + n) {
                    if !out.iter().any(|f| f.start < i + n && i < f.end) {
                        out.push(Finding {
                            start: i,
                            end: i + n,
                            phrase: chars[i..i + n].iter().collect(),
                            reason: p.reason.clone(),
                            suggestion: p.suggestion.clone(),
                            kind: "phrase",
                        });
                    }
                    i += n;
                } else {
                    i += 1;
                }
            }
        }
        out.extend(passives(&chars, &low, language));
        out.extend(long_sentences(&chars, language));
        out.sort_by_key(|f| (f.start, f.end));
        out
    }
}

/// Words with their character spans.
fn words(low: &[char]) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < low.len() {
        if low[i].is_alphanumeric() {
            let s = i;
            while i < low.len() && (low[i].is_alphanumeric() || low[i] == '-') {
                i += 1;
            }
            out.push((s, i, low[s..i].iter().collect()));
        } else {
            i += 1;
        }
    }
    out
}

fn passives(chars: &[char], low: &[char], language: &str) -> Vec<Finding> {
    let ws = words(low);
    let sentence_end = |from: usize, to: usize| low[from..to].iter().any(|c| matches!(c, '.' | '!' | '?' | ';'));
    let mut out = Vec::new();
    for (k, (s, e, w)) in ws.iter().enumerate() {
        let (aux, reach) = match language {
            "de" => (matches!(w.as_str(), "wird" | "werden" | "wurde" | "wurden" | "worden"), 8),
            "en" => (matches!(w.as_str(), "is" | "are" | "was" | "were" | "been" | "be" | "being"), 2),
            _ => (false, 0),
        };
        if !aux {
            continue;
        }
        let participle = ws[k + 1..].iter().take(reach).find(|(ps, _, p)| {
            !sentence_end(*e, *ps)
                && match language {
                    "de" => p.starts_with("ge") && p.chars().count() > 4 && (p.ends_with('t') || p.ends_with("en")),
                    _ => p.chars().count() > 4 && p.ends_with("ed"),
                }
        });
        if let Some((_, pe, _)) = participle {
            let (reason, suggestion) = match language {
                "de" => ("Passiv: unklar, wer handelt", "aktiv formulieren: „Wir prüfen …“ statt „… wird geprüft“"),
                _ => {
                    ("passive voice: unclear who acts", "say who does it: \"we will check\" instead of \"is checked\"")
                }
            };
            out.push(Finding {
                start: *s,
                end: *pe,
                phrase: chars[*s..*pe].iter().collect(),
                reason: reason.into(),
                suggestion: suggestion.into(),
                kind: "passive",
            });
        }
    }
    out
}

fn long_sentences(chars: &[char], language: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i <= chars.len() {
        let end_here = i == chars.len()
            || (matches!(chars[i], '.' | '!' | '?') && chars.get(i + 1).is_none_or(|c| c.is_whitespace()));
        if end_here {
            let sentence: String = chars[start..i].iter().collect();
            let n = sentence.split_whitespace().filter(|w| w.chars().any(char::is_alphanumeric)).count();
            if n > LONG_SENTENCE_WORDS {
                let lead = sentence.len() - sentence.trim_start().len();
                let s = start + sentence[..lead].chars().count();
                let (reason, suggestion) = match language {
                    "de" => {
                        (format!("sehr langer Satz ({n} Wörter)"), "in zwei oder drei kürzere Sätze teilen".to_string())
                    }
                    _ => (
                        format!("very long sentence ({n} words)"),
                        "split it into two or three shorter sentences".to_string(),
                    ),
                };
                out.push(Finding {
                    start: s,
                    end: i,
                    phrase: chars[s..i].iter().collect(),
                    reason,
                    suggestion,
                    kind: "long_sentence",
                });
            }
            start = i + 1;
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_list_parses_and_covers_both_languages() {
        let g = StyleGuide::parse(BUILTIN).unwrap();
        assert!(g.phrases.iter().filter(|p| p.language == "de").count() >= 20);
        assert!(g.phrases.iter().filter(|p| p.language == "en").count() >= 10);
        assert!(StyleGuide::parse("de\tnur zwei").is_err());
    }

    #[test]
    fn outdated_phrases_are_found_with_character_spans() {
        let g = StyleGuide::builtin();
        let text = "Sehr verehrte Damen und Herren, bezugnehmend auf Ihr Schreiben: anbei übersenden wir Ihnen die Police. Hochachtungsvoll";
        let f = g.check(text, "de");
        let phrases: Vec<&str> = f.iter().filter(|f| f.kind == "phrase").map(|f| f.phrase.as_str()).collect();
        assert_eq!(
            phrases,
            ["Sehr verehrte Damen und Herren", "bezugnehmend auf", "anbei übersenden wir Ihnen", "Hochachtungsvoll"]
        );
        let chars: Vec<char> = text.chars().collect();
        for x in &f {
            assert_eq!(chars[x.start..x.end].iter().collect::<String>(), x.phrase, "spans are in characters");
        }
        assert!(g.check("Mit freundlichen Grüßen", "de").is_empty());
        assert!(g.check("Hochachtungsvoll", "en").is_empty(), "German phrases are not checked in English");
        let en = g.check("Please find attached your invoice. Yours faithfully", "en");
        assert_eq!(
            en.iter().map(|f| f.phrase.as_str()).collect::<Vec<_>>(),
            ["Please find attached", "Yours faithfully"]
        );
        assert!(g.check("seitensprung", "de").is_empty(), "whole words only");
    }

    #[test]
    fn passives_and_long_sentences_are_found() {
        let g = StyleGuide::builtin();
        let f = g.check("Ihr Antrag wird derzeit von uns geprüft.", "de");
        assert!(f.iter().any(|f| f.kind == "passive" && f.phrase == "wird derzeit von uns geprüft"), "{f:?}");
        assert!(g.check("Wir prüfen Ihren Antrag.", "de").iter().all(|f| f.kind != "passive"));
        let f = g.check("Your request was received and is processed by our team.", "en");
        assert_eq!(f.iter().filter(|f| f.kind == "passive").count(), 2, "{f:?}");
        let long = format!("{}.", vec!["Wort"; 35].join(" "));
        let f = g.check(&format!("Kurz. {long} Auch kurz."), "de");
        let l: Vec<_> = f.iter().filter(|f| f.kind == "long_sentence").collect();
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].start, l[0].reason.as_str()), (6, "sehr langer Satz (35 Wörter)"));
    }
}
