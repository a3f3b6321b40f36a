//! How good a model is on labelled examples: accuracy, macro-F1 over the labels of the test
//! set, the worst labels by F1, and the time per message.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde::Serialize;

use crate::classifier::Model;

/// One label's figures.
#[derive(Debug, Clone, Serialize)]
pub struct LabelScore {
    pub label: String,
    pub f1: f64,
    pub precision: f64,
    pub recall: f64,
    /// Examples with this label in the test set.
    pub support: usize,
}

/// An evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub n: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub ms_per_message: f64,
    /// The five labels with the lowest F1, worst first.
    pub worst: Vec<LabelScore>,
}

/// Evaluates `model` on `(text, label)` examples.
pub fn evaluate(model: &Model, examples: &[(String, String)]) -> Evaluation {
    let started = Instant::now();
    let predicted: Vec<String> = examples.iter().map(|(t, _)| model.predict(t).label).collect();
    let elapsed = started.elapsed();
    let n = examples.len();
    let correct = examples.iter().zip(&predicted).filter(|((_, gold), p)| gold == *p).count();
    let labels: BTreeSet<&str> = examples.iter().map(|(_, l)| l.as_str()).collect();
    let mut tp: BTreeMap<&str, usize> = BTreeMap::new();
    let mut fp: BTreeMap<&str, usize> = BTreeMap::new();
    let mut fn_: BTreeMap<&str, usize> = BTreeMap::new();
    for ((_, gold), p) in examples.iter().zip(&predicted) {
        if gold == p {
            *tp.entry(gold.as_str()).or_default() += 1;
        } else {
            *fn_.entry(gold.as_str()).or_default() += 1;
            *fp.entry(p.as_str()).or_default() += 1;
        }
    }
    let mut scores: Vec<LabelScore> = labels
        .iter()
        .map(|l| {
            let (t, f_p, f_n) =
                (*tp.get(l).unwrap_or(&0) as f64, *fp.get(l).unwrap_or(&0) as f64, *fn_.get(l).unwrap_or(&0) as f64);
            let precision = if t + f_p > 0.0 { t / (t + f_p) } else { 0.0 };
            let recall = if t + f_n > 0.0 { t / (t + f_n) } else { 0.0 };
            let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
            LabelScore { label: l.to_string(), f1, precision, recall, support: (t + f_n) as usize }
        })
        .collect();
    let macro_f1 = scores.iter().map(|s| s.f1).sum::<f64>() / scores.len().max(1) as f64;
    scores.sort_by(|a, b| a.f1.total_cmp(&b.f1).then_with(|| a.label.cmp(&b.label)));
    scores.truncate(5);
    Evaluation {
        n,
        accuracy: if n > 0 { correct as f64 / n as f64 } else { 0.0 },
        macro_f1,
        ms_per_message: if n > 0 { elapsed.as_secs_f64() * 1000.0 / n as f64 } else { 0.0 },
        worst: scores,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::{train, TrainOptions};

    #[test]
    fn figures_follow_their_definitions() {
        let ex = |t: &str, l: &str| (t.to_string(), l.to_string());
        let train_set = vec![
            ex("rechnung zu hoch", "invoice"),
            ex("vertrag kündigen", "cancel"),
            ex("rechnung falsch", "invoice"),
            ex("kündigung bitte", "cancel"),
        ];
        let model = train(&train_set, &TrainOptions::default()).unwrap();
        let e = evaluate(&model, &train_set);
        assert_eq!((e.n, e.accuracy, e.macro_f1), (4, 1.0, 1.0));
        // All wrong for one class: its F1 is 0 and it is the worst.
        let wrong = vec![ex("vertrag kündigen", "invoice"), ex("rechnung zu hoch", "invoice")];
        let e = evaluate(&model, &wrong);
        assert_eq!(e.accuracy, 0.5);
        assert_eq!(e.worst[0].label, "invoice");
        assert!((e.worst[0].f1 - 2.0 / 3.0).abs() < 1e-9, "{:?}", e.worst);
    }
}
