//! The whole analysis of one text, as Kontor stores it with a message and as
//! `POST /api/v1/assist/analyze` returns it: language, intent (with the model's next best
//! guesses), extracted data and sentiment. Also the built-in intent taxonomy and its seed set,
//! from which the default model is trained.

use std::sync::Arc;

use chrono::NaiveDate;
use kontor_core::{ExtractedEntity, IntentScore, MessageAnalysis, Timestamp};

use crate::classifier::{train, Model, TrainOptions};
use crate::extract::Extractor;
use crate::language;
use crate::sentiment::{Lexicon, SentimentLabel};

/// The built-in customer-service intents (German and English).
pub const INTENTS: &[&str] = &[
    "address_change",
    "bank_details_change",
    "invoice_question",
    "payment_arrangement",
    "cancellation",
    "contract_change",
    "complaint",
    "meter_reading",
    "appointment",
    "document_request",
    "login_help",
    "praise",
    "other",
];

/// The labelled seed set written for Kontor (`data/intents_seed.csv`: text, label, language).
const SEED_CSV: &str = include_str!("../data/intents_seed.csv");

/// The seed set's `(text, label)` examples.
pub fn seed_examples() -> Vec<(String, String)> {
    // The file is part of the build and checked by the tests; it cannot fail to parse.
    crate::dataset::read_csv_from(SEED_CSV.as_bytes(), "intents_seed.csv", "text", "label")
        .map(|(rows, _)| rows)
        .unwrap_or_default()
}

/// Trains a model on the seed set and `extra` examples (an agent's later word on the same
/// text counts once more, so corrections outweigh the seed).
pub fn train_with(extra: &[(String, String)]) -> Result<Model, String> {
    let mut examples = seed_examples();
    examples.extend(extra.iter().cloned());
    train(&examples, &TrainOptions::default())
}

/// The default model: the seed set alone (deterministic, so every node trains the same one).
pub fn default_model() -> Result<Model, String> {
    train_with(&[])
}

/// What the intent model reads of a message: its subject and the new part of its text
/// (without a quoted earlier conversation). Training examples from agents are stored as this.
pub fn model_input(subject: Option<&str>, text: &str) -> String {
    let fresh = kontor_core::quote::without_quoted(text);
    match subject.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => format!("{s}\n{fresh}"),
        None => fresh.to_string(),
    }
}

/// How many of the model's best intents an analysis lists.
const TOP_INTENTS: usize = 3;

/// Everything an analysis needs: the intent model, the extractor with its configured number
/// patterns, and the sentiment lexicon. Immutable; share it behind an `Arc`.
pub struct Analyser {
    model: Arc<Model>,
    extractor: Extractor,
    lexicon: Lexicon,
}

impl Analyser {
    /// An analyser with `model` and the extractor's configured `(name, regex)` patterns.
    pub fn new(model: Arc<Model>, patterns: &[(String, String)]) -> Result<Analyser, String> {
        Ok(Analyser { model, extractor: Extractor::new(patterns)?, lexicon: Lexicon::builtin() })
    }

    /// The intent model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Analyses a message. Intent, language and sentiment are read from `subject` and the new
    /// part of `text` (without a quoted earlier conversation); entities from all of `text`,
    /// so their spans are offsets into it. `today` resolves dates written without a year.
    pub fn analyse(&self, subject: Option<&str>, text: &str, today: NaiveDate, now: Timestamp) -> MessageAnalysis {
        let whole = model_input(subject, text);
        let detected = language::detect(&whole);
        let code = detected.map(|(l, _)| l.code());
        let probabilities = self.model.probabilities(&whole);
        let mut ranked: Vec<(usize, f32)> = probabilities.iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let intents: Vec<IntentScore> = ranked
            .iter()
            .take(TOP_INTENTS)
            .map(|(i, p)| IntentScore { intent: self.model.labels()[*i].clone(), confidence: round(*p) })
            .collect();
        let (intent, intent_confidence) =
            intents.first().map(|s| (s.intent.clone(), s.confidence)).unwrap_or_else(|| ("other".into(), 0.0));
        let sentiment = self.lexicon.analyse(&whole, code.unwrap_or("de"));
        let entities = self
            .extractor
            .extract(text, today)
            .into_iter()
            .map(|e| ExtractedEntity { confidence: round(e.confidence), ..e })
            .collect();
        MessageAnalysis {
            language: code.map(str::to_string),
            intent,
            intent_confidence,
            intent_source: "model".into(),
            intents,
            sentiment: match sentiment.label {
                SentimentLabel::Negative => "negative",
                SentimentLabel::Neutral => "neutral",
                SentimentLabel::Positive => "positive",
            }
            .into(),
            sentiment_score: round(sentiment.score),
            entities,
            analysed_at: now,
        }
    }
}

/// Three decimals are all a reader needs (and keep the stored JSON short).
fn round(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_set_labels_are_exactly_the_taxonomy() {
        let mut labels: Vec<String> = seed_examples().into_iter().map(|(_, l)| l).collect();
        labels.sort();
        labels.dedup();
        let mut want: Vec<String> = INTENTS.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(labels, want);
    }

    #[test]
    fn a_german_bank_change_is_analysed_with_its_iban() {
        let analyser = Analyser::new(Arc::new(default_model().unwrap()), &[]).unwrap();
        let text = "Guten Tag, ich habe mein Girokonto gewechselt. Bitte buchen Sie die Abschläge künftig \
                    von meiner neuen IBAN DE02 1203 0000 0000 2020 51 ab. Freundliche Grüße";
        let today = NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        let a = analyser.analyse(Some("Neue Bankverbindung"), text, today, Timestamp::from_micros(0));
        assert_eq!(a.language.as_deref(), Some("de"));
        assert_eq!(a.intent, "bank_details_change");
        assert!(a.intent_confidence > 0.3 && a.intent_confidence <= 1.0, "{}", a.intent_confidence);
        assert_eq!(a.intents.len(), 3);
        assert!(a.intents.windows(2).all(|w| w[0].confidence >= w[1].confidence));
        let iban = a.entities.iter().find(|e| e.kind == "iban").expect("an IBAN");
        assert_eq!(iban.value, "DE02120300000000202051");
        let chars: Vec<char> = text.chars().collect();
        assert_eq!(chars[iban.start..iban.end].iter().collect::<String>(), iban.text, "the span is in characters");
    }

    #[test]
    fn the_quoted_conversation_does_not_decide_the_intent() {
        let analyser = Analyser::new(Arc::new(default_model().unwrap()), &[]).unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        let text = "I want to cancel my contract at the end of the month.\n\nOn Mon, 1 Dec 2026, Support wrote:\n\
                    > Thank you so much, you are wonderful, great service, we love you\n\
                    > Thank you so much, you are wonderful, great service";
        let a = analyser.analyse(None, text, today, Timestamp::from_micros(0));
        assert_eq!(a.intent, "cancellation");
        assert_eq!(a.language.as_deref(), Some("en"));
    }
}
