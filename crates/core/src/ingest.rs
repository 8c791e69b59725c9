//! Records that arrive already split into fields (HTTP ingest), on their way to the log loop.
//!
//! A record's own time must be a real instant in years 1970..=9999: earlier times are mistakes
//! (a log line written before the Unix epoch) and later ones do not render as RFC 3339, so such
//! records, and impossible dates such as Feb 30, are rejected rather than clamped or rolled over.

use serde_json::Value;

use crate::Level;

/// One log record received over the API.
#[derive(Clone, Debug, PartialEq)]
pub struct IngestedRecord {
    /// The source it names (`source` field), or `http`.
    pub source: String,
    /// When it was received, Unix ms.
    pub received_ms: i64,
    /// Its own time, when given.
    pub timestamp: Option<i64>,
    /// Its level, when given.
    pub level: Option<Level>,
    /// The message.
    pub message: String,
    /// Every other field.
    pub fields: Vec<(String, Value)>,
}

/// Why one ingested object was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// Not a JSON object.
    #[error("not a JSON object")]
    NotAnObject,
    /// No `message`, `msg` or `log` string.
    #[error("no message (expected a string field `message`, `msg` or `log`)")]
    NoMessage,
    /// A timestamp naming a day the calendar does not have (Feb 30, month 13).
    #[error("timestamp {0:?} is not a calendar date")]
    ImpossibleDate(String),
    /// A timestamp outside years 1970..=9999.
    #[error("timestamp {0} is outside years 1970..=9999")]
    TimeOutOfRange(String),
}

/// The first millisecond a record's time may have: 1970-01-01T00:00:00.000Z.
pub const MIN_TIMESTAMP_MS: i64 = 0;
/// The last millisecond a record's time may have: 9999-12-31T23:59:59.999Z.
pub const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

/// At most this many characters of an offending value go into an error, so that a huge field
/// cannot make the error (and the API answer listing it) huge.
const QUOTED_MAX: usize = 40;

fn quoted(s: &str) -> String {
    match s.char_indices().nth(QUOTED_MAX) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

/// The `YYYY-MM-DD` a string starts with, when it starts with that shape.
fn date_prefix(b: &[u8]) -> Option<(u32, u32, u32)> {
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    Some((
        crate::time::digits(b, 0, 4)?,
        crate::time::digits(b, 5, 2)?,
        crate::time::digits(b, 8, 2)?,
    ))
}

/// Reads a string timestamp: `Ok(None)` when it is not a timestamp at all (kept as a field),
/// an error when it is one but names an impossible or out-of-range time.
fn string_timestamp(s: &str) -> Result<Option<i64>, IngestError> {
    let b = s.as_bytes();
    if let Some((y, m, d)) = date_prefix(b) {
        // Checked here, not left to the parser, so that Feb 30 is an error whether the parser
        // rejects it or rolls it into March.
        let real = match (i16::try_from(y), i8::try_from(m), i8::try_from(d)) {
            (Ok(y), Ok(m), Ok(d)) => jiff::civil::Date::new(y, m, d).is_ok(),
            _ => false,
        };
        if !real {
            return Err(IngestError::ImpossibleDate(quoted(s)));
        }
    }
    let Some((ms, _)) = crate::time::parse_iso8601(b) else {
        return Ok(None);
    };
    if (MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS).contains(&ms) {
        Ok(Some(ms))
    } else {
        Err(IngestError::TimeOutOfRange(format!("{:?}", quoted(s))))
    }
}

/// Reads a numeric timestamp: Unix milliseconds above 1e11, Unix seconds below.
fn number_timestamp(n: &serde_json::Number) -> Result<Option<i64>, IngestError> {
    let Some(f) = n.as_f64() else {
        return Ok(None);
    };
    let ms = if f > 1e11 { f } else { f * 1000.0 };
    // Checked as a float: a cast first would saturate 1e20 to i64::MAX (year 292278994).
    if (MIN_TIMESTAMP_MS as f64..=MAX_TIMESTAMP_MS as f64).contains(&ms) {
        Ok(Some(ms as i64))
    } else {
        Err(IngestError::TimeOutOfRange(quoted(&n.to_string())))
    }
}

impl IngestedRecord {
    /// Builds a record from one JSON object of an ingest request.
    pub fn from_json(value: Value, received_ms: i64) -> Result<IngestedRecord, IngestError> {
        let Value::Object(map) = value else {
            return Err(IngestError::NotAnObject);
        };
        let mut rec = IngestedRecord {
            source: "http".into(),
            received_ms,
            timestamp: None,
            level: None,
            message: String::new(),
            fields: Vec::new(),
        };
        let mut have_message = false;
        for (k, v) in map {
            match (k.as_str(), &v) {
                ("message" | "msg" | "log", Value::String(s)) if !have_message => {
                    rec.message = s.trim_end_matches('\n').to_string();
                    have_message = true;
                }
                ("timestamp" | "time" | "ts", Value::String(s)) if rec.timestamp.is_none() => {
                    rec.timestamp = string_timestamp(s)?;
                    if rec.timestamp.is_none() {
                        rec.fields.push((k, v));
                    }
                }
                ("timestamp" | "time" | "ts", Value::Number(n)) if rec.timestamp.is_none() => {
                    rec.timestamp = number_timestamp(n)?;
                }
                ("level" | "severity", Value::String(s)) if rec.level.is_none() => {
                    rec.level = Level::parse(s);
                    if rec.level.is_none() {
                        rec.fields.push((k, v));
                    }
                }
                ("source", Value::String(s)) => rec.source = s.clone(),
                _ => rec.fields.push((k, v)),
            }
        }
        if have_message {
            Ok(rec)
        } else {
            Err(IngestError::NoMessage)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_aliases_and_fields() {
        let v = serde_json::json!({"msg": "boom\n", "level": "ERROR", "timestamp": "1970-01-01T00:00:01Z", "source": "api", "code": 7});
        let r = IngestedRecord::from_json(v, 5).unwrap();
        assert_eq!(r.message, "boom");
        assert_eq!(r.level, Some(Level::Error));
        assert_eq!(r.timestamp, Some(1000));
        assert_eq!(r.source, "api");
        assert_eq!(r.fields, vec![("code".to_string(), serde_json::json!(7))]);
        assert_eq!(
            IngestedRecord::from_json(serde_json::json!({"x": 1}), 0),
            Err(IngestError::NoMessage)
        );
        assert_eq!(
            IngestedRecord::from_json(serde_json::json!([1]), 0),
            Err(IngestError::NotAnObject)
        );
    }

    fn time_of(ts: serde_json::Value) -> Result<Option<i64>, IngestError> {
        IngestedRecord::from_json(serde_json::json!({"message": "m", "ts": ts}), 0)
            .map(|r| r.timestamp)
    }

    #[test]
    fn timestamps_in_range_are_read() {
        assert_eq!(time_of(serde_json::json!(1)), Ok(Some(1000)));
        assert_eq!(time_of(serde_json::json!(1.5)), Ok(Some(1500)));
        assert_eq!(
            time_of(serde_json::json!(1_700_000_000_123_i64)),
            Ok(Some(1_700_000_000_123))
        );
        assert_eq!(time_of(serde_json::json!(0)), Ok(Some(0)));
        assert_eq!(
            time_of(serde_json::json!("9999-12-31T23:59:59.999Z")),
            Ok(Some(MAX_TIMESTAMP_MS))
        );
        assert_eq!(
            time_of(serde_json::json!("2024-02-29T00:00:00Z")).map(|t| t.is_some()),
            Ok(true)
        );
        // Not a timestamp at all: kept as a field, as before.
        let r =
            IngestedRecord::from_json(serde_json::json!({"msg": "m", "ts": "soon"}), 0).unwrap();
        assert_eq!(r.timestamp, None);
        assert_eq!(r.fields.len(), 1);
    }

    #[test]
    fn impossible_and_out_of_range_timestamps_are_rejected() {
        // Each of these once became a time whose RFC 3339 rendering was not valid (years
        // 292278994, -1199, 10000) or a day of the next month.
        for (ts, why) in [
            (serde_json::json!(99_999_999_999_999_999_999.0), "outside"),
            (serde_json::json!(u64::MAX), "outside"),
            (serde_json::json!(-99_999_999_999_i64), "outside"),
            (serde_json::json!(-1), "outside"),
            (serde_json::json!("9999-12-31T23:59:60Z"), "outside"),
            (serde_json::json!("1969-12-31T23:59:59Z"), "outside"),
            (serde_json::json!("0000-01-01T00:00:00Z"), "outside"),
            (serde_json::json!("2026-02-30T00:00:00Z"), "calendar"),
            (serde_json::json!("2026-04-31T10:00:00Z"), "calendar"),
            (serde_json::json!("2025-02-29T10:00:00Z"), "calendar"),
            (serde_json::json!("2026-13-01T10:00:00Z"), "calendar"),
            (serde_json::json!("2026-00-10T10:00:00Z"), "calendar"),
        ] {
            let e = time_of(ts.clone()).map_err(|e| e.to_string());
            assert!(
                e.as_ref().is_err_and(|e| e.contains(why)),
                "{ts}: {e:?}, expected {why}"
            );
        }
        let long = format!("2026-02-30T00:00:00Z{}", "x".repeat(10_000));
        let e = time_of(serde_json::json!(long)).map_err(|e| e.to_string());
        assert!(
            e.is_err_and(|e| e.len() < 100),
            "errors quote values briefly"
        );
    }
}
