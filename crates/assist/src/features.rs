//! A text as features for a linear model: lower-cased word unigrams and bigrams and character
//! 3- to 5-grams of each word (with its boundaries, so "kündigen" and "kündigung" share
//! "künd"), hashed into `2^bits` buckets (FNV-1a, stable across builds and platforms), weighted
//! `1 + ln(count)` and scaled to unit length.

/// Feature index and value.
pub type Sparse = Vec<(u32, f32)>;

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

/// The words of a text: lower-cased runs of letters and digits (umlauts kept; "ue"-spelling
/// and umlaut spelling meet in the character n-grams).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .map(|w| if w.chars().all(|c| c.is_ascii_digit()) { "<num>".to_string() } else { w })
        .collect()
}

/// The hashed, weighted, unit-length features of `text`.
pub fn features(text: &str, bits: u8) -> Sparse {
    let mask = (1u64 << bits) - 1;
    let mut counts: std::collections::HashMap<u32, f32> = std::collections::HashMap::new();
    let mut add = |h: u64| *counts.entry((h & mask) as u32).or_insert(0.0) += 1.0;
    let ws = words(text);
    for (i, w) in ws.iter().enumerate() {
        add(fnv1a(b'w', &[w]));
        if let Some(next) = ws.get(i + 1) {
            add(fnv1a(b'b', &[w, next]));
        }
        if w == "<num>" {
            continue;
        }
        let chars: Vec<char> = format!("<{w}>").chars().collect();
        for n in 3..=5 {
            for gram in chars.windows(n) {
                let g: String = gram.iter().collect();
                add(fnv1a(b'c', &[&g]));
            }
        }
    }
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
}
