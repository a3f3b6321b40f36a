//! Data in a customer message, with spans (in Unicode characters) and a confidence: IBANs
//! (checked with `iban_validate`: a wrong checksum is not an IBAN), BICs, e-mail addresses,
//! phone numbers (E.164 through Kontor's normaliser), dates in German and English forms,
//! amounts (German decimal comma and thousands dots, €, EUR), German postal addresses, meter
//! readings with their unit, and numbers by configurable patterns (customer, contract, policy,
//! meter numbers).

use std::collections::BTreeMap;
use std::str::FromStr;

use iban::IbanLike;

use chrono::{Datelike, NaiveDate};
use regex::Regex;

/// One value found in a text: kind, normalised value, the text as written, its span in
/// characters, a confidence and (for an address) its parts — the type Kontor stores with a
/// message's analysis.
pub use kontor_core::ExtractedEntity as Entity;

/// The extractor, with its configured number patterns.
#[derive(Clone)]
pub struct Extractor {
    custom: Vec<(String, Regex)>,
    re: Patterns,
}

#[derive(Clone)]
struct Patterns {
    iban: Regex,
    bic: Regex,
    email: Regex,
    phone: Regex,
    date_numeric: Regex,
    date_iso: Regex,
    date_de: Regex,
    date_en_month_first: Regex,
    date_en_day_first: Regex,
    amount: Regex,
    address: Regex,
    meter: Regex,
}

const MONTHS_DE: &str = "Januar|Jänner|Februar|März|Maerz|April|Mai|Juni|Juli|August|September|Oktober|November|Dezember|Jan|Feb|Mär|Mrz|Apr|Jun|Jul|Aug|Sep|Sept|Okt|Nov|Dez";
const MONTHS_EN: &str = "January|February|March|April|May|June|July|August|September|October|November|December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec";

fn month_number(name: &str) -> Option<u32> {
    let n = name.to_lowercase();
    let table: [(&[&str], u32); 12] = [
        (&["januar", "jänner", "jan", "january"], 1),
        (&["februar", "feb", "february"], 2),
        (&["märz", "maerz", "mär", "mrz", "march", "mar"], 3),
        (&["april", "apr"], 4),
        (&["mai", "may"], 5),
        (&["juni", "jun", "june"], 6),
        (&["juli", "jul", "july"], 7),
        (&["august", "aug"], 8),
        (&["september", "sep", "sept"], 9),
        (&["oktober", "okt", "october", "oct"], 10),
        (&["november", "nov"], 11),
        (&["dezember", "dez", "december", "dec"], 12),
    ];
    table.iter().find(|(names, _)| names.contains(&n.as_str())).map(|(_, m)| *m)
}

fn compile(p: &str) -> Regex {
    // The patterns are constants of this file, checked by the tests.
    Regex::new(p).unwrap_or_else(|e| panic!("built-in pattern {p:?}: {e}"))
}

impl Patterns {
    fn new() -> Patterns {
        Patterns {
            iban: compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b"),
            bic: compile(r"(?i:\b(?:BIC|SWIFT)(?:[- ]?Code)?\s*:?\s*)([A-Z]{4}[A-Z]{2}[A-Z0-9]{2}(?:[A-Z0-9]{3})?)\b"),
            email: compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b"),
            phone: compile(r"(?:\+|\b00)\d{1,3}[\d /\-()]{6,16}\d|\b0\d{2,5}[ /\-]?\d[\d /\-]{3,12}\d"),
            date_numeric: compile(r"\b(\d{1,2})\.(\d{1,2})\.(?:(\d{4}|\d{2})\b)?"),
            date_iso: compile(r"\b(\d{4})-(\d{2})-(\d{2})\b"),
            date_de: compile(&format!(r"\b(\d{{1,2}})\.\s?({MONTHS_DE})\.?(?:\s(\d{{4}}))?\b")),
            date_en_month_first: compile(&format!(
                r"\b({MONTHS_EN})\.?\s(\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s(\d{{4}}))?\b"
            )),
            date_en_day_first: compile(&format!(
                r"\b(\d{{1,2}})(?:st|nd|rd|th)?\s(?:of\s)?({MONTHS_EN})(?:,?\s(\d{{4}}))?\b"
            )),
            amount: compile(
                r"(?:€|EUR|Euro)\s?\d{1,3}(?:[.,\u{a0} ]\d{3})*(?:[.,]\d{1,2})?(?:\b|$)|\b\d{1,3}(?:[.,\u{a0}]\d{3})*(?:[.,]\d{1,2})?\s?(?:€|EUR\b|Euro\b)|\b\d+(?:[.,]\d{1,2})?\s?(?:€|EUR\b|Euro\b)",
            ),
            address: compile(
                r"\b([A-ZÄÖÜ][a-zäöüß]+(?:[- ][A-ZÄÖÜ]?[a-zäöüß]+)*(?:straße|strasse|str\.|weg|gasse|allee|platz|ring|damm|ufer|chaussee|pfad|steig)|[A-ZÄÖÜ][a-zäöüß]+(?:[- ][A-ZÄÖÜ][a-zäöüß]+)* (?:Straße|Strasse|Weg|Gasse|Allee|Platz|Ring|Damm))\s+(\d{1,4}\s?[a-zA-Z]?)\s*,?\s+(\d{5})\s+([A-ZÄÖÜ][A-Za-zäöüß\-]+(?:\s(?:am|an der|im|in der|bei)\s[A-ZÄÖÜ][A-Za-zäöüß]+)?)",
            ),
            meter: compile(r"\b(\d{1,3}(?:\.\d{3})+|\d+)(?:,(\d+))?\s?(?:(kWh|KWh|kwh|MWh|m3|cbm)\b|(m³))"),
        }
    }
}

/// Character offsets of byte offsets in one text, computed once (offsets of every candidate
/// would otherwise count from the start each time: quadratic in a long text).
struct CharIndex(Vec<u32>);

impl CharIndex {
    fn new(text: &str) -> CharIndex {
        let mut table = vec![0u32; text.len() + 1];
        let mut n = 0u32;
        for (i, c) in text.char_indices() {
            for slot in &mut table[i..i + c.len_utf8()] {
                *slot = n;
            }
            n += 1;
        }
        table[text.len()] = n;
        CharIndex(table)
    }

    /// The character offset of byte offset `byte` (a character boundary).
    fn at(&self, byte: usize) -> usize {
        self.0.get(byte).copied().unwrap_or_default() as usize
    }
}

/// The extractor reads at most this many characters of a text (the rest is not searched).
pub const MAX_TEXT_CHARS: usize = 20_000;
/// At most this many entities are reported for one text (the first in text order).
pub const MAX_ENTITIES: usize = 200;
/// Candidates collected before overlaps are resolved (bounds the work on hostile input).
const MAX_CANDIDATES: usize = 2_000;

/// `1.234,56` / `1,234.56` / `12,50` / `12.50` / `1.234` → the number.
fn parse_amount(number: &str) -> Option<f64> {
    let n: String = number.chars().filter(|c| !c.is_whitespace() && *c != '\u{a0}').collect();
    let (last_dot, last_comma) = (n.rfind('.'), n.rfind(','));
    let decimal = match (last_dot, last_comma) {
        (Some(d), Some(c)) => Some(d.max(c)),
        // One kind of separator: decimal only with one or two digits after it ("12,50",
        // "12.5"); three digits are thousands ("1.234", "1,234").
        (Some(p), None) | (None, Some(p)) => (n.len() - p - 1 <= 2).then_some(p),
        (None, None) => None,
    };
    let digits: String = n
        .char_indices()
        .filter_map(|(i, c)| match c {
            '0'..='9' => Some(c),
            _ if Some(i) == decimal => Some('.'),
            _ => None,
        })
        .collect();
    digits.parse().ok()
}

fn year_of(two_or_four: &str) -> Option<i32> {
    let y: i32 = two_or_four.parse().ok()?;
    Some(match two_or_four.len() {
        2 if y < 70 => 2000 + y,
        2 => 1900 + y,
        _ => y,
    })
}

/// A date without a year: the next such date from `today` on.
fn next_date(day: u32, month: u32, today: NaiveDate) -> Option<NaiveDate> {
    (today.year()..=today.year() + 4).find_map(|y| NaiveDate::from_ymd_opt(y, month, day).filter(|d| *d >= today))
}

impl Extractor {
    /// An extractor with number patterns: `(name, regex)`, e.g. `("customer_number",
    /// r"\bKD-\d{6}\b")`. A pattern that does not compile is an error naming it.
    pub fn new(patterns: &[(String, String)]) -> Result<Extractor, String> {
        let custom = patterns
            .iter()
            .map(|(name, p)| Regex::new(p).map(|r| (name.clone(), r)).map_err(|e| format!("pattern {name}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Extractor { custom, re: Patterns::new() })
    }

    /// Everything found in `text`, in text order, without overlaps (the more specific kind
    /// wins). Dates without a year are resolved relative to `today`.
    pub fn extract(&self, text: &str, today: NaiveDate) -> Vec<Entity> {
        let text = match text.char_indices().nth(MAX_TEXT_CHARS) {
            Some((cut, _)) => &text[..cut],
            None => text,
        };
        let index = CharIndex::new(text);
        let mut found: Vec<(u8, Entity)> = Vec::new();
        let make = |kind: &str, value: String, start: usize, end: usize, confidence: f32| Entity {
            kind: kind.to_string(),
            value,
            text: text[start..end].to_string(),
            start: index.at(start),
            end: index.at(end),
            confidence,
            fields: BTreeMap::new(),
        };
        let re = &self.re;
        for m in re.iban.find_iter(text) {
            let compact: String = m.as_str().chars().filter(|c| !c.is_whitespace()).collect();
            // A wrong checksum is not an IBAN.
            if let Ok(iban) = iban::Iban::from_str(&compact) {
                found.push((0, make("iban", iban.electronic_str().to_string(), m.start(), m.end(), 0.99)));
            }
        }
        for m in re.email.find_iter(text) {
            found.push((1, make("email", m.as_str().to_lowercase(), m.start(), m.end(), 0.95)));
        }
        for (name, r) in &self.custom {
            for m in r.find_iter(text) {
                found.push((2, make(name, m.as_str().to_string(), m.start(), m.end(), 0.9)));
            }
        }
        for c in re.bic.captures_iter(text) {
            if let Some(m) = c.get(1) {
                found.push((3, make("bic", m.as_str().to_string(), m.start(), m.end(), 0.9)));
            }
        }
        for c in re.address.captures_iter(text) {
            let (Some(all), Some(street), Some(number), Some(postcode), Some(city)) =
                (c.get(0), c.get(1), c.get(2), c.get(3), c.get(4))
            else {
                continue;
            };
            let value = format!("{} {}, {} {}", street.as_str(), number.as_str(), postcode.as_str(), city.as_str());
            found.push((4, make("address", value, all.start(), all.end(), 0.85)));
            if let Some((_, e)) = found.last_mut() {
                for (k, v) in [("street", street), ("number", number), ("postcode", postcode), ("city", city)] {
                    e.fields.insert(k.to_string(), v.as_str().to_string());
                }
            }
        }
        let mut dates: Vec<(usize, usize, Option<NaiveDate>, f32)> = Vec::new();
        for c in re.date_iso.captures_iter(text) {
            let (Some(all), Some(y), Some(m), Some(d)) = (c.get(0), c.get(1), c.get(2), c.get(3)) else { continue };
            let date = match (y.as_str().parse(), m.as_str().parse(), d.as_str().parse()) {
                (Ok(y), Ok(m), Ok(d)) => NaiveDate::from_ymd_opt(y, m, d),
                _ => None,
            };
            dates.push((all.start(), all.end(), date, 0.95));
        }
        for c in re.date_numeric.captures_iter(text) {
            let (Some(all), Some(d), Some(m)) = (c.get(0), c.get(1), c.get(2)) else { continue };
            let (Ok(d), Ok(m)) = (d.as_str().parse::<u32>(), m.as_str().parse::<u32>()) else { continue };
            let date = match c.get(3).and_then(|y| year_of(y.as_str())) {
                Some(y) => NaiveDate::from_ymd_opt(y, m, d),
                None => next_date(d, m, today),
            };
            let confidence = if c.get(3).is_some() { 0.9 } else { 0.7 };
            dates.push((all.start(), all.end(), date, confidence));
        }
        for c in re.date_de.captures_iter(text) {
            let (Some(all), Some(d), Some(m)) = (c.get(0), c.get(1), c.get(2)) else { continue };
            let (Ok(d), Some(m)) = (d.as_str().parse::<u32>(), month_number(m.as_str())) else { continue };
            let date = match c.get(3).and_then(|y| year_of(y.as_str())) {
                Some(y) => NaiveDate::from_ymd_opt(y, m, d),
                None => next_date(d, m, today),
            };
            dates.push((all.start(), all.end(), date, 0.9));
        }
        for (r, day_first) in [(&re.date_en_month_first, false), (&re.date_en_day_first, true)] {
            for c in r.captures_iter(text) {
                let (Some(all), Some(a), Some(b)) = (c.get(0), c.get(1), c.get(2)) else { continue };
                let (day, month) = if day_first { (a.as_str(), b.as_str()) } else { (b.as_str(), a.as_str()) };
                let (Ok(d), Some(m)) = (day.parse::<u32>(), month_number(month)) else { continue };
                let date = match c.get(3).and_then(|y| year_of(y.as_str())) {
                    Some(y) => NaiveDate::from_ymd_opt(y, m, d),
                    None => next_date(d, m, today),
                };
                dates.push((all.start(), all.end(), date, 0.85));
            }
        }
        for (s, e, date, confidence) in dates {
            // "31.04." or "29.02.2025" is no date.
            if let Some(date) = date {
                found.push((5, make("date", date.format("%Y-%m-%d").to_string(), s, e, confidence)));
            }
        }
        for m in re.meter.captures_iter(text) {
            let (Some(all), Some(int)) = (m.get(0), m.get(1)) else { continue };
            let unit = match m.get(3).or(m.get(4)).map(|u| u.as_str()) {
                Some("m3" | "cbm" | "m³") => "m³",
                Some("MWh") => "MWh",
                _ => "kWh",
            };
            let whole: String = int.as_str().chars().filter(|c| c.is_ascii_digit()).collect();
            let value = match m.get(2) {
                Some(frac) => format!("{whole}.{} {unit}", frac.as_str()),
                None => format!("{whole} {unit}"),
            };
            // The 40 characters before it (on character boundaries).
            let before = &text[..all.start()];
            let from = before.char_indices().rev().nth(39).map(|(i, _)| i).unwrap_or(0);
            let near = before[from..].to_lowercase();
            let named = ["zählerstand", "zaehlerstand", "stand", "meter reading", "reading", "zähler"]
                .iter()
                .any(|w| near.contains(w));
            found.push((6, make("meter_reading", value, all.start(), all.end(), if named { 0.9 } else { 0.6 })));
        }
        for m in re.amount.find_iter(text) {
            let number: String =
                m.as_str().chars().filter(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | ' ' | '\u{a0}')).collect();
            if let Some(v) = parse_amount(number.trim()) {
                found.push((7, make("amount", format!("{v:.2} EUR"), m.start(), m.end(), 0.9)));
            }
        }
        for m in re.phone.find_iter(text) {
            if let Ok(e164) = kontor_core::normalise_identity(kontor_core::IdentityKind::Phone, m.as_str(), "DE") {
                found.push((8, make("phone", e164, m.start(), m.end(), 0.8)));
            }
        }
        // The more specific kind wins an overlap; then the longer match.
        found.truncate(MAX_CANDIDATES);
        found.sort_by(|(ra, a), (rb, b)| ra.cmp(rb).then((b.end - b.start).cmp(&(a.end - a.start))));
        let mut kept: Vec<Entity> = Vec::new();
        for (_, e) in found {
            if !kept.iter().any(|k| k.start < e.end && e.start < k.end) {
                kept.push(e);
            }
        }
        kept.sort_by_key(|e| (e.start, e.end));
        kept.truncate(MAX_ENTITIES);
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 2, 10).unwrap()
    }

    fn found(text: &str) -> Vec<(String, String)> {
        let x = Extractor::new(&[("customer_number".into(), r"\bKD-\d{6}\b".into())]).unwrap();
        x.extract(text, today()).into_iter().map(|e| (e.kind, e.value)).collect()
    }

    fn one(text: &str, kind: &str) -> Option<String> {
        found(text).into_iter().find(|(k, _)| k == kind).map(|(_, v)| v)
    }

    #[test]
    fn ibans_with_spaces_count_and_a_wrong_checksum_does_not() {
        assert_eq!(one("IBAN: DE89 3704 0044 0532 0130 00 bitte", "iban").as_deref(), Some("DE89370400440532013000"));
        assert_eq!(one("neu: DE89370400440532013000.", "iban").as_deref(), Some("DE89370400440532013000"));
        assert_eq!(one("DE88 3704 0044 0532 0130 00", "iban"), None, "wrong checksum");
        assert_eq!(one("AT61 1904 3002 3457 3201", "iban").as_deref(), Some("AT611904300234573201"));
        assert_eq!(one("BIC: COBADEFFXXX", "bic").as_deref(), Some("COBADEFFXXX"));
    }

    #[test]
    fn dates_in_german_and_english_forms_and_impossible_ones() {
        let cases: &[(&str, Option<&str>)] = &[
            ("am 3. März 2025", Some("2025-03-03")),
            ("am 03.03.25", Some("2025-03-03")),
            ("zum 1.5. kündigen", Some("2025-05-01")),
            ("zum 1.2. kündigen", Some("2026-02-01")), // already past on 10 Feb 2025
            ("on March 3rd", Some("2025-03-03")),
            ("on 3rd of March 2026", Some("2026-03-03")),
            ("bis 2025-12-31", Some("2025-12-31")),
            ("Stichtag 31.12.2024", Some("2024-12-31")),
            ("am 29.02.2024", Some("2024-02-29")), // a leap year
            ("am 29.02.2025", None),               // not one
            ("am 31.04.2025", None),               // April has 30 days
            ("am 30. April", Some("2025-04-30")),
        ];
        for (text, want) in cases {
            assert_eq!(one(text, "date").as_deref(), *want, "{text}");
        }
    }

    #[test]
    fn amounts_with_german_and_english_separators() {
        let cases: &[(&str, &str)] = &[
            ("Betrag 1.234,56 €", "1234.56 EUR"),
            ("total 1,234.56 EUR", "1234.56 EUR"),
            ("nur 84,50 €", "84.50 EUR"),
            ("€ 12.50 please", "12.50 EUR"),
            ("Abschlag 120 Euro", "120.00 EUR"),
            ("1.500 € Nachzahlung", "1500.00 EUR"),
            ("EUR 2.000,00", "2000.00 EUR"),
        ];
        for (text, want) in cases {
            assert_eq!(one(text, "amount").as_deref(), Some(*want), "{text}");
        }
    }

    #[test]
    fn contacts_addresses_readings_and_configured_numbers() {
        assert_eq!(
            one("Mail an Jana.Mueller@Kunde.example bitte", "email").as_deref(),
            Some("jana.mueller@kunde.example")
        );
        assert_eq!(one("Tel. 0171 2345678", "phone").as_deref(), Some("+491712345678"));
        assert_eq!(one("call +44 20 7946 0958", "phone").as_deref(), Some("+442079460958"));
        let x = Extractor::new(&[]).unwrap();
        let a = x.extract("Neue Adresse: Hauptstraße 5a, 10115 Berlin. Danke", today());
        let addr = a.iter().find(|e| e.kind == "address").expect("an address");
        assert_eq!(addr.value, "Hauptstraße 5a, 10115 Berlin");
        assert_eq!(addr.fields["postcode"], "10115");
        assert_eq!(addr.fields["street"], "Hauptstraße");
        assert_eq!(one("Mein Zählerstand: 12.345 kWh", "meter_reading").as_deref(), Some("12345 kWh"));
        assert_eq!(one("Gas 4711,5 m³", "meter_reading").as_deref(), Some("4711.5 m³"));
        assert_eq!(one("Kundennummer KD-483920", "customer_number").as_deref(), Some("KD-483920"));
        assert!(Extractor::new(&[("bad".into(), "(".into())]).is_err());
    }

    #[test]
    fn spans_are_in_characters_and_overlaps_go_to_the_specific_kind() {
        let x = Extractor::new(&[]).unwrap();
        let text = "Größe: IBAN DE89 3704 0044 0532 0130 00";
        let e = x.extract(text, today());
        assert_eq!(e.len(), 1, "{e:?}");
        let chars: Vec<char> = text.chars().collect();
        assert_eq!(chars[e[0].start..e[0].end].iter().collect::<String>(), e[0].text);
        assert_eq!(e[0].kind, "iban", "not a phone number");
    }

    #[test]
    fn multibyte_text_before_a_meter_reading_is_no_problem() {
        let x = Extractor::new(&[]).unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        let e = x.extract("Hallo, Zählerstand gemäß Ablesung übermittle 4711 kWh", today);
        assert_eq!(e.iter().find(|e| e.kind == "meter_reading").map(|e| e.value.as_str()), Some("4711 kWh"));
        // Every cut of umlauts, euro signs and emoji before numbers and units.
        let pieces = ["ä", "ß", "€", "😀", "1", "2 ", "kWh ", "m³ ", "Zähler ", ",", "."];
        for n in 0..3000usize {
            let text: String = (0..40).map(|i| pieces[(n * 7 + i * i * 3 + n / 5) % pieces.len()]).collect();
            for e in x.extract(&text, today) {
                let chars: Vec<char> = text.chars().collect();
                assert_eq!(chars[e.start..e.end].iter().collect::<String>(), e.text, "{text}");
            }
        }
    }

    #[test]
    fn a_long_hostile_text_is_read_in_bounded_time_and_gives_bounded_entities() {
        let x = Extractor::new(&[]).unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        for unit in ["1€ ", "1kWh ", "IBAN DE02 1203 0000 0000 2020 51, "] {
            let text = unit.repeat(200_000 / unit.len());
            let e = x.extract(&text, today);
            assert!(!e.is_empty() && e.len() <= MAX_ENTITIES, "{unit}: {}", e.len());
            assert!(e.iter().all(|e| e.end <= MAX_TEXT_CHARS));
        }
    }
}
