//! Incidents and their record: the lifecycle states, the incident document (what the API
//! serves), the trail entries every decision produces, the [`HealJournal`] they are handed
//! to (the store implements it; [`MemoryJournal`] is for tests and `heal test`), the
//! `io.opsloop.incident.*` events of transitions, and the [`Redactor`] that keeps secret
//! values out of all of them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use opsloop_core::Event;
use opsloop_core::time::format_rfc3339;
use serde::{Deserialize, Serialize};

use crate::spec::Mode;

/// Bytes of a step's output kept in an incident.
pub const MAX_OUTPUT_BYTES: usize = 4096;
/// The text secrets are replaced with.
pub const REDACTED: &str = "[REDACTED]";
/// The `source` of the events this crate emits.
pub const EVENT_SOURCE: &str = "/opsloop/heal";

/// Where an incident is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    /// A playbook matched and passed its guardrails.
    Detected,
    /// Mode approve: waiting for an approval event.
    AwaitingApproval,
    /// Approved, about to remediate.
    Approved,
    /// Rejected by an approver (final).
    Rejected,
    /// Steps running.
    Remediating,
    /// Checks running.
    Verifying,
    /// Steps succeeded and checks passed (final).
    Resolved,
    /// Steps or checks failed, nobody to escalate to (final).
    Failed,
    /// Failed and escalated (final).
    Escalated,
    /// Mode dry-run: recorded with the interpolated steps, nothing run (final).
    DryRun,
    /// Cancelled before acting: the alert resolved while waiting (final).
    Cancelled,
}

impl IncidentState {
    /// As written in events and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Detected => "detected",
            IncidentState::AwaitingApproval => "awaiting_approval",
            IncidentState::Approved => "approved",
            IncidentState::Rejected => "rejected",
            IncidentState::Remediating => "remediating",
            IncidentState::Verifying => "verifying",
            IncidentState::Resolved => "resolved",
            IncidentState::Failed => "failed",
            IncidentState::Escalated => "escalated",
            IncidentState::DryRun => "dry_run",
            IncidentState::Cancelled => "cancelled",
        }
    }

    /// Whether nothing follows.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            IncidentState::Rejected
                | IncidentState::Resolved
                | IncidentState::Failed
                | IncidentState::Escalated
                | IncidentState::DryRun
                | IncidentState::Cancelled
        )
    }
}

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not started yet.
    Pending,
    /// Running.
    Running,
    /// Succeeded.
    Succeeded,
    /// Failed after all attempts.
    Failed,
    /// `when` was false.
    Skipped,
    /// Dry run: shown, not run.
    Planned,
}

/// One step of an incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Name.
    pub name: String,
    /// `exec`, `http`, …
    pub action: String,
    /// Whether it is a compensation step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compensation: bool,
    /// State.
    pub state: StepState,
    /// Attempts made.
    pub attempts: u32,
    /// Exit code of an exec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Output (stdout, then stderr), redacted, truncated to [`MAX_OUTPUT_BYTES`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// Error of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The interpolated action (secrets redacted).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub rendered: serde_json::Value,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
}

/// One verification check's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// `http`, `prometheus`, `no_event`, `exec`.
    pub check: String,
    /// Passed.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
    /// RFC 3339.
    pub at: String,
}

/// An incident: one playbook acting (or deciding not to) on one key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// UUIDv7.
    pub id: String,
    /// Playbook name.
    pub playbook: String,
    /// Dedup key.
    pub key: String,
    /// What is acted on.
    pub target: String,
    /// State.
    pub state: IncidentState,
    /// Mode.
    pub mode: Mode,
    /// RFC 3339.
    pub created: String,
    /// RFC 3339.
    pub updated: String,
    /// Id of the event that triggered it.
    pub trigger_event_id: String,
    /// Steps (and compensation steps).
    pub steps: Vec<StepRecord>,
    /// Verification results, the last round's.
    pub verification: Vec<CheckResult>,
    /// Who approved or rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    /// Why it ended as it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The triggering event, kept while the incident waits for approval: what the approver
    /// decides on, and what the run interpolates after a restart even when the event is no
    /// longer in this agent's store (under scale-out it may never have been).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Box<Event>>,
}

impl Incident {
    /// Moves to `state` at `now_ms`.
    pub fn transition(&mut self, state: IncidentState, now_ms: i64) {
        self.state = state;
        self.updated = format_rfc3339(now_ms);
    }

    /// The `io.opsloop.incident.<state>` event of its current state.
    pub fn event(&self, now_ms: i64) -> Event {
        let data = serde_json::json!({
            "incident_id": self.id,
            "playbook": self.playbook,
            "key": self.key,
            "target": self.target,
            "state": self.state,
            "mode": self.mode,
            "trigger_event_id": self.trigger_event_id,
            "approver": self.approver,
            "reason": self.reason,
        });
        let kind = format!("io.opsloop.incident.{}", self.state.as_str());
        Event::new(&kind, EVENT_SOURCE, Some(&self.id), now_ms, data)
            .with_fingerprint_key(self.state.as_str())
    }
}

/// What a trail entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrailKind {
    /// A playbook matched (threshold reached, guardrails passed or not yet evaluated).
    Matched,
    /// A match counted towards a threshold.
    ThresholdPending,
    /// A guardrail (or a resolved alert) stopped it.
    Suppressed,
    /// An incident changed state.
    Transition,
    /// Approved.
    Approved,
    /// Rejected.
    Rejected,
    /// A step started.
    StepStarted,
    /// A step finished.
    StepFinished,
    /// A verification round.
    Verification,
    /// An escalation was sent.
    Escalation,
}

/// One decision, for the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrailEntry {
    /// RFC 3339.
    pub at: String,
    /// What.
    pub kind: TrailKind,
    /// Playbook.
    pub playbook: String,
    /// Key.
    pub key: String,
    /// Incident, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    /// Triggering event, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Why / what, short (reason of a suppression, state of a transition, step name).
    pub detail: String,
    /// Structured details (redacted).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

/// Where decisions and incidents go. The store implements it over its tables; calls come
/// from the engine's task and from incident runs, so implementations must be quick (queue
/// the write) and thread-safe.
pub trait HealJournal: Send + Sync {
    /// Appends one decision to the trail.
    fn record(&self, entry: &TrailEntry);
    /// Saves (inserts or replaces) an incident.
    fn save_incident(&self, incident: &Incident);
}

/// A journal that drops everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullJournal;

impl HealJournal for NullJournal {
    fn record(&self, _entry: &TrailEntry) {}
    fn save_incident(&self, _incident: &Incident) {}
}

/// Entries and incidents kept in memory, bounded (the oldest entries and incidents go).
#[derive(Debug)]
pub struct MemoryJournal {
    inner: Mutex<MemoryInner>,
    max_entries: usize,
    max_incidents: usize,
}

#[derive(Debug, Default)]
struct MemoryInner {
    entries: VecDeque<TrailEntry>,
    incidents: BTreeMap<String, Incident>,
    order: VecDeque<String>,
}

impl Default for MemoryJournal {
    fn default() -> Self {
        MemoryJournal::new(100_000, 10_000)
    }
}

impl MemoryJournal {
    /// Keeps at most `max_entries` trail entries and `max_incidents` incidents.
    pub fn new(max_entries: usize, max_incidents: usize) -> Self {
        MemoryJournal {
            inner: Mutex::new(MemoryInner::default()),
            max_entries: max_entries.max(1),
            max_incidents: max_incidents.max(1),
        }
    }

    /// The trail, oldest first.
    pub fn entries(&self) -> Vec<TrailEntry> {
        self.inner
            .lock()
            .map(|g| g.entries.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The incidents, in creation order.
    pub fn incidents(&self) -> Vec<Incident> {
        self.inner
            .lock()
            .map(|g| {
                g.order
                    .iter()
                    .filter_map(|id| g.incidents.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One incident.
    pub fn incident(&self, id: &str) -> Option<Incident> {
        self.inner.lock().ok()?.incidents.get(id).cloned()
    }
}

impl HealJournal for MemoryJournal {
    fn record(&self, entry: &TrailEntry) {
        if let Ok(mut g) = self.inner.lock() {
            if g.entries.len() >= self.max_entries {
                g.entries.pop_front();
            }
            g.entries.push_back(entry.clone());
        }
    }

    fn save_incident(&self, incident: &Incident) {
        if let Ok(mut g) = self.inner.lock() {
            if !g.incidents.contains_key(&incident.id) {
                if g.order.len() >= self.max_incidents
                    && let Some(old) = g.order.pop_front()
                {
                    g.incidents.remove(&old);
                }
                g.order.push_back(incident.id.clone());
            }
            g.incidents.insert(incident.id.clone(), incident.clone());
        }
    }
}

/// Replaces secret values wherever text is recorded (outputs, rendered steps, events,
/// trail). Secrets are the values of the variables named by `secret_env`, the contents of
/// `secret_file`s, and variables whose names say they are secret (`*TOKEN*`, `*SECRET*`,
/// `*PASSWORD*`, `*API_KEY*`, `*CREDENTIAL*`), as `env.NAME` may interpolate them too.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

/// Shorter values are not redacted: they would blank out ordinary words.
const MIN_SECRET_LEN: usize = 4;

impl Redactor {
    /// A redactor for these values (short and empty ones are ignored).
    pub fn new<I: IntoIterator<Item = String>>(values: I) -> Redactor {
        let mut secrets: Vec<String> = values
            .into_iter()
            .map(|v| v.trim_end_matches(['\n', '\r']).to_string())
            .filter(|v| v.len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// Whether a variable name says it holds a secret.
    pub fn is_secret_name(name: &str) -> bool {
        let upper = name.to_ascii_uppercase();
        [
            "TOKEN",
            "SECRET",
            "PASSWORD",
            "PASSWD",
            "API_KEY",
            "APIKEY",
            "CREDENTIAL",
            "PRIVATE_KEY",
        ]
        .iter()
        .any(|w| upper.contains(w))
    }

    /// Whether there is anything to redact.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every secret replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        out
    }

    /// Every string of a JSON document redacted.
    pub fn redact_json(&self, v: &mut serde_json::Value) {
        if self.secrets.is_empty() {
            return;
        }
        match v {
            serde_json::Value::String(s) if self.secrets.iter().any(|x| s.contains(x.as_str())) => {
                *s = self.redact(s);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| self.redact_json(i)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|i| self.redact_json(i)),
            _ => {}
        }
    }
}

/// `text` cut to at most `max` bytes (marker included) on a character boundary, with a
/// marker saying how long it was.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let marker = format!("… [truncated, {} bytes in all]", text.len());
    let mut end = max.saturating_sub(marker.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{marker}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_replaces_every_secret() {
        let r = Redactor::new(["s3cr3t-value".to_string(), "ab".to_string()]);
        assert_eq!(r.redact("Bearer s3cr3t-value ab"), "Bearer [REDACTED] ab");
        let mut j = serde_json::json!({"h": ["x s3cr3t-value"], "n": 1});
        r.redact_json(&mut j);
        assert_eq!(j["h"][0], "x [REDACTED]");
        assert!(Redactor::is_secret_name("OPSLOOP_API_TOKEN"));
        assert!(!Redactor::is_secret_name("OPSLOOP_EXAMPLE_DIR"));
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        let long = "é".repeat(5000);
        let t = truncate(&long, MAX_OUTPUT_BYTES);
        assert!(t.len() <= MAX_OUTPUT_BYTES, "{}", t.len());
        assert!(t.ends_with("[truncated, 10000 bytes in all]"));
        assert_eq!(truncate("short", 10), "short");
    }

    #[test]
    fn memory_journal_is_bounded() {
        let j = MemoryJournal::new(2, 1);
        for i in 0..3 {
            j.record(&TrailEntry {
                at: String::new(),
                kind: TrailKind::Matched,
                playbook: "p".into(),
                key: i.to_string(),
                incident_id: None,
                event_id: None,
                detail: String::new(),
                data: serde_json::Value::Null,
            });
        }
        assert_eq!(j.entries().len(), 2);
        assert_eq!(j.entries()[0].key, "1");
    }
}
