//! What `opsloop heal test` shows: events replayed through a private engine that acts on
//! nothing, each playbook's verdict (why it matched or not, guardrail decisions) and the
//! interpolated steps it would run, secrets redacted. Also the lenient reading of a
//! hand-written CloudEvent (missing `id`, `time`, `fingerprint` are filled in).

use std::collections::BTreeMap;
use std::sync::Arc;

use opsloop_core::Event;
use opsloop_core::time::{ManualClock, parse_iso8601};
use serde::Serialize;

use crate::engine::{Decision, HealEngine, MemorySink, Verdict};
use crate::incident::{MemoryJournal, StepRecord};
use crate::playbook::PlaybookSet;
use crate::run::render_steps;

/// One playbook's verdict on one event, with the steps it would run when it triggered.
#[derive(Clone, Debug, Serialize)]
pub struct PlaybookReport {
    /// Playbook.
    pub playbook: String,
    /// Verdict.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The interpolated steps (triggered playbooks only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepRecord>,
}

/// All verdicts on one event.
#[derive(Clone, Debug, Serialize)]
pub struct EventReport {
    /// The event's id.
    pub event_id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// One per playbook, in file order.
    pub playbooks: Vec<PlaybookReport>,
}

/// Events read from a file, and the problems of the entries that could not be read.
#[derive(Debug, Default)]
pub struct ReadEvents {
    /// The events, in file order.
    pub events: Vec<Event>,
    /// One message per bad entry, naming it (`event[2].type: missing`).
    pub problems: Vec<String>,
}

/// Reads one CloudEvent or a list of them. Only `type` is required; `source` defaults to
/// `/opsloop/heal-test`, `id` to a new UUIDv7, `time` to `now_ms`, `fingerprint` to the one
/// opsloop would compute (type and subject). A bad entry is reported (event index and field)
/// and skipped; the others are read. Only text that is not JSON at all is an error.
pub fn events_from_json(text: &str, now_ms: i64) -> Result<ReadEvents, String> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let items = match doc {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    let mut out = ReadEvents::default();
    for (i, item) in items.into_iter().enumerate() {
        match event_from_value(i, &item, now_ms) {
            Ok(e) => out.events.push(e),
            Err(p) => out.problems.push(p),
        }
    }
    Ok(out)
}

fn event_from_value(i: usize, item: &serde_json::Value, now_ms: i64) -> Result<Event, String> {
    {
        let at = |field: &str| format!("event[{i}].{field}");
        let Some(obj) = item.as_object() else {
            return Err(format!("event[{i}]: not a JSON object"));
        };
        let text = |field: &str| -> Result<Option<String>, String> {
            match obj.get(field) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("{}: must be a string", at(field))),
            }
        };
        let kind = text("type")?.ok_or_else(|| format!("{}: missing", at("type")))?;
        if let Some(v) = text("specversion")?
            && v != "1.0"
        {
            return Err(format!("{}: {v:?} is not 1.0", at("specversion")));
        }
        let source = text("source")?.unwrap_or_else(|| "/opsloop/heal-test".into());
        let subject = text("subject")?;
        let time_ms = match text("time")? {
            Some(t) => match parse_iso8601(t.as_bytes()) {
                Some((ms, n)) if n == t.len() => ms,
                _ => return Err(format!("{}: {t:?} is not an RFC 3339 time", at("time"))),
            },
            None => now_ms,
        };
        let data = obj.get("data").cloned().unwrap_or(serde_json::Value::Null);
        let mut e = Event::new(&kind, &source, subject.as_deref(), time_ms, data);
        if let Some(id) = text("id")? {
            e.id = id;
        }
        if let Some(fp) = text("fingerprint")? {
            e.fingerprint = fp;
        }
        Ok(e)
    }
}

/// Replays `events` in order (the clock follows their times, never backwards) through an
/// engine over `set` that runs nothing: an enforce incident is taken as finished at once, so
/// later events meet its cooldown as they would.
pub fn simulate(
    set: &PlaybookSet,
    events: &[Event],
    env: BTreeMap<String, String>,
    now_ms: i64,
) -> Vec<EventReport> {
    let clock = Arc::new(ManualClock::new(now_ms));
    let mut engine = HealEngine::new(
        set.clone(),
        clock.clone(),
        Arc::new(MemoryJournal::new(1000, 100)),
        Arc::new(MemorySink::default()),
        env.clone(),
    );
    let redactor = engine.redactor().clone();
    let mut clock_ms = now_ms;
    let mut reports = Vec::with_capacity(events.len());
    for event in events {
        if let Some((t, _)) = parse_iso8601(event.time.as_bytes()) {
            clock_ms = clock_ms.max(t);
            clock.set(clock_ms);
        }
        let (decisions, verdicts) = engine.handle_explained(event);
        for d in &decisions {
            if let Decision::Remediate(plan) = d {
                engine.finish(&plan.incident);
            }
        }
        let playbooks = verdicts
            .into_iter()
            .map(|v| {
                let steps = match &v.verdict {
                    Verdict::Triggered { .. } => set
                        .playbooks()
                        .iter()
                        .find(|p| p.name == v.playbook)
                        .map(|p| render_steps(p, event, &env, &redactor, clock_ms))
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                PlaybookReport {
                    playbook: v.playbook,
                    verdict: v.verdict,
                    steps,
                }
            })
            .collect();
        reports.push(EventReport {
            event_id: event.id.clone(),
            kind: event.kind.clone(),
            subject: event.subject.clone(),
            playbooks,
        });
    }
    reports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_events_are_completed_and_errors_named() {
        let e = events_from_json(r#"{"type": "t", "subject": "s", "data": {"a": 1}}"#, 5)
            .unwrap_or_default()
            .events;
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, "t");
        assert_eq!(e[0].time, "1970-01-01T00:00:00.005Z");
        assert_eq!(e[0].fingerprint.len(), 16);
        let r = events_from_json(r#"[{"type": "t"}, {"subject": "x"}, 3, {"type": "u"}]"#, 0)
            .unwrap_or_default();
        assert_eq!(r.events.len(), 2);
        assert_eq!(
            r.problems,
            ["event[1].type: missing", "event[2]: not a JSON object"]
        );
        let r = events_from_json(r#"{"type": "t", "time": "yesterday"}"#, 0).unwrap_or_default();
        assert!(r.problems[0].contains("event[0].time"));
        assert!(events_from_json("nope", 0).is_err());
    }

    #[test]
    fn simulation_shows_interpolated_steps_with_secrets_redacted() {
        let yaml = r#"
name: hook
trigger: { type: t }
mode: enforce
steps:
  - http:
      method: POST
      url: 'http://x/${{ event.subject }}?k=${{ env.MY_API_TOKEN }}'
      headers: { Authorization: { secret_env: MY_API_TOKEN } }
"#;
        let set = PlaybookSet::from_yaml(yaml, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
        let events = events_from_json(
            r#"[{"type": "t", "subject": "a"}, {"type": "t", "subject": "a"}]"#,
            0,
        )
        .unwrap_or_default()
        .events;
        let env = [("MY_API_TOKEN".to_string(), "hunter2-secret".to_string())].into();
        let r = simulate(&set, &events, env, 1_000);
        let text = serde_json::to_string(&r).unwrap_or_default();
        assert!(!text.contains("hunter2-secret"), "{text}");
        assert!(matches!(
            r[0].playbooks[0].verdict,
            Verdict::Triggered { .. }
        ));
        assert_eq!(
            r[0].playbooks[0].steps[0].rendered["url"],
            "http://x/a?k=[REDACTED]"
        );
        assert!(matches!(
            r[1].playbooks[0].verdict,
            Verdict::Suppressed { .. }
        ));
    }
}
