//! Findings of the log loop as CloudEvents: [`rule_matched`], [`anomaly`], [`input_problem`].
//!
//! The same constructors serve `opsloop inspect --emit events` and the agent, so an event
//! looks the same whichever produced it.

use opsloop_core::Event;
use opsloop_core::event::types;
use opsloop_core::time::format_rfc3339;
use serde_json::{Value, json};

use crate::anomaly::{Anomaly, AnomalyKind};
use crate::miner::TemplateId;
use crate::parse::Record;
use crate::rules::Rule;

/// Where a record came from, for event payloads.
pub struct Origin<'a> {
    /// The event `source` attribute (`/opsloop/inspect`, `/opsloop/agent/HOST`).
    pub source: &'a str,
    /// The file or source name.
    pub input: &'a str,
}

fn time_of(rec: &Record) -> i64 {
    rec.timestamp.unwrap_or_else(opsloop_core::time::now_ms)
}

fn short(s: &str) -> String {
    match s.char_indices().nth(1000) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// `io.opsloop.log.rule_matched`: `rule` fired on `rec`. Subject: the rule id. One finding per
/// rule and template, so repeats of the same failure share a fingerprint.
pub fn rule_matched(
    origin: &Origin<'_>,
    rule: &Rule,
    rec: &Record,
    template_id: TemplateId,
    template: &str,
) -> Event {
    let fields: serde_json::Map<String, Value> = rec
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let data = json!({
        "rule": rule.spec.id,
        "severity": rule.spec.severity,
        "description": rule.spec.description,
        "labels": rule.spec.labels,
        "input": origin.input,
        "line": rec.line,
        "timestamp": rec.timestamp.map(format_rfc3339),
        "level": rec.level,
        "message": short(&rec.message),
        "template_id": template_id.to_string(),
        "template": template,
        "fields": fields,
    });
    Event::new(
        types::LOG_RULE_MATCHED,
        origin.source,
        Some(&rule.spec.id),
        time_of(rec),
        data,
    )
    .with_fingerprint_key(&template_id.to_string())
}

/// `io.opsloop.log.input_problem`: lines of `origin.input` that could not be taken as they
/// were, of one `kind` (`unparsed_lines`, `cut_lines`, `invalid_utf8`,
/// `checkpoint_unreadable`), at `time_ms`. Subject: the input. `details` add to the payload's
/// `kind` and `input`; an `example` among them is shortened. One fingerprint per input and
/// kind, so repeats group.
pub fn input_problem(origin: &Origin<'_>, kind: &str, time_ms: i64, details: Value) -> Event {
    let mut data = json!({ "kind": kind, "input": origin.input });
    if let (Some(data), Value::Object(details)) = (data.as_object_mut(), details) {
        for (k, v) in details {
            let v = match (k.as_str(), v) {
                ("example", Value::String(e)) => Value::String(short(&e)),
                (_, v) => v,
            };
            data.insert(k, v);
        }
    }
    Event::new(
        types::LOG_INPUT_PROBLEM,
        origin.source,
        Some(origin.input),
        time_ms,
        data,
    )
    .with_fingerprint_key(kind)
}

/// The event of an anomaly found at `rec`. Subject: the template id (or the input for
/// error-share spikes).
pub fn anomaly(
    origin: &Origin<'_>,
    found: &Anomaly,
    rec: &Record,
    template_id: Option<TemplateId>,
    template: Option<&str>,
) -> Event {
    let kind = match found.kind {
        AnomalyKind::NewTemplate => types::LOG_NEW_TEMPLATE,
        AnomalyKind::TemplateSpike => types::LOG_TEMPLATE_SPIKE,
        AnomalyKind::ErrorShareSpike => types::LOG_ERROR_SHARE_SPIKE,
    };
    let subject = template_id.map_or_else(|| origin.input.to_string(), |t| t.to_string());
    let bucket = if found.dated {
        Value::from(format_rfc3339(found.bucket))
    } else {
        Value::from(found.bucket)
    };
    let data = json!({
        "kind": found.kind,
        "input": origin.input,
        "line": rec.line,
        "template_id": template_id.map(|t| t.to_string()),
        "template": template,
        "example": short(&rec.message),
        "bucket": bucket,
        "observed": found.observed,
        "baseline": found.baseline,
    });
    Event::new(kind, origin.source, Some(&subject), time_of(rec), data)
        .with_fingerprint_key(&found.bucket.to_string())
}
