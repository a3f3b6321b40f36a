//! A moment in time as Kontor keeps it (microseconds since the Unix epoch) and shows it
//! (RFC 3339 in UTC with milliseconds).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A moment in time, to the microsecond: what the store keeps in its integer columns
/// (microseconds since the Unix epoch, UTC) and what the API shows, RFC 3339 in UTC with
/// milliseconds (`2024-05-01T12:30:00.250Z`). Ordered by time.
///
/// ```
/// use kontor_core::Timestamp;
///
/// let t = Timestamp::from_micros(1_714_566_600_250_999);
/// assert_eq!(t.to_string(), "2024-05-01T12:30:00.250Z");
/// assert_eq!(serde_json::to_value(t).unwrap(), "2024-05-01T12:30:00.250Z");
/// assert_eq!("2024-05-01T14:30:00.250999+02:00".parse::<Timestamp>().unwrap(), t);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Why a text is not a [`Timestamp`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 date and time ({reason}): {input:?}")]
pub struct TimestampError {
    input: String,
    reason: String,
}

const MICROS_PER_SECOND: i64 = 1_000_000;

impl Timestamp {
    /// 1970-01-01T00:00:00Z (a default for times an older record lacks).
    pub fn epoch() -> Timestamp {
        Timestamp::from_micros(0)
    }

    /// The moment `us` microseconds after the Unix epoch (before it, if negative).
    pub const fn from_micros(us: i64) -> Timestamp {
        Timestamp(us)
    }

    /// Microseconds since the Unix epoch (what the store keeps).
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The moment `secs` whole seconds after the Unix epoch (saturating at the ends of the range).
    pub const fn from_unix_seconds(secs: i64) -> Timestamp {
        Timestamp(secs.saturating_mul(MICROS_PER_SECOND))
    }

    /// Whole seconds since the Unix epoch, rounded down (as `date +%s` counts them).
    pub const fn as_unix_seconds(self) -> i64 {
        self.0.div_euclid(MICROS_PER_SECOND)
    }

    /// The system clock's time now (the epoch itself if the clock is set before it).
    pub fn now() -> Timestamp {
        let us = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
        Timestamp(i64::try_from(us).unwrap_or(i64::MAX))
    }

    /// As a chrono date and time; `None` beyond chrono's range (some 262 000 years either
    /// side of the epoch, which no clock gives).
    pub fn to_datetime(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(self.0)
    }

    /// Reads RFC 3339 (any offset; converted to UTC, fractions beyond microseconds dropped).
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, TimestampError> {
        let error = |reason: String| TimestampError { input: text.chars().take(64).collect(), reason };
        let t = DateTime::parse_from_rfc3339(text).map_err(|e| error(e.to_string()))?;
        Ok(Timestamp::from(t.with_timezone(&Utc)))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Timestamp {
        Timestamp(t.timestamp_micros())
    }
}

/// RFC 3339 in UTC with milliseconds and `Z` (`2024-05-01T12:30:00.250Z`), as the API has
/// always shown times; empty beyond chrono's range (see [`Timestamp::to_datetime`]).
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_datetime() {
            Some(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            None => Ok(()),
        }
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Timestamp, TimestampError> {
        Timestamp::parse_rfc3339(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("A moment in time: RFC 3339 in UTC with milliseconds, e.g. `2024-05-01T12:30:00.250Z`."))
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Timestamp")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_utc_with_milliseconds_and_z() {
        for (us, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_714_566_600_250_999, "2024-05-01T12:30:00.250Z"),
            (1_714_566_600_000_000, "2024-05-01T12:30:00.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (253_402_300_799_999_999, "9999-12-31T23:59:59.999Z"),
        ] {
            let t = Timestamp::from_micros(us);
            assert_eq!(t.to_string(), text, "{us}");
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{text}\""), "{us}");
        }
    }

    #[test]
    fn shows_what_format_ts_showed() {
        // The store's former `format_ts`, kept here as the reference the API's format must match.
        let format_ts = |us: i64| {
            DateTime::from_timestamp_micros(us)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
                .unwrap_or_default()
        };
        for us in [0, 1, 999, 1_000, 1_714_566_600_250_999, -1, -1_000_001, i64::MAX, i64::MIN] {
            assert_eq!(Timestamp::from_micros(us).to_string(), format_ts(us), "{us}");
        }
    }

    #[test]
    fn round_trips_through_json_and_text() {
        for us in [0, 1_714_566_600_250_000, -86_400_000_000, 4_102_444_800_123_000] {
            let t = Timestamp::from_micros(us);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t, "{json}");
            assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
        }
        // What is shown has milliseconds: the microseconds below them do not come back.
        let t = Timestamp::from_micros(1_714_566_600_250_999);
        assert_eq!(t.to_string().parse::<Timestamp>().unwrap().as_micros(), 1_714_566_600_250_000);
    }

    #[test]
    fn reads_any_offset_as_utc_to_the_microsecond() {
        for (text, us) in [
            ("2024-05-01T12:30:00Z", 1_714_566_600_000_000),
            ("2024-05-01T14:30:00.250999+02:00", 1_714_566_600_250_999),
            ("2024-05-01t12:30:00.000000999z", 1_714_566_600_000_000),
            ("1969-12-31T23:59:59.999Z", -1_000),
        ] {
            assert_eq!(text.parse::<Timestamp>().unwrap().as_micros(), us, "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_rfc_3339() {
        for text in [
            "",
            "gestern",
            "2024-05-01",
            "2024-05-01 12:30:00",
            "2024-05-01T12:30:00",
            "1714566600",
            "2024-13-01T00:00:00Z",
        ] {
            let e = text.parse::<Timestamp>().unwrap_err();
            assert!(e.to_string().starts_with("not an RFC 3339 date and time"), "{text}: {e}");
            assert!(serde_json::from_value::<Timestamp>(serde_json::json!(text)).is_err(), "{text}");
        }
        assert!(serde_json::from_value::<Timestamp>(serde_json::json!(1_714_566_600)).is_err(), "a number");
    }

    #[test]
    fn counts_unix_seconds_rounding_down() {
        assert_eq!(Timestamp::from_micros(1_999_999).as_unix_seconds(), 1);
        assert_eq!(Timestamp::from_micros(-1).as_unix_seconds(), -1);
        assert_eq!(Timestamp::from_unix_seconds(1_714_566_600).as_micros(), 1_714_566_600_000_000);
        assert!(Timestamp::from_micros(1) < Timestamp::from_micros(2));
        let dt = Timestamp::from_micros(1_714_566_600_250_999).to_datetime().unwrap();
        assert_eq!(Timestamp::from(dt).as_micros(), 1_714_566_600_250_999);
        assert_eq!(Timestamp::from_micros(i64::MAX).to_datetime(), None);
        assert!(Timestamp::now() > Timestamp::from_unix_seconds(1_700_000_000));
    }
}
