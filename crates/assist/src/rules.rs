//! Whether an analysed message meets a rule's conditions, and the business hours (a weekly
//! schedule in a time zone) that a condition may ask about. What the actions do is the
//! store's business; this module only decides.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveTime, Timelike, Utc};
use chrono_tz::Tz;
use kontor_core::{Channel, MessageAnalysis, RuleConditions};
use serde::{Deserialize, Serialize};

/// What a rule is checked against.
#[derive(Debug, Clone)]
pub struct RuleInput<'a> {
    pub channel: Channel,
    pub subject: Option<&'a str>,
    pub text: &'a str,
    pub analysis: &'a MessageAnalysis,
    /// The customer's stored language.
    pub customer_language: Option<&'a str>,
    /// When the message arrived.
    pub at: DateTime<Utc>,
}

/// The weekly business hours: per weekday (`mon` … `sun`) a list of `["08:00", "18:00"]`
/// spans, in a time zone (`Europe/Berlin` by default). A day not listed is closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BusinessHours {
    #[serde(default = "default_zone")]
    pub timezone: String,
    /// Each span is `[from, to]` (two times of day, `HH:MM`).
    pub days: BTreeMap<String, Vec<Vec<String>>>,
}

fn default_zone() -> String {
    "Europe/Berlin".into()
}

/// The weekdays as the schedule names them, Monday first.
pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn time(s: &str) -> Result<NaiveTime, String> {
    if s == "24:00" {
        return Ok(NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(NaiveTime::MIN));
    }
    NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| format!("{s:?} is not a time of day (HH:MM)"))
}

impl BusinessHours {
    /// Checks the schedule: a known time zone, weekday names, spans that start before they end.
    pub fn validate(&self) -> Result<(), String> {
        self.timezone
            .parse::<Tz>()
            .map_err(|_| format!("{:?} is not a time zone (e.g. Europe/Berlin)", self.timezone))?;
        for (day, spans) in &self.days {
            if !DAYS.contains(&day.as_str()) {
                return Err(format!("{day:?} is not a weekday ({})", DAYS.join(", ")));
            }
            for span in spans {
                let [from, to] = span.as_slice() else {
                    return Err(format!("{day}: a span is two times, [from, to], not {} values", span.len()));
                };
                if time(from)? >= time(to)? {
                    return Err(format!("{day}: {from}–{to} does not start before it ends"));
                }
            }
        }
        Ok(())
    }

    /// True if `at` lies within the business hours.
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        let Ok(zone) = self.timezone.parse::<Tz>() else { return false };
        let local = at.with_timezone(&zone);
        let day = DAYS[local.weekday().num_days_from_monday() as usize];
        let now = NaiveTime::from_hms_opt(local.hour(), local.minute(), local.second()).unwrap_or(NaiveTime::MIN);
        self.days.get(day).is_some_and(|spans| {
            spans.iter().any(|span| match span.as_slice() {
                [from, to] => matches!((time(from), time(to)), (Ok(f), Ok(t)) if f <= now && now < t),
                _ => false,
            })
        })
    }
}

/// Checks a rule's conditions for mistakes a person can correct.
pub fn validate(c: &RuleConditions) -> Result<(), (&'static str, String)> {
    if let Some(m) = c.min_confidence {
        if !(0.0..=1.0).contains(&m) {
            return Err(("conditions.min_confidence", "must be between 0 and 1".into()));
        }
    }
    for s in &c.sentiments {
        if !["negative", "neutral", "positive"].contains(&s.as_str()) {
            return Err(("conditions.sentiments", format!("{s:?} is not negative, neutral or positive")));
        }
    }
    if let Some(b) = &c.business_hours {
        if b != "inside" && b != "outside" {
            return Err(("conditions.business_hours", "must be inside or outside".into()));
        }
    }
    if c.keywords.iter().any(|k| k.trim().is_empty() || k.chars().count() > 200) || c.keywords.len() > 200 {
        return Err(("conditions.keywords", "at most 200 keywords of 1 to 200 characters".into()));
    }
    Ok(())
}

/// True if the message meets every condition. A business-hours condition without a schedule
/// is never met.
pub fn matches(c: &RuleConditions, input: &RuleInput<'_>, hours: Option<&BusinessHours>) -> bool {
    let a = input.analysis;
    let any =
        |list: &[String], value: Option<&str>| list.is_empty() || value.is_some_and(|v| list.iter().any(|x| x == v));
    if !c.channels.is_empty() && !c.channels.contains(&input.channel) {
        return false;
    }
    if !any(&c.intents, Some(&a.intent))
        || !any(&c.sentiments, Some(&a.sentiment))
        || !any(&c.languages, a.language.as_deref())
        || !any(&c.customer_languages, input.customer_language)
    {
        return false;
    }
    if c.min_confidence.is_some_and(|m| a.intent_confidence < m) {
        return false;
    }
    if !c.keywords.is_empty() {
        let haystack = format!("{}\n{}", input.subject.unwrap_or(""), input.text).to_lowercase();
        if !c.keywords.iter().any(|k| haystack.contains(&k.trim().to_lowercase())) {
            return false;
        }
    }
    match (c.business_hours.as_deref(), hours) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(want), Some(h)) => h.is_open(input.at) == (want == "inside"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kontor_core::Timestamp;

    fn analysis(intent: &str, confidence: f32, sentiment: &str) -> MessageAnalysis {
        MessageAnalysis {
            language: Some("de".into()),
            intent: intent.into(),
            intent_confidence: confidence,
            intent_source: "model".into(),
            intents: vec![],
            sentiment: sentiment.into(),
            sentiment_score: 0.0,
            entities: vec![],
            analysed_at: Timestamp::from_micros(0),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn hours() -> BusinessHours {
        serde_json::from_value(serde_json::json!({
            "timezone": "Europe/Berlin",
            "days": { "mon": [["08:00", "18:00"]], "tue": [["08:00", "12:00"], ["13:00", "18:00"]] }
        }))
        .unwrap()
    }

    #[test]
    fn business_hours_are_read_in_their_time_zone() {
        let h = hours();
        h.validate().unwrap();
        // Monday 2026-12-07: 07:30 UTC is 08:30 in Berlin (winter time).
        assert!(h.is_open(at("2026-12-07T07:30:00Z")));
        assert!(!h.is_open(at("2026-12-07T06:59:00Z")), "07:59 Berlin");
        assert!(!h.is_open(at("2026-12-07T17:00:00Z")), "18:00 Berlin is closed");
        // Tuesday lunch break, and a summer Monday (UTC+2).
        assert!(!h.is_open(at("2026-12-08T11:30:00Z")));
        assert!(h.is_open(at("2026-06-01T06:00:00Z")));
        assert!(!h.is_open(at("2026-12-12T10:00:00Z")), "Saturday is not listed");
        let bad = BusinessHours { timezone: "Mars/Olympus".into(), days: BTreeMap::new() };
        assert!(bad.validate().is_err());
        let bad = BusinessHours {
            timezone: "UTC".into(),
            days: [("mon".into(), vec![vec!["18:00".into(), "08:00".into()]])].into(),
        };
        assert!(bad.validate().is_err());
        let bad = BusinessHours { timezone: "UTC".into(), days: [("monday".into(), vec![])].into() };
        assert!(bad.validate().is_err());
        let bad = BusinessHours { timezone: "UTC".into(), days: [("mon".into(), vec![vec!["08:00".into()]])].into() };
        assert!(bad.validate().is_err(), "a span of one time");
    }

    #[test]
    fn every_condition_must_hold() {
        let a = analysis("complaint", 0.8, "negative");
        let input = RuleInput {
            channel: Channel::Email,
            subject: Some("Beschwerde"),
            text: "Ich schalte meinen Anwalt ein.",
            analysis: &a,
            customer_language: Some("de"),
            at: at("2026-12-07T20:00:00Z"),
        };
        let mut c = RuleConditions::default();
        assert!(matches(&c, &input, None), "no conditions: always");
        c.intents = vec!["complaint".into(), "cancellation".into()];
        c.sentiments = vec!["negative".into()];
        c.min_confidence = Some(0.7);
        c.keywords = vec!["ANWALT".into()];
        c.channels = vec![Channel::Email];
        c.languages = vec!["de".into()];
        c.customer_languages = vec!["de".into()];
        assert!(matches(&c, &input, None));
        c.business_hours = Some("outside".into());
        assert!(!matches(&c, &input, None), "no schedule: a business-hours condition is not met");
        assert!(matches(&c, &input, Some(&hours())), "21:00 Berlin is outside");
        c.business_hours = Some("inside".into());
        assert!(!matches(&c, &input, Some(&hours())));
        c.business_hours = None;
        for change in [
            |c: &mut RuleConditions| c.min_confidence = Some(0.9),
            |c: &mut RuleConditions| c.keywords = vec!["Kündigung".into()],
            |c: &mut RuleConditions| c.channels = vec![Channel::Sms],
            |c: &mut RuleConditions| c.intents = vec!["praise".into()],
            |c: &mut RuleConditions| c.customer_languages = vec!["en".into()],
        ] {
            let mut changed = c.clone();
            change(&mut changed);
            assert!(!matches(&changed, &input, None), "{changed:?}");
        }
    }

    #[test]
    fn bad_conditions_are_named() {
        let c = RuleConditions { min_confidence: Some(1.5), ..Default::default() };
        assert_eq!(validate(&c).unwrap_err().0, "conditions.min_confidence");
        let c = RuleConditions { sentiments: vec!["angry".into()], ..Default::default() };
        assert_eq!(validate(&c).unwrap_err().0, "conditions.sentiments");
        let c = RuleConditions { business_hours: Some("always".into()), ..Default::default() };
        assert_eq!(validate(&c).unwrap_err().0, "conditions.business_hours");
    }
}
