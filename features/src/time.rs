//! Feature-store time: microseconds since the Unix epoch, UTC, the
//! resolution of the offline store's Parquet timestamps.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use tracseq_core::{Error, Result};

/// Microseconds since the epoch.
pub type Micros = i64;

pub const MICROS_PER_SECOND: i64 = 1_000_000;

/// Now, in microseconds.
pub fn now() -> Micros {
    Utc::now().timestamp_micros()
}

pub fn from_datetime(t: DateTime<Utc>) -> Micros {
    t.timestamp_micros()
}

pub fn to_datetime(t: Micros) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t).unwrap_or_default()
}

pub fn to_naive(t: Micros) -> NaiveDateTime {
    to_datetime(t).naive_utc()
}

/// RFC 3339 with microseconds, `Z` for UTC.
pub fn format(t: Micros) -> String {
    to_datetime(t).to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses an RFC 3339 timestamp (`2025-03-01T10:00:00Z`, any offset) or
/// a date-time without offset read as UTC (`2025-03-01 10:00:00`,
/// `2025-03-01T10:00`), or a date (`2025-03-01`, midnight UTC). `field`
/// names the input in the error.
pub fn parse(field: &str, text: &str) -> Result<Micros> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc).timestamp_micros());
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, f) {
            return Ok(n.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        if let Some(n) = d.and_hms_opt(0, 0, 0) {
            return Ok(n.and_utc().timestamp_micros());
        }
    }
    Err(Error::Invalid(format!(
        "{field}: `{}` is not a timestamp: use RFC 3339, e.g. 2025-03-01T10:00:00Z",
        tracseq_core::error::excerpt(text, 60)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_in_the_common_forms_and_name_the_field_when_not() {
        let t = parse("at", "2025-03-01T10:00:00Z").unwrap_or_default();
        assert_eq!(format(t), "2025-03-01T10:00:00.000000Z");
        assert_eq!(parse("at", "2025-03-01T12:00:00+02:00").ok(), Some(t));
        assert_eq!(parse("at", "2025-03-01 10:00:00").ok(), Some(t));
        assert_eq!(parse("at", "2025-03-01T10:00").ok(), Some(t));
        assert_eq!(
            parse("at", "2025-03-01").ok(),
            Some(t - 10 * 3600 * MICROS_PER_SECOND)
        );
        match parse("rows[3].timestamp", "yesterday") {
            Err(Error::Invalid(m)) => {
                assert!(m.starts_with("rows[3].timestamp: `yesterday`"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }
}
