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

/// The languages the detector weighs: German and English, and the languages customers in
/// German-speaking countries most often write in otherwise (so that those are reported as
/// `Other`). Weighing a score of languages instead of all of `whatlang`'s seventy takes half the
/// time (it compares trigram profiles one language at a time), and the analysis runs on every
/// message. A text in a script none of them uses is `Other` by its script alone.
const WEIGHED: [whatlang::Lang; 20] = [
    whatlang::Lang::Deu,
    whatlang::Lang::Eng,
    whatlang::Lang::Fra,
    whatlang::Lang::Ita,
    whatlang::Lang::Spa,
    whatlang::Lang::Por,
    whatlang::Lang::Nld,
    whatlang::Lang::Dan,
    whatlang::Lang::Swe,
    whatlang::Lang::Pol,
    whatlang::Lang::Ces,
    whatlang::Lang::Hrv,
    whatlang::Lang::Ron,
    whatlang::Lang::Hun,
    whatlang::Lang::Tur,
    whatlang::Lang::Rus,
    whatlang::Lang::Ukr,
    whatlang::Lang::Srp,
    whatlang::Lang::Ell,
    whatlang::Lang::Ara,
];

static DETECTOR: std::sync::LazyLock<whatlang::Detector> =
    std::sync::LazyLock::new(|| whatlang::Detector::with_allowlist(WEIGHED.to_vec()));

static GERMAN_OR_ENGLISH: std::sync::LazyLock<whatlang::Detector> =
    std::sync::LazyLock::new(|| whatlang::Detector::with_allowlist(vec![whatlang::Lang::Deu, whatlang::Lang::Eng]));

/// The language of `text` and how sure the detector is (0–1); `None` when the text has too
/// few letters to tell.
pub fn detect(text: &str) -> Option<(Language, f64)> {
    if text.chars().filter(|c| c.is_alphabetic()).count() < 3 {
        return None;
    }
    let Some(info) = DETECTOR.detect(text) else {
        // No weighed language has this script (Hebrew, Devanagari, Chinese, …): not German or
        // English.
        return whatlang::detect_script(text).map(|_| (Language::Other, 1.0));
    };
    let lang = match info.lang() {
        whatlang::Lang::Deu => Language::De,
        whatlang::Lang::Eng => Language::En,
        other => {
            // Short German or English texts are often misread as another language: between
            // German and English alone, which is it? Only for a related (Germanic) language or
            // a text written in the German alphabet alone — a text with letters German does not
            // have (ý, ň, ł, ñ, …) is not German or English.
            let related = matches!(other, whatlang::Lang::Nld | whatlang::Lang::Dan | whatlang::Lang::Swe);
            let german_letters =
                text.chars().filter(|c| c.is_alphabetic()).all(|c| c.is_ascii_alphabetic() || "äöüßÄÖÜ".contains(c));
            if !related && !german_letters {
                return Some((Language::Other, info.confidence()));
            }
            return match GERMAN_OR_ENGLISH.detect(text) {
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
            ("Thank you", Language::En),
            ("Not happy", Language::En),
            ("Nein danke", Language::De),
            ("Tarif wechseln", Language::De),
            ("Buongiorno, vorrei disdire il mio contratto alla fine del mese.", Language::Other),
            ("Merhaba, sözleşmemi ay sonunda iptal etmek istiyorum.", Language::Other),
            ("Здравствуйте, я хочу расторгнуть договор в конце месяца.", Language::Other),
            ("Dobrý deň, chcel by som vypovedať zmluvu ku koncu mesiaca.", Language::Other),
            ("שלום, אני רוצה לבטל את החוזה שלי בסוף החודש.", Language::Other),
            ("नमस्ते, मैं महीने के अंत में अपना अनुबंध रद्द करना चाहता हूं।", Language::Other),
            ("您好，我想在月底取消我的合同。", Language::Other),
        ] {
            assert_eq!(detect(text).map(|(l, _)| l), Some(want), "{text}");
        }
        assert_eq!(detect("ok"), None);
        assert_eq!(detect("4711 / 12,50 €"), None);
    }
}
