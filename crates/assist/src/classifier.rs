//! Intent recognition: a multinomial logistic regression over hashed n-gram features
//! ([`crate::features`]), trained with shuffled stochastic gradient descent. The saved model
//! keeps only the features seen in training, each row quantised to 8 bits with its own
//! scale: small, and loaded without any further work.

use std::collections::HashMap;
use std::io::{Read, Write};

use crate::features::{features, Sparse};

/// How a model is trained.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Passes over the examples.
    pub epochs: usize,
    /// Step size at the start (it falls as 1 / (1 + epoch)).
    pub learning_rate: f32,
    /// Weight decay per step on the weights a step touches.
    pub l2: f32,
    /// Features are hashed into `2^bits` buckets.
    pub bits: u8,
    /// Seed of the shuffling (training is deterministic).
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions { epochs: 12, learning_rate: 0.8, l2: 1e-6, bits: 18, seed: 0x4b6f_6e74_6f72 }
    }
}

/// A recognised intent.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub label: String,
    /// The model's probability of that label (0–1).
    pub confidence: f32,
}

/// A trained classifier.
#[derive(Debug, Clone)]
pub struct Model {
    labels: Vec<String>,
    bits: u8,
    /// Sorted feature ids with a row of weights each.
    ids: Vec<u32>,
    /// Per row: its scale.
    scales: Vec<f32>,
    /// Row-major, `labels.len()` per row, quantised.
    rows: Vec<i8>,
    bias: Vec<f32>,
}

fn softmax(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    for s in scores.iter_mut() {
        *s /= sum;
    }
}

/// Trains a model on `(text, label)` examples.
pub fn train(examples: &[(String, String)], opts: &TrainOptions) -> Result<Model, String> {
    let mut labels: Vec<String> = examples.iter().map(|(_, l)| l.clone()).collect();
    labels.sort();
    labels.dedup();
    if labels.len() < 2 {
        return Err("training needs at least two labels".into());
    }
    if !(8..=24).contains(&opts.bits) {
        return Err("bits must be between 8 and 24".into());
    }
    let index: HashMap<&str, usize> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
    let data: Vec<(Sparse, usize)> =
        examples.iter().map(|(t, l)| (features(t, opts.bits), index[l.as_str()])).collect();
    let k = labels.len();
    let dim = 1usize << opts.bits;
    let mut w = vec![0f32; dim * k];
    let mut bias = vec![0f32; k];
    let mut touched = vec![false; dim];
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = opts.seed | 1;
    let mut scores = vec![0f32; k];
    for epoch in 0..opts.epochs {
        // Fisher–Yates with xorshift64: the same order for the same seed.
        for i in (1..order.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            order.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        let lr = opts.learning_rate / (1.0 + epoch as f32);
        for &n in &order {
            let (x, y) = &data[n];
            scores.copy_from_slice(&bias);
            for &(f, v) in x {
                let row = &w[f as usize * k..(f as usize + 1) * k];
                for (s, wc) in scores.iter_mut().zip(row) {
                    *s += v * wc;
                }
            }
            softmax(&mut scores);
            scores[*y] -= 1.0; // now the gradient of the loss by the scores
            for &(f, v) in x {
                touched[f as usize] = true;
                let row = &mut w[f as usize * k..(f as usize + 1) * k];
                for (wc, g) in row.iter_mut().zip(&scores) {
                    *wc -= lr * (g * v + opts.l2 * *wc);
                }
            }
            for (b, g) in bias.iter_mut().zip(&scores) {
                *b -= lr * g;
            }
        }
    }
    let mut ids = Vec::new();
    let mut scales = Vec::new();
    let mut rows = Vec::new();
    for f in 0..dim {
        if !touched[f] {
            continue;
        }
        let row = &w[f * k..(f + 1) * k];
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        if max == 0.0 {
            continue;
        }
        let scale = max / 127.0;
        ids.push(f as u32);
        scales.push(scale);
        rows.extend(row.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8));
    }
    Ok(Model { labels, bits: opts.bits, ids, scales, rows, bias })
}

const MAGIC: &[u8; 8] = b"KNTRLR1\n";

impl Model {
    /// The labels it knows, sorted.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The probability of each label for `text`, in the order of [`Model::labels`].
    pub fn probabilities(&self, text: &str) -> Vec<f32> {
        let k = self.labels.len();
        let mut scores = self.bias.clone();
        for (f, v) in features(text, self.bits) {
            if let Ok(r) = self.ids.binary_search(&f) {
                let scale = self.scales[r] * v;
                for (s, q) in scores.iter_mut().zip(&self.rows[r * k..(r + 1) * k]) {
                    *s += scale * *q as f32;
                }
            }
        }
        softmax(&mut scores);
        scores
    }

    /// The most likely label for `text`.
    pub fn predict(&self, text: &str) -> Prediction {
        let p = self.probabilities(text);
        let (best, confidence) =
            p.iter().enumerate().fold((0, f32::MIN), |acc, (i, v)| if *v > acc.1 { (i, *v) } else { acc });
        Prediction { label: self.labels[best].clone(), confidence }
    }

    /// Writes the model: a header line (JSON: labels, bits, rows) and the rows.
    pub fn save(&self, out: &mut impl Write) -> std::io::Result<()> {
        let header =
            serde_json::json!({ "labels": self.labels, "bits": self.bits, "rows": self.ids.len(), "bias": self.bias });
        out.write_all(MAGIC)?;
        out.write_all(header.to_string().as_bytes())?;
        out.write_all(b"\n")?;
        for (i, id) in self.ids.iter().enumerate() {
            out.write_all(&id.to_le_bytes())?;
            out.write_all(&self.scales[i].to_le_bytes())?;
        }
        out.write_all(&self.rows.iter().map(|q| *q as u8).collect::<Vec<u8>>())?;
        Ok(())
    }

    /// Reads a model written by [`Model::save`]; a file that is not one is an error.
    pub fn load(input: &mut impl Read) -> Result<Model, String> {
        let mut bytes = Vec::new();
        input.read_to_end(&mut bytes).map_err(|e| format!("cannot read the model: {e}"))?;
        let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or("not a Kontor intent model")?;
        let nl = rest.iter().position(|b| *b == b'\n').ok_or("the model's header is cut off")?;
        let header: serde_json::Value =
            serde_json::from_slice(&rest[..nl]).map_err(|e| format!("the model's header is damaged: {e}"))?;
        let labels: Vec<String> = serde_json::from_value(header["labels"].clone()).map_err(|e| e.to_string())?;
        let bias: Vec<f32> = serde_json::from_value(header["bias"].clone()).map_err(|e| e.to_string())?;
        let bits = header["bits"].as_u64().filter(|b| (8..=24).contains(b)).ok_or("bad bits")? as u8;
        let n = header["rows"].as_u64().ok_or("bad rows")? as usize;
        let k = labels.len();
        if k < 2 || bias.len() != k {
            return Err("the model's labels do not match its biases".into());
        }
        let body = &rest[nl + 1..];
        if body.len() != n.checked_mul(8 + k).ok_or("too many rows")? {
            return Err("the model is cut off or too long".into());
        }
        let (index, quantised) = body.split_at(n * 8);
        let mut ids = Vec::with_capacity(n);
        let mut scales = Vec::with_capacity(n);
        for chunk in index.chunks_exact(8) {
            ids.push(u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
            scales.push(f32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]));
        }
        if ids.windows(2).any(|p| p[0] >= p[1]) {
            return Err("the model's feature ids are not sorted".into());
        }
        Ok(Model { labels, bits, ids, scales, rows: quantised.iter().map(|b| *b as i8).collect(), bias })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> Vec<(String, String)> {
        let raw = [
            ("Ich möchte meinen Vertrag kündigen", "cancellation"),
            ("Hiermit kündige ich fristgerecht", "cancellation"),
            ("Bitte bestätigen Sie die Kündigung", "cancellation"),
            ("I want to cancel my contract", "cancellation"),
            ("Mein Zählerstand ist 4711 kWh", "meter_reading"),
            ("Zählerstand heute: 12345", "meter_reading"),
            ("Hier der Stand meines Stromzählers", "meter_reading"),
            ("My meter reading is 3456", "meter_reading"),
            ("Wir sind umgezogen, neue Adresse", "address_change"),
            ("Meine neue Anschrift lautet Hauptstraße 5", "address_change"),
            ("Bitte Adresse ändern", "address_change"),
            ("I moved, please update my address", "address_change"),
        ];
        raw.iter().map(|(t, l)| (t.to_string(), l.to_string())).collect()
    }

    #[test]
    fn a_trained_model_recognises_new_wordings_and_survives_saving() {
        let model = train(&examples(), &TrainOptions::default()).unwrap();
        assert_eq!(model.predict("Kündigung meines Vertrags bitte").label, "cancellation");
        assert_eq!(model.predict("neue Adresse ab Mai").label, "address_change");
        assert_eq!(model.predict("Zählerstand 9876").label, "meter_reading");
        let p = model.probabilities("Kündigung");
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        let mut file = Vec::new();
        model.save(&mut file).unwrap();
        let back = Model::load(&mut file.as_slice()).unwrap();
        assert_eq!(back.predict("Kündigung meines Vertrags bitte"), model.predict("Kündigung meines Vertrags bitte"));
        assert!(Model::load(&mut &file[..file.len() - 1]).unwrap_err().contains("cut off"));
        assert!(Model::load(&mut &b"nonsense"[..]).unwrap_err().contains("not a Kontor"));
    }

    #[test]
    fn training_is_deterministic_and_needs_two_labels() {
        let a = train(&examples(), &TrainOptions::default()).unwrap();
        let b = train(&examples(), &TrainOptions::default()).unwrap();
        assert_eq!(a.rows, b.rows);
        let one = vec![("a".to_string(), "x".to_string())];
        assert!(train(&one, &TrainOptions::default()).is_err());
    }
}
