//! Records that arrive already split into fields (HTTP ingest), on their way to the log loop.

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
                    rec.timestamp = crate::time::parse_iso8601(s.as_bytes()).map(|t| t.0);
                    if rec.timestamp.is_none() {
                        rec.fields.push((k, v));
                    }
                }
                ("timestamp" | "time" | "ts", Value::Number(n)) if rec.timestamp.is_none() => {
                    rec.timestamp = n.as_f64().map(|f| {
                        if f > 1e11 {
                            f as i64
                        } else {
                            (f * 1000.0) as i64
                        }
                    });
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
        let r = IngestedRecord::from_json(v, 5).unwrap_or_else(|e| panic!("{e}"));
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
}
