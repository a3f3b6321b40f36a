//! Intent recognition: a multinomial logistic regression over hashed n-gram features
//! ([`crate::features`]), trained with shuffled stochastic gradient descent.
//!
//! Training weighs every feature by its inverse document frequency in the training set
//! (`ln((1 + n) / (1 + df)) + 1`) on top of `1 + ln(count)`, and scales the word block and the
//! character block of each text to unit length on their own; features never seen in training
//! are left out, before that scaling too. Dropout on the features (each one left out of a step
//! at random, the others scaled up to make up for it) keeps the model from leaning on a few
//! n-grams of each training example. The saved model keeps only the features seen in training,
//! each with its weight and its row quantised to 8 bits with its own scale: small, and loaded
//! without any further work.

use std::collections::HashMap;
use std::io::{Read, Write};

use crate::features::{grams, Sparse, BLOCKS};

/// How a model is trained.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Passes over the examples.
    pub epochs: usize,
    /// Step size at the start (it falls linearly, to zero after the last epoch).
    pub learning_rate: f32,
    /// Weight decay per step on the weights a step touches.
    pub l2: f32,
    /// The share of a text's features left out of each step (0 ≤ dropout < 1).
    pub dropout: f32,
    /// Features are hashed into `2^bits` buckets.
    pub bits: u8,
    /// Seed of the shuffling and of the dropout (training is deterministic).
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions { epochs: 20, learning_rate: 0.5, l2: 1e-6, dropout: 0.6, bits: 18, seed: 0x4b6f_6e74_6f72 }
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
    /// Per row: the feature's inverse document frequency in the training set.
    idf: Vec<f32>,
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

/// The distinct n-grams of `text` as `(bucket, block, count)`, sorted.
fn counted(text: &str, bits: u8) -> Vec<(u32, u8, f32)> {
    let mask = (1u64 << bits) - 1;
    let mut all: Vec<(u32, u8)> = Vec::new();
    grams(text, |block, h| all.push(((h & mask) as u32, block as u8)));
    all.sort_unstable();
    let mut out: Vec<(u32, u8, f32)> = Vec::with_capacity(all.len());
    for (f, b) in all {
        match out.last_mut() {
            Some(last) if last.0 == f && last.1 == b => last.2 += 1.0,
            _ => out.push((f, b, 1.0)),
        }
    }
    out
}

/// The model's input for counted n-grams: `lookup` gives a bucket's row and inverse document
/// frequency (none for a feature the model does not know, which is left out); each value is
/// `(1 + ln(count)) · idf`, and each block is scaled to unit length on its own.
fn weigh(counts: &[(u32, u8, f32)], lookup: impl Fn(u32) -> Option<(u32, f32)>) -> Sparse {
    let mut out: Vec<(u32, f32, u8)> = Vec::with_capacity(counts.len());
    let mut norms = [0f32; BLOCKS];
    for &(f, block, c) in counts {
        if let Some((row, idf)) = lookup(f) {
            let v = (1.0 + c.ln()) * idf;
            out.push((row, v, block));
            norms[block as usize] += v * v;
        }
    }
    let norms = norms.map(|n| if n > 0.0 { 1.0 / n.sqrt() } else { 0.0 });
    out.into_iter().map(|(row, v, block)| (row, v * norms[block as usize])).collect()
}

/// The scores (before the softmax) of input `x` under weights `w` (`bias.len()` per row).
fn scores_of(w: &[f32], bias: &[f32], x: &[(u32, f32)], scores: &mut [f32]) {
    let k = bias.len();
    scores.copy_from_slice(bias);
    for &(f, v) in x {
        let row = &w[f as usize * k..(f as usize + 1) * k];
        for (s, wc) in scores.iter_mut().zip(row) {
            *s += v * wc;
        }
    }
}

/// xorshift64: the next pseudo-random number (the same sequence for the same seed).
fn next(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
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
    if !(0.0..1.0).contains(&opts.dropout) {
        return Err("dropout must be at least 0 and below 1".into());
    }
    let index: HashMap<&str, usize> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
    let counts: Vec<Vec<(u32, u8, f32)>> = examples.iter().map(|(t, _)| counted(t, opts.bits)).collect();
    // The features seen, in bucket order, each with the number of examples it occurs in.
    let mut df: HashMap<u32, u32> = HashMap::new();
    for c in &counts {
        for (f, _, _) in c {
            *df.entry(*f).or_insert(0) += 1;
        }
    }
    let mut ids: Vec<u32> = df.keys().copied().collect();
    ids.sort_unstable();
    let n = examples.len() as f32;
    let idf: Vec<f32> = ids.iter().map(|f| ((1.0 + n) / (1.0 + df[f] as f32)).ln() + 1.0).collect();
    let row_of: HashMap<u32, u32> = ids.iter().enumerate().map(|(r, f)| (*f, r as u32)).collect();
    let data: Vec<(Sparse, usize)> = counts
        .iter()
        .zip(examples)
        .map(|(c, (_, l))| (weigh(c, |f| row_of.get(&f).map(|&r| (r, idf[r as usize]))), index[l.as_str()]))
        .collect();
    drop(counts);

    let k = labels.len();
    let m = ids.len();
    let mut w = vec![0f32; m * k];
    let mut bias = vec![0f32; k];
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = opts.seed | 1;
    let mut scores = vec![0f32; k];
    let mut kept: Sparse = Vec::new();
    // A feature is kept when a 24-bit random number is at least this; kept ones are scaled up.
    let threshold = (opts.dropout as f64 * (1u64 << 24) as f64) as u64;
    let boost = 1.0 / (1.0 - opts.dropout);
    for epoch in 0..opts.epochs {
        // Fisher–Yates: the same order for the same seed.
        for i in (1..order.len()).rev() {
            order.swap(i, (next(&mut rng) % (i as u64 + 1)) as usize);
        }
        let lr = opts.learning_rate * (1.0 - epoch as f32 / opts.epochs as f32);
        for &e in &order {
            let (x, y) = &data[e];
            kept.clear();
            for &(f, v) in x {
                if next(&mut rng) >> 40 >= threshold {
                    kept.push((f, v * boost));
                }
            }
            scores_of(&w, &bias, &kept, &mut scores);
            softmax(&mut scores);
            scores[*y] -= 1.0; // now the gradient of the loss by the scores
            for &(f, v) in &kept {
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

    let mut scales = Vec::with_capacity(m);
    let mut rows = Vec::with_capacity(m * k);
    for row in w.chunks_exact(k) {
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        scales.push(scale);
        rows.extend(row.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8));
    }
    Ok(Model { labels, bits: opts.bits, ids, idf, scales, rows, bias })
}

/// The start of a model file; earlier formats began with `KNTRLR` and another version.
const MAGIC: &[u8; 8] = b"KNTRLR2\n";

impl Model {
    /// The labels it knows, sorted.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The probability of each label for `text`, in the order of [`Model::labels`].
    pub fn probabilities(&self, text: &str) -> Vec<f32> {
        let k = self.labels.len();
        let mut scores = self.bias.clone();
        let x = weigh(&counted(text, self.bits), |f| self.ids.binary_search(&f).ok().map(|r| (r as u32, self.idf[r])));
        for (r, v) in x {
            let r = r as usize;
            let scale = self.scales[r] * v;
            for (s, q) in scores.iter_mut().zip(&self.rows[r * k..(r + 1) * k]) {
                *s += scale * *q as f32;
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

    /// Writes the model: a header line (JSON: labels, bits, rows, biases), then per row its
    /// feature id, scale and inverse document frequency, then the quantised rows.
    pub fn save(&self, out: &mut impl Write) -> std::io::Result<()> {
        let header =
            serde_json::json!({ "labels": self.labels, "bits": self.bits, "rows": self.ids.len(), "bias": self.bias });
        out.write_all(MAGIC)?;
        out.write_all(header.to_string().as_bytes())?;
        out.write_all(b"\n")?;
        let mut index = Vec::with_capacity(self.ids.len() * 12);
        for ((id, scale), idf) in self.ids.iter().zip(&self.scales).zip(&self.idf) {
            index.extend_from_slice(&id.to_le_bytes());
            index.extend_from_slice(&scale.to_le_bytes());
            index.extend_from_slice(&idf.to_le_bytes());
        }
        out.write_all(&index)?;
        out.write_all(&self.rows.iter().map(|q| *q as u8).collect::<Vec<u8>>())?;
        Ok(())
    }

    /// Reads a model written by [`Model::save`]; a file that is not one, or one in an earlier
    /// format, is an error.
    pub fn load(input: &mut impl Read) -> Result<Model, String> {
        let mut bytes = Vec::new();
        input.read_to_end(&mut bytes).map_err(|e| format!("cannot read the model: {e}"))?;
        let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
            return Err(if bytes.starts_with(b"KNTRLR") {
                "an intent model in an earlier format: train it again".into()
            } else {
                "not a Kontor intent model".into()
            });
        };
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
        if body.len() != n.checked_mul(12 + k).ok_or("too many rows")? {
            return Err("the model is cut off or too long".into());
        }
        let (index, quantised) = body.split_at(n * 12);
        let word = |c: &[u8]| [c[0], c[1], c[2], c[3]];
        let mut ids = Vec::with_capacity(n);
        let mut scales = Vec::with_capacity(n);
        let mut idf = Vec::with_capacity(n);
        for chunk in index.chunks_exact(12) {
            ids.push(u32::from_le_bytes(word(&chunk[0..4])));
            scales.push(f32::from_le_bytes(word(&chunk[4..8])));
            idf.push(f32::from_le_bytes(word(&chunk[8..12])));
        }
        if ids.windows(2).any(|p| p[0] >= p[1]) {
            return Err("the model's feature ids are not sorted".into());
        }
        Ok(Model { labels, bits, ids, idf, scales, rows: quantised.iter().map(|b| *b as i8).collect(), bias })
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
        let mut old_format = b"KNTRLR1\n".to_vec();
        old_format.extend_from_slice(&file[MAGIC.len()..]);
        assert!(Model::load(&mut old_format.as_slice()).unwrap_err().contains("earlier format"));
    }

    #[test]
    fn training_is_deterministic_and_needs_two_labels() {
        let a = train(&examples(), &TrainOptions::default()).unwrap();
        let b = train(&examples(), &TrainOptions::default()).unwrap();
        assert_eq!(a.rows, b.rows);
        let one = vec![("a".to_string(), "x".to_string())];
        assert!(train(&one, &TrainOptions::default()).is_err());
        let no_dropout = TrainOptions { dropout: 0.0, ..TrainOptions::default() };
        assert_eq!(train(&examples(), &no_dropout).unwrap().predict("Zählerstand 9876").label, "meter_reading");
        let all_dropped = TrainOptions { dropout: 1.0, ..TrainOptions::default() };
        assert!(train(&examples(), &all_dropped).is_err());
    }
}
