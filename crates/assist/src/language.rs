//! Which language a text is in: German or English, told apart by `whatlang` (trigram
//! statistics, offline). Other languages are reported as such; a text too short to tell is
//! `None`.

use serde::Serialize;

/// A detected language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    De,
    En,
    /// Neither German nor English.
    Other,
}

impl Language {
    /// `de`, `en`, `other`.
    pub fn code(self) -> &'static str {
        match self {
            Language::De => "de",
            Language::En => "en",
            Language::Other => "other",
        }
    }
}

/// The language of `text` and how sure the detector is (0–1); `None` when the text has too
/// few letters to tell.
pub fn detect(text: &str) -> Option<(Language, f64)> {
    if text.chars().filter(|c| c.is_alphabetic()).count() < 3 {
        return None;
    }
    let info = whatlang::detect(text)?;
    let lang = match info.lang() {
        whatlang::Lang::Deu => Language::De,
        whatlang::Lang::Eng => Language::En,
        _ => {
            // Short customer texts are often misread as a related language: between German
            // and English alone, which is it?
            let only = whatlang::Detector::with_allowlist(vec![whatlang::Lang::Deu, whatlang::Lang::Eng]);
            return match only.detect(text) {
                Some(i) if i.confidence() >= 0.5 && info.confidence() < 0.5 => Some((
                    if i.lang() == whatlang::Lang::Deu { Language::De } else { Language::En },
                    i.confidence() * 0.5,
                )),
                _ => Some((Language::Other, info.confidence())),
            };
        }
    };
    Some((lang, info.confidence()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn german_and_english_customer_texts_are_told_apart() {
        for (text, want) in [
            ("Guten Tag, ich möchte meinen Stromvertrag zum Monatsende kündigen.", Language::De),
            ("Hallo, meine Rechnung ist viel zu hoch, bitte prüfen Sie das.", Language::De),
            ("Hello, I would like to cancel my contract at the end of the month.", Language::En),
            ("My invoice seems far too high, could you please check it?", Language::En),
            ("Bonjour, je voudrais résilier mon contrat à la fin du mois.", Language::Other),
        ] {
            assert_eq!(detect(text).map(|(l, _)| l), Some(want), "{text}");
        }
        assert_eq!(detect("ok"), None);
        assert_eq!(detect("4711 / 12,50 €"), None);
    }
}
