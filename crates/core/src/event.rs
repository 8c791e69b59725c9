//! The event model: every finding of every loop is a CloudEvents 1.0 [`Event`].
//!
//! Events are serialised in the CloudEvents JSON format (structured mode) with one extension
//! attribute, `fingerprint`: a hash of what makes two events "the same finding", so that
//! consumers (the bus, playbooks) can deduplicate repeated reports of one problem.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::time::format_rfc3339;

/// The event types opsloop emits (`type` attribute), reverse-DNS as CloudEvents recommends.
pub mod types {
    /// A log rule fired.
    pub const LOG_RULE_MATCHED: &str = "io.opsloop.log.rule_matched";
    /// A log template was first seen after the warm-up.
    pub const LOG_NEW_TEMPLATE: &str = "io.opsloop.log.new_template";
    /// A log template's rate spiked against its baseline.
    pub const LOG_TEMPLATE_SPIKE: &str = "io.opsloop.log.template_spike";
    /// The share of error records spiked.
    pub const LOG_ERROR_SHARE_SPIKE: &str = "io.opsloop.log.error_share_spike";
    /// Input that could not be read or parsed as expected.
    pub const LOG_INPUT_PROBLEM: &str = "io.opsloop.log.input_problem";
    /// A configuration reload was rejected; the previous configuration stays in force.
    pub const CONFIG_RELOAD_FAILED: &str = "io.opsloop.config.reload_failed";
}

/// A CloudEvents 1.0 event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Always `1.0`.
    pub specversion: String,
    /// Unique id (UUIDv7: time-ordered).
    pub id: String,
    /// What produced it, a URI reference (`/opsloop/agent/HOST/logs`).
    pub source: String,
    /// The event type, one of [`types`].
    #[serde(rename = "type")]
    pub kind: String,
    /// When it happened, RFC 3339.
    pub time: String,
    /// What it is about (a rule id, a template id, a file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// The payload.
    pub data: serde_json::Value,
    /// Extension: hash of the finding's identity, for deduplication.
    pub fingerprint: String,
}

impl Event {
    /// A new event at `time_ms` (Unix ms). The fingerprint defaults to type + subject; set a
    /// finer one with [`Event::with_fingerprint_key`].
    pub fn new(
        kind: &str,
        source: &str,
        subject: Option<&str>,
        time_ms: i64,
        data: serde_json::Value,
    ) -> Event {
        let mut e = Event {
            specversion: "1.0".into(),
            id: uuid::Uuid::now_v7().to_string(),
            source: source.into(),
            kind: kind.into(),
            time: format_rfc3339(time_ms),
            subject: subject.map(str::to_string),
            datacontenttype: "application/json".into(),
            data,
            fingerprint: String::new(),
        };
        e.fingerprint = fingerprint(kind, subject.unwrap_or(""), "");
        e
    }

    /// Sets the fingerprint from a key naming the finding within type and subject (a group
    /// value, a window start).
    pub fn with_fingerprint_key(mut self, key: &str) -> Event {
        self.fingerprint = fingerprint(&self.kind, self.subject.as_deref().unwrap_or(""), key);
        self
    }
}

fn fingerprint(kind: &str, subject: &str, key: &str) -> String {
    let mut buf = Vec::with_capacity(kind.len() + subject.len() + key.len() + 2);
    buf.extend_from_slice(kind.as_bytes());
    buf.push(0);
    buf.extend_from_slice(subject.as_bytes());
    buf.push(0);
    buf.extend_from_slice(key.as_bytes());
    format!("{:016x}", xxh3_64(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudevents_json_shape() {
        let e = Event::new(
            types::LOG_RULE_MATCHED,
            "/opsloop/test",
            Some("oom-kill"),
            0,
            serde_json::json!({"line": 3}),
        );
        let v = serde_json::to_value(&e).unwrap_or_default();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "io.opsloop.log.rule_matched");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["data"]["line"], 3);
        assert_eq!(e.id.len(), 36);
        let back: Event = serde_json::from_value(v).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(back, e);
    }

    #[test]
    fn fingerprints_identify_findings() {
        let a = Event::new("t", "s", Some("x"), 0, serde_json::Value::Null);
        let b = Event::new("t", "s", Some("x"), 5, serde_json::Value::Null);
        assert_ne!(a.id, b.id);
        assert_eq!(a.fingerprint, b.fingerprint);
        let c = b.clone().with_fingerprint_key("10.0.0.1");
        assert_ne!(c.fingerprint, b.fingerprint);
    }
}
