//! Alertmanager's webhook notifications (payload version 4) as CloudEvents: the receiver at
//! `POST /api/v1/alertmanager` and the heal engine's tests both go through
//! [`events_from_webhook`], so an alert becomes the same event wherever it enters.
//!
//! One notification (one alert group, as Alertmanager's route grouped it) becomes one event:
//! type [`ALERT_FIRING`] or [`ALERT_RESOLVED`] after the notification's `status`, source
//! `/alertmanager/<receiver>`, subject the `groupKey`. Its fingerprint depends on the group
//! key alone, so a group's repeated notifications, firing or resolved, share it (what dedup
//! and "never act on a resolved alert" key on). Unknown fields are ignored: Alertmanager adds
//! fields without bumping the version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Event;

/// The event type of a notification whose group is firing.
pub const ALERT_FIRING: &str = "io.opsloop.alert.firing";
/// The event type of a notification whose group is resolved.
pub const ALERT_RESOLVED: &str = "io.opsloop.alert.resolved";
/// The payload version this receiver reads.
pub const WEBHOOK_VERSION: &str = "4";

/// The type the fingerprint is computed under: firing and resolved events of one group share
/// it, where a fingerprint over their own types would differ.
const FINGERPRINT_KIND: &str = "io.opsloop.alert";

/// Why a notification was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Not JSON, or a field of the wrong type.
    #[error("not an Alertmanager webhook payload: {0}")]
    Malformed(String),
    /// Another payload version.
    #[error("payload version {0:?} is not supported (this receiver reads version \"4\")")]
    Version(String),
    /// `status` is neither `firing` nor `resolved`.
    #[error("status {0:?} is neither \"firing\" nor \"resolved\"")]
    Status(String),
}

/// A webhook notification, version 4, as Alertmanager sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    /// Payload version; only `"4"` is read.
    pub version: String,
    /// Identifies the alert group (route and group labels).
    pub group_key: String,
    /// Alerts left out because of the receiver's `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
    /// `firing` when at least one alert of the group fires, else `resolved`.
    pub status: String,
    /// The receiver's name in Alertmanager's configuration.
    pub receiver: String,
    /// The labels the group is formed by.
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert of the notification has.
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    /// Annotations every alert of the notification has.
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    /// Link back to Alertmanager.
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    /// The alerts.
    #[serde(default)]
    pub alerts: Vec<WebhookAlert>,
}

/// One alert of a notification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    /// `firing` or `resolved`.
    #[serde(default)]
    pub status: String,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When it started firing, RFC 3339.
    #[serde(default)]
    pub starts_at: String,
    /// When it resolved (or `0001-01-01T00:00:00Z` while firing), RFC 3339.
    #[serde(default)]
    pub ends_at: String,
    /// Link to what generated it.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's fingerprint of its label set.
    #[serde(default)]
    pub fingerprint: String,
}

/// The version alone, read first so that another version is reported as such rather than as
/// whatever field it lacks.
#[derive(Deserialize)]
struct VersionOnly {
    version: Option<serde_json::Value>,
}

/// Reads a notification body: JSON, version `"4"`, a known status.
pub fn parse_webhook(body: &[u8]) -> Result<WebhookPayload, WebhookError> {
    let head: VersionOnly =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    match head.version {
        Some(serde_json::Value::String(v)) if v == WEBHOOK_VERSION => {}
        Some(serde_json::Value::String(v)) => return Err(WebhookError::Version(v)),
        Some(other) => return Err(WebhookError::Version(other.to_string())),
        None => return Err(WebhookError::Malformed("missing field `version`".into())),
    }
    let payload: WebhookPayload =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    if payload.status != "firing" && payload.status != "resolved" {
        return Err(WebhookError::Status(payload.status));
    }
    Ok(payload)
}

/// The event of one notification, received at `now_ms` (Unix ms).
pub fn event_from_payload(payload: &WebhookPayload, now_ms: i64) -> Event {
    let kind = if payload.status == "resolved" {
        ALERT_RESOLVED
    } else {
        ALERT_FIRING
    };
    let data = serde_json::json!({
        "status": payload.status,
        "receiver": payload.receiver,
        "groupKey": payload.group_key,
        "groupLabels": payload.group_labels,
        "labels": payload.common_labels,
        "annotations": payload.common_annotations,
        "alerts": payload.alerts,
        "externalURL": payload.external_url,
        "truncatedAlerts": payload.truncated_alerts,
    });
    let source = format!("/alertmanager/{}", payload.receiver);
    // Built under the shared type so that the fingerprint covers the group key only, then
    // given its own type.
    let mut event = Event::new(
        FINGERPRINT_KIND,
        &source,
        Some(&payload.group_key),
        now_ms,
        data,
    );
    event.kind = kind.to_string();
    event
}

/// The events of one notification body (always one: a notification is one alert group).
pub fn events_from_webhook(body: &[u8], now_ms: i64) -> Result<Vec<Event>, WebhookError> {
    let payload = parse_webhook(body)?;
    Ok(vec![event_from_payload(&payload, now_ms)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(status: &str, extra: &str) -> String {
        format!(
            r#"{{"version":"4","groupKey":"{{}}/{{}}:{{alertname=\"DiskFull\"}}","truncatedAlerts":0,
            "status":"{status}","receiver":"opsloop","groupLabels":{{"alertname":"DiskFull"}},
            "commonLabels":{{"alertname":"DiskFull","instance":"db1:9100"}},
            "commonAnnotations":{{"summary":"disk full"}},"externalURL":"http://am:9093",
            "alerts":[{{"status":"{status}","labels":{{"alertname":"DiskFull","instance":"db1:9100"}},
            "annotations":{{}},"startsAt":"2026-11-29T06:00:00Z","endsAt":"0001-01-01T00:00:00Z",
            "generatorURL":"http://prom/graph","fingerprint":"abc"{extra}}}]{extra}}}"#
        )
    }

    #[test]
    fn firing_and_resolved_share_the_group_fingerprint() {
        let firing = events_from_webhook(payload("firing", "").as_bytes(), 0).unwrap();
        let resolved = events_from_webhook(payload("resolved", "").as_bytes(), 5).unwrap();
        assert_eq!(firing.len(), 1);
        let (f, r) = (&firing[0], &resolved[0]);
        assert_eq!(f.kind, ALERT_FIRING);
        assert_eq!(r.kind, ALERT_RESOLVED);
        assert_eq!(f.fingerprint, r.fingerprint);
        assert_eq!(f.source, "/alertmanager/opsloop");
        assert_eq!(f.subject.as_deref(), Some("{}/{}:{alertname=\"DiskFull\"}"));
        assert_eq!(f.data["labels"]["instance"], "db1:9100");
        assert_eq!(f.data["annotations"]["summary"], "disk full");
        assert_eq!(f.data["alerts"][0]["startsAt"], "2026-11-29T06:00:00Z");
        assert_eq!(f.data["alerts"][0]["generatorURL"], "http://prom/graph");
        assert_eq!(f.data["groupKey"], "{}/{}:{alertname=\"DiskFull\"}");
        assert_eq!(f.data["externalURL"], "http://am:9093");
        assert_eq!(f.data["truncatedAlerts"], 0);
        let other_group = payload("firing", "").replace("DiskFull\\\"}", "CpuHigh\\\"}");
        let other = events_from_webhook(other_group.as_bytes(), 0).unwrap();
        assert_ne!(other[0].fingerprint, f.fingerprint);
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let body = payload("firing", r#","newField":{"x":[1,2]}"#);
        assert!(events_from_webhook(body.as_bytes(), 0).is_ok());
    }

    #[test]
    fn other_versions_and_bad_bodies_are_refused() {
        let v3 = payload("firing", "").replace(r#""version":"4""#, r#""version":"3""#);
        assert!(matches!(
            events_from_webhook(v3.as_bytes(), 0),
            Err(WebhookError::Version(v)) if v == "3"
        ));
        let numeric = payload("firing", "").replace(r#""version":"4""#, r#""version":4"#);
        assert!(matches!(
            events_from_webhook(numeric.as_bytes(), 0),
            Err(WebhookError::Version(_))
        ));
        assert!(matches!(
            events_from_webhook(b"{\"groupKey\":\"x\"}", 0),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            events_from_webhook(b"not json", 0),
            Err(WebhookError::Malformed(_))
        ));
        let weird = payload("pending", "");
        assert!(matches!(
            events_from_webhook(weird.as_bytes(), 0),
            Err(WebhookError::Status(_))
        ));
        let bad_label = payload("firing", "").replace(r#""instance":"db1:9100"}"#, r#""n":1}"#);
        assert!(matches!(
            events_from_webhook(bad_label.as_bytes(), 0),
            Err(WebhookError::Malformed(_))
        ));
    }
}
