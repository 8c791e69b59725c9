//! Running an incident: [`run_incident`] interpolates and performs the steps in order (each
//! with its `when`, timeout and retries with exponential backoff on tokio time, so tests
//! pause it), captures outputs for later steps, verifies, and on failure runs the
//! compensation steps and the escalations. Every step, check and transition is recorded
//! (redacted, outputs truncated) and every transition published as an event.
//! [`render_steps`] is the same interpolation without acting (dry runs, `heal test`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use opsloop_core::Event;
use opsloop_core::time::{Clock, format_rfc3339};

use crate::action::{Action, ActionError, ActionOutput, ActionRunner, Header};
use crate::engine::{EventSink, EventWatches, RunPlan, event_value, record_transition};
use crate::expr::{Scope, from_strings};
use crate::incident::{
    CheckResult, EVENT_SOURCE, HealJournal, Incident, IncidentState, MAX_OUTPUT_BYTES, Redactor,
    StepRecord, StepState, TrailEntry, TrailKind, truncate,
};
use crate::playbook::{
    ActionTemplate, Check, Escalation, HeaderTemplate, JsonTemplate, Playbook, Step,
};

/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Per-request timeout of checks and escalations.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// The heal loop's own event types (transitions, approvals): no playbook or hook emits them.
pub const INCIDENT_PREFIX: &str = "io.opsloop.incident.";

/// What runs share with the engine.
#[derive(Clone)]
pub struct RunDeps {
    /// Performs actions.
    pub runner: Arc<dyn ActionRunner>,
    /// Records decisions and incidents.
    pub journal: Arc<dyn HealJournal>,
    /// Publishes events.
    pub sink: Arc<dyn EventSink>,
    /// Timestamps.
    pub clock: Arc<dyn Clock>,
    /// The agent's environment.
    pub env: Arc<BTreeMap<String, String>>,
    /// Keeps secrets out of records.
    pub redactor: Redactor,
    /// No-event watches.
    pub watches: Arc<EventWatches>,
}

/// The scope steps see: `event`, `vars`, `steps`, `env`.
struct StepScope {
    event: cel::Value,
    vars: cel::Value,
    env: cel::Value,
    steps: HashMap<String, cel::Value>,
}

impl StepScope {
    fn new(
        trigger: &Event,
        pb: &Playbook,
        env: &BTreeMap<String, String>,
    ) -> (StepScope, Option<String>) {
        let event = event_value(trigger);
        let env_value = from_strings(env);
        let base = Scope::new()
            .with("event", event.clone())
            .with("env", env_value.clone());
        let mut vars = BTreeMap::new();
        let mut error = None;
        for (name, t) in &pb.vars {
            match t.render(&base.clone().with("vars", from_strings(&vars))) {
                Ok(v) => {
                    vars.insert(name.clone(), v);
                }
                Err(e) => {
                    error.get_or_insert(format!("vars.{name}: {e}"));
                }
            }
        }
        (
            StepScope {
                event,
                vars: from_strings(&vars),
                env: env_value,
                steps: HashMap::new(),
            },
            error,
        )
    }

    fn scope(&self) -> Scope {
        Scope::new()
            .with("event", self.event.clone())
            .with("vars", self.vars.clone())
            .with("env", self.env.clone())
            .with("steps", cel::Value::from(self.steps.clone()))
    }

    fn capture(&mut self, name: &str, out: &ActionOutput) {
        let mut m: HashMap<String, cel::Value> = HashMap::new();
        m.insert("stdout".into(), cel::Value::from(out.stdout.as_str()));
        m.insert("stderr".into(), cel::Value::from(out.stderr.as_str()));
        m.insert(
            "exit_code".into(),
            out.exit_code
                .map_or(cel::Value::Null, |c| cel::Value::Int(i64::from(c))),
        );
        m.insert(
            "status".into(),
            out.status
                .map_or(cel::Value::Null, |s| cel::Value::Int(i64::from(s))),
        );
        m.insert("success".into(), cel::Value::Bool(out.success));
        self.steps.insert(name.to_string(), cel::Value::from(m));
    }
}

fn render_json(t: &JsonTemplate, scope: &Scope) -> Result<serde_json::Value, String> {
    Ok(match t {
        JsonTemplate::Scalar(v) => v.clone(),
        JsonTemplate::Text(t) => serde_json::Value::String(t.render(scope)?),
        JsonTemplate::List(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|i| render_json(i, scope))
                .collect::<Result<_, _>>()?,
        ),
        JsonTemplate::Object(entries) => {
            let mut m = serde_json::Map::new();
            for (k, v) in entries {
                m.insert(k.clone(), render_json(v, scope)?);
            }
            serde_json::Value::Object(m)
        }
    })
}

fn render_headers(
    headers: &[(String, HeaderTemplate)],
    scope: &Scope,
    env: &BTreeMap<String, String>,
) -> Result<Vec<Header>, String> {
    headers
        .iter()
        .map(|(name, h)| {
            let (value, secret) = match h {
                HeaderTemplate::Text(t) => (t.render(scope)?, false),
                HeaderTemplate::SecretEnv(var) => (
                    env.get(var)
                        .cloned()
                        .ok_or_else(|| format!("header {name}: secret_env {var} is not set"))?,
                    true,
                ),
                HeaderTemplate::SecretFile(path) => (
                    std::fs::read_to_string(path)
                        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                        .map_err(|e| {
                            format!("header {name}: secret_file {}: {e}", path.display())
                        })?,
                    true,
                ),
            };
            Ok(Header {
                name: name.clone(),
                value,
                secret,
            })
        })
        .collect()
}

/// Interpolates an action over `scope`.
pub fn render_action(
    step: &Step,
    scope: &Scope,
    env: &BTreeMap<String, String>,
    now_ms: i64,
) -> Result<Action, String> {
    Ok(match &step.action {
        ActionTemplate::Exec(x) => Action::Exec {
            command: x
                .command
                .iter()
                .map(|t| t.render(scope))
                .collect::<Result<_, _>>()?,
            allow_read: x
                .allow_read
                .iter()
                .map(|t| absolute(t.render(scope)?))
                .collect::<Result<_, _>>()?,
            allow_write: x
                .allow_write
                .iter()
                .map(|t| absolute(t.render(scope)?))
                .collect::<Result<_, _>>()?,
            network: x.network,
            // Never longer than the step: a command outliving its step's timeout would run
            // beside the retry or the compensation that follows.
            timeout_ms: u64::try_from(
                x.timeout
                    .map_or(step.timeout, |t| t.min(step.timeout))
                    .as_millis(),
            )
            .unwrap_or(u64::MAX),
            env: x.env.clone(),
            user: x.user.clone(),
            memory_bytes: x.memory,
            cpu_time_ms: x
                .cpu_time
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            max_procs: x.max_procs,
        },
        ActionTemplate::Http(h) => Action::Http {
            method: h.method.clone(),
            url: h.url.render(scope)?,
            headers: render_headers(&h.headers, scope, env)?,
            body: h.body.as_ref().map(|b| b.render(scope)).transpose()?,
            expect_status: h.expect_status.clone(),
        },
        ActionTemplate::Kubernetes(k) => {
            let replicas = match &k.replicas {
                Some(r) => {
                    let text = r.render(scope)?;
                    Some(
                        text.trim()
                            .parse::<i32>()
                            .ok()
                            .filter(|n| *n >= 0)
                            .ok_or_else(|| format!("replicas {text:?} is not a count"))?,
                    )
                }
                None => None,
            };
            let name = k.name.render(scope)?;
            if name.is_empty() {
                return Err("kubernetes: the name interpolated to an empty string".into());
            }
            Action::Kubernetes {
                action: k.action,
                object_kind: k.kind.render(scope)?,
                namespace: k.namespace.as_ref().map(|n| n.render(scope)).transpose()?,
                name,
                replicas,
                annotations: k
                    .annotations
                    .iter()
                    .map(|(key, v)| Ok((key.clone(), v.render(scope)?)))
                    .collect::<Result<_, String>>()?,
                patch: k
                    .patch
                    .as_ref()
                    .map(|p| render_json(p, scope))
                    .transpose()?,
            }
        }
        ActionTemplate::NatsPublish { subject, payload } => Action::NatsPublish {
            subject: subject.render(scope)?,
            payload: payload.render(scope)?,
        },
        ActionTemplate::Event {
            kind,
            subject,
            data,
        } => {
            let kind = kind.render(scope)?;
            // Approvals and the loop's own transitions cannot come from a playbook.
            if kind.starts_with(INCIDENT_PREFIX) {
                return Err(format!("event type {kind:?} is the heal loop's own"));
            }
            let subject = subject.as_ref().map(|s| s.render(scope)).transpose()?;
            let data = render_json(data, scope)?;
            Action::Event {
                event: Box::new(Event::new(
                    &kind,
                    EVENT_SOURCE,
                    subject.as_deref(),
                    now_ms,
                    data,
                )),
            }
        }
    })
}

fn absolute(path: String) -> Result<String, String> {
    if path.starts_with('/') {
        Ok(path)
    } else {
        Err(format!("{path:?}: the path must be absolute"))
    }
}

/// The action as recorded: serialised, secret headers and secret values redacted.
fn recorded(action: &Action, redactor: &Redactor) -> serde_json::Value {
    let mut v = serde_json::to_value(action).unwrap_or(serde_json::Value::Null);
    redactor.redact_json(&mut v);
    v
}

/// The steps of `pb` interpolated for `trigger` without running anything: what a dry run
/// records and `heal test` shows. A `when` that reads `steps` cannot be decided yet and is
/// shown as written; a step that cannot be interpolated says why.
pub fn render_steps(
    pb: &Playbook,
    trigger: &Event,
    env: &BTreeMap<String, String>,
    redactor: &Redactor,
    now: i64,
) -> Vec<StepRecord> {
    let (scope, vars_error) = StepScope::new(trigger, pb, env);
    let scope = scope.scope();
    pb.steps
        .iter()
        .map(|step| {
            let rendered = render_action(step, &scope, env, now);
            let mut rec = StepRecord {
                name: step.name.clone(),
                action: step.action.kind().into(),
                compensation: false,
                state: StepState::Planned,
                attempts: 0,
                exit_code: None,
                status: None,
                output: String::new(),
                error: vars_error.clone(),
                rendered: serde_json::Value::Null,
                started: None,
                finished: None,
            };
            match rendered {
                Ok(a) => {
                    let mut v = recorded(&a, redactor);
                    if let (Some(when), Some(obj)) = (&step.when, v.as_object_mut()) {
                        obj.insert(
                            "when".into(),
                            serde_json::Value::String(when.source().into()),
                        );
                    }
                    rec.rendered = v;
                }
                Err(e) => rec.error = Some(redactor.redact(&e)),
            }
            rec
        })
        .collect()
}

/// Backoff before attempt `attempt + 1` (attempt counts from 1): `base * 2^(attempt-1)`,
/// capped at [`MAX_BACKOFF`].
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    base.checked_mul(factor)
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// The longest one incident of `playbook` can run: every step and compensation step at all
/// its attempts and backoffs, the verification to its deadline (plus one check), and every
/// escalation. A bound, used to keep a scale-out lock at least as long as the run it guards.
pub fn longest_run(playbook: &crate::playbook::Playbook) -> Duration {
    let steps = |steps: &[crate::playbook::Step]| {
        steps.iter().fold(Duration::ZERO, |total, step| {
            let attempts = step.attempts.max(1);
            let waits = (1..attempts).fold(Duration::ZERO, |w, a| {
                w.saturating_add(backoff(step.backoff, a))
            });
            total
                .saturating_add(step.timeout.saturating_mul(attempts))
                .saturating_add(waits)
        })
    };
    let verify = playbook.verify.as_ref().map_or(Duration::ZERO, |v| {
        v.deadline.saturating_add(
            CHECK_TIMEOUT.saturating_mul(v.checks.len().try_into().unwrap_or(u32::MAX)),
        )
    });
    let escalations =
        CHECK_TIMEOUT.saturating_mul(playbook.escalate.len().try_into().unwrap_or(u32::MAX));
    steps(&playbook.steps)
        .saturating_add(verify)
        .saturating_add(steps(&playbook.compensation))
        .saturating_add(escalations)
}

/// Runs one incident to its end; returns it in its final state. Call
/// [`crate::HealEngine::finish`] with it afterwards.
pub async fn run_incident(plan: RunPlan, deps: &RunDeps) -> Incident {
    let RunPlan {
        mut incident,
        playbook: pb,
        trigger,
    } = plan;
    transition(&mut incident, IncidentState::Remediating, None, deps);
    let (mut scope, vars_error) = StepScope::new(&trigger, &pb, &deps.env);
    let mut failure = vars_error;
    if failure.is_none() {
        failure = run_steps(&pb.steps, false, &mut incident, &mut scope, deps).await;
    }
    if failure.is_none()
        && let Some(verify) = &pb.verify
    {
        transition(&mut incident, IncidentState::Verifying, None, deps);
        failure = verify_checks(verify, &mut incident, &scope, deps).await;
    }
    match failure {
        None => transition(&mut incident, IncidentState::Resolved, None, deps),
        Some(reason) => {
            if !pb.compensation.is_empty() {
                // Compensation runs in full even if one of its steps fails.
                let _ = run_steps(&pb.compensation, true, &mut incident, &mut scope, deps).await;
            }
            let escalated = escalate(&pb, &mut incident, &reason, &scope, deps).await;
            let state = if escalated {
                IncidentState::Escalated
            } else {
                IncidentState::Failed
            };
            transition(&mut incident, state, Some(reason), deps);
        }
    }
    incident
}

/// Ends an incident that another agent handles (or whose lock could not be asked for)
/// without acting: a `suppressed` trail entry naming `reason`, then `cancelled`.
pub fn suppress_incident(
    plan: RunPlan,
    reason: &str,
    error: Option<&str>,
    deps: &RunDeps,
) -> Incident {
    let RunPlan {
        mut incident,
        trigger,
        ..
    } = plan;
    let now = deps.clock.now_ms();
    deps.journal.record(&TrailEntry {
        at: format_rfc3339(now),
        kind: TrailKind::Suppressed,
        playbook: incident.playbook.clone(),
        key: incident.key.clone(),
        incident_id: Some(incident.id.clone()),
        event_id: Some(trigger.id.clone()),
        detail: reason.into(),
        data: serde_json::json!({
            "target": deps.redactor.redact(&incident.target),
            "error": error.map(|e| deps.redactor.redact(e)),
        }),
    });
    transition(
        &mut incident,
        IncidentState::Cancelled,
        Some(reason.to_string()),
        deps,
    );
    incident
}

fn transition(
    incident: &mut Incident,
    state: IncidentState,
    reason: Option<String>,
    deps: &RunDeps,
) {
    let now = deps.clock.now_ms();
    incident.transition(state, now);
    if let Some(r) = reason {
        incident.reason = Some(deps.redactor.redact(&r));
    }
    record_transition(
        incident,
        now,
        deps.journal.as_ref(),
        deps.sink.as_ref(),
        &deps.redactor,
    );
}

fn trail(
    deps: &RunDeps,
    incident: &Incident,
    kind: TrailKind,
    detail: String,
    data: serde_json::Value,
) {
    deps.journal.record(&TrailEntry {
        at: format_rfc3339(deps.clock.now_ms()),
        kind,
        playbook: incident.playbook.clone(),
        key: incident.key.clone(),
        incident_id: Some(incident.id.clone()),
        event_id: None,
        detail,
        data,
    });
}

/// Performs one action with a timeout.
/// How much longer than its sandbox's own timeout an `exec` is waited for: the sandbox kills
/// the command's whole process tree at its timeout and reports 124, and that result (not a
/// timer that fires first and leaves the tree to die a moment later, beside a retry) is what
/// the step records.
const EXEC_TIMER_MARGIN: Duration = Duration::from_secs(5);

async fn perform(
    deps: &RunDeps,
    action: &Action,
    timeout: Duration,
) -> Result<ActionOutput, ActionError> {
    let timeout = match action {
        Action::Exec { .. } => timeout.saturating_add(EXEC_TIMER_MARGIN),
        _ => timeout,
    };
    match tokio::time::timeout(timeout, deps.runner.run(action)).await {
        Ok(r) => r,
        Err(_) => Err(ActionError::Other(format!("timed out after {timeout:?}"))),
    }
}

/// Runs steps in order; the first failure stops them (unless `compensation`) and is returned.
async fn run_steps(
    steps: &[Step],
    compensation: bool,
    incident: &mut Incident,
    scope: &mut StepScope,
    deps: &RunDeps,
) -> Option<String> {
    let mut failure = None;
    for step in steps {
        let now = deps.clock.now_ms();
        let mut rec = StepRecord {
            name: step.name.clone(),
            action: step.action.kind().into(),
            compensation,
            state: StepState::Pending,
            attempts: 0,
            exit_code: None,
            status: None,
            output: String::new(),
            error: None,
            rendered: serde_json::Value::Null,
            started: None,
            finished: None,
        };
        let current = scope.scope();
        if let Some(when) = &step.when {
            match when.eval_bool(&current) {
                Ok(true) => {}
                Ok(false) => {
                    rec.state = StepState::Skipped;
                    rec.finished = Some(format_rfc3339(now));
                    trail(
                        deps,
                        incident,
                        TrailKind::StepFinished,
                        format!("{}: skipped", step.name),
                        serde_json::json!({ "when": when.source() }),
                    );
                    incident.steps.push(rec);
                    deps.journal.save_incident(incident);
                    continue;
                }
                Err(e) => {
                    rec.state = StepState::Failed;
                    rec.error = Some(deps.redactor.redact(&format!("when: {e}")));
                    rec.finished = Some(format_rfc3339(now));
                    failure.get_or_insert(format!("step {}: when: {e}", step.name));
                    trail(
                        deps,
                        incident,
                        TrailKind::StepFinished,
                        format!("{}: failed", step.name),
                        serde_json::json!({ "error": rec.error }),
                    );
                    incident.steps.push(rec);
                    deps.journal.save_incident(incident);
                    if compensation {
                        continue;
                    }
                    break;
                }
            }
        }
        let action = match render_action(step, &current, &deps.env, now) {
            Ok(a) => a,
            Err(e) => {
                let e = deps.redactor.redact(&e);
                rec.state = StepState::Failed;
                rec.error = Some(e.clone());
                rec.finished = Some(format_rfc3339(now));
                failure.get_or_insert(format!("step {}: {e}", step.name));
                trail(
                    deps,
                    incident,
                    TrailKind::StepFinished,
                    format!("{}: failed", step.name),
                    serde_json::json!({ "error": e }),
                );
                incident.steps.push(rec);
                deps.journal.save_incident(incident);
                if compensation {
                    continue;
                }
                break;
            }
        };
        rec.rendered = recorded(&action, &deps.redactor);
        rec.state = StepState::Running;
        rec.started = Some(format_rfc3339(now));
        let mut last: Result<ActionOutput, ActionError> = Err(ActionError::Other("not run".into()));
        for attempt in 1..=step.attempts {
            rec.attempts = attempt;
            trail(
                deps,
                incident,
                TrailKind::StepStarted,
                format!("{} attempt {attempt}", step.name),
                serde_json::json!({ "action": rec.rendered }),
            );
            last = perform(deps, &action, step.timeout).await;
            if let Ok(out) = &last
                && let Some(e) = &out.emitted
            {
                let mut e = e.clone();
                deps.redactor.redact_json(&mut e.data);
                deps.sink.publish(e);
            }
            let ok = matches!(&last, Ok(o) if o.success);
            if ok || attempt == step.attempts {
                break;
            }
            tokio::time::sleep(backoff(step.backoff, attempt)).await;
        }
        let finished = deps.clock.now_ms();
        rec.finished = Some(format_rfc3339(finished));
        match &last {
            Ok(out) => {
                rec.exit_code = out.exit_code;
                rec.status = out.status;
                let mut text = out.stdout.clone();
                if !out.stderr.is_empty() {
                    if !text.is_empty() && !text.ends_with('\n') {
                        text.push('\n');
                    }
                    text.push_str(&out.stderr);
                }
                rec.output = truncate(&deps.redactor.redact(&text), MAX_OUTPUT_BYTES);
                rec.state = if out.success {
                    StepState::Succeeded
                } else {
                    StepState::Failed
                };
                if let Some(c) = &step.capture {
                    scope.capture(c, out);
                }
                if !out.success {
                    let what = match (out.exit_code, out.status) {
                        (Some(c), _) => format!("exit code {c}"),
                        (_, Some(s)) => format!("status {s}"),
                        _ => "failed".into(),
                    };
                    failure.get_or_insert(format!("step {}: {what}", step.name));
                }
            }
            Err(e) => {
                rec.state = StepState::Failed;
                let e = deps.redactor.redact(&e.to_string());
                rec.error = Some(e.clone());
                failure.get_or_insert(format!("step {}: {e}", step.name));
            }
        }
        trail(
            deps,
            incident,
            TrailKind::StepFinished,
            format!(
                "{}: {}",
                step.name,
                if rec.state == StepState::Succeeded {
                    "succeeded"
                } else {
                    "failed"
                }
            ),
            serde_json::json!({
                "attempts": rec.attempts,
                "exit_code": rec.exit_code,
                "status": rec.status,
                "output": rec.output,
                "error": rec.error,
            }),
        );
        let failed = rec.state == StepState::Failed;
        incident.steps.push(rec);
        deps.journal.save_incident(incident);
        if failed && !compensation {
            break;
        }
    }
    failure
}

/// One round of checks: the results.
async fn check_round(
    checks: &[Check],
    watch_ids: &[Option<u64>],
    started: tokio::time::Instant,
    scope: &Scope,
    deps: &RunDeps,
) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let at = format_rfc3339(deps.clock.now_ms());
    for (check, watch) in checks.iter().zip(watch_ids) {
        let (passed, detail) = match check {
            Check::Http {
                url,
                expect_status,
                body_contains,
            } => match url.render(scope) {
                Err(e) => (false, e),
                Ok(url) => {
                    let action = Action::Http {
                        method: "GET".into(),
                        url,
                        headers: Vec::new(),
                        body: None,
                        expect_status: vec![*expect_status],
                    };
                    match perform(deps, &action, CHECK_TIMEOUT).await {
                        Ok(o) => {
                            let needle = match body_contains.as_ref().map(|b| b.render(scope)) {
                                Some(Ok(n)) => Some(n),
                                Some(Err(e)) => {
                                    out.push(result(check, false, deps.redactor.redact(&e), &at));
                                    continue;
                                }
                                None => None,
                            };
                            let body_ok = needle
                                .as_ref()
                                .is_none_or(|n| o.stdout.contains(n.as_str()));
                            (
                                o.success && body_ok,
                                format!(
                                    "status {}{}",
                                    o.status.map_or("?".into(), |s| s.to_string()),
                                    if body_ok {
                                        ""
                                    } else {
                                        ", body lacks the expected text"
                                    }
                                ),
                            )
                        }
                        Err(e) => (false, e.to_string()),
                    }
                }
            },
            Check::Prometheus { url, query, expect } => {
                match (url.render(scope), query.render(scope)) {
                    (Ok(url), Ok(query)) => {
                        prometheus_check(&url, &query, expect, scope, deps).await
                    }
                    (Err(e), _) | (_, Err(e)) => (false, e),
                }
            }
            Check::NoEvent { quiet_for_ms, .. } => {
                let quiet_for = Duration::from_millis(u64::try_from(*quiet_for_ms).unwrap_or(0));
                let last = watch.and_then(|id| deps.watches.last_seen(id));
                let since = last.unwrap_or(started).max(started);
                let quiet = tokio::time::Instant::now().saturating_duration_since(since);
                (
                    quiet >= quiet_for,
                    format!(
                        "{}; quiet for {}ms of {}ms",
                        if last.is_some() {
                            "a matching event was seen"
                        } else {
                            "no matching event"
                        },
                        quiet.as_millis(),
                        quiet_for.as_millis()
                    ),
                )
            }
            Check::Exec {
                command,
                allow_read,
                env,
                expect,
            } => {
                let rendered: Result<Vec<String>, String> =
                    command.iter().map(|t| t.render(scope)).collect();
                let reads: Result<Vec<String>, String> = allow_read
                    .iter()
                    .map(|t| t.render(scope).and_then(absolute))
                    .collect();
                match (rendered, reads) {
                    (Ok(command), Ok(allow_read)) => {
                        let action = Action::Exec {
                            command,
                            allow_read,
                            allow_write: Vec::new(),
                            network: crate::spec::NetworkSpec::None,
                            timeout_ms: u64::try_from(CHECK_TIMEOUT.as_millis()).unwrap_or(30_000),
                            env: env.clone(),
                            user: None,
                            memory_bytes: None,
                            cpu_time_ms: None,
                            max_procs: None,
                        };
                        match perform(deps, &action, CHECK_TIMEOUT).await {
                            Ok(o) => {
                                let s = scope
                                    .clone()
                                    .with("stdout", cel::Value::from(o.stdout.as_str()))
                                    .with("stderr", cel::Value::from(o.stderr.as_str()))
                                    .with(
                                        "exit_code",
                                        cel::Value::Int(i64::from(o.exit_code.unwrap_or(-1))),
                                    );
                                match expect.eval_bool(&s) {
                                    Ok(b) => (b, format!("{} is {b}", expect.source())),
                                    Err(e) => (false, format!("{}: {e}", expect.source())),
                                }
                            }
                            Err(e) => (false, e.to_string()),
                        }
                    }
                    (Err(e), _) | (_, Err(e)) => (false, e),
                }
            }
        };
        // Details quote URLs and answers that may hold interpolated secrets.
        out.push(result(check, passed, deps.redactor.redact(&detail), &at));
    }
    out
}

fn result(check: &Check, passed: bool, detail: String, at: &str) -> CheckResult {
    CheckResult {
        check: check.kind().into(),
        passed,
        detail: truncate(&detail, 1024),
        at: at.to_string(),
    }
}

async fn prometheus_check(
    base: &str,
    query: &str,
    expect: &crate::expr::Expr,
    scope: &Scope,
    deps: &RunDeps,
) -> (bool, String) {
    let url = match reqwest::Url::parse(&format!("{}/api/v1/query", base.trim_end_matches('/'))) {
        Ok(mut u) => {
            u.query_pairs_mut().append_pair("query", query);
            u.to_string()
        }
        Err(e) => return (false, format!("{base}: {e}")),
    };
    let action = Action::Http {
        method: "GET".into(),
        url,
        headers: Vec::new(),
        body: None,
        expect_status: vec![200],
    };
    let o = match perform(deps, &action, CHECK_TIMEOUT).await {
        Ok(o) if o.success => o,
        Ok(o) => return (false, format!("status {:?}", o.status)),
        Err(e) => return (false, e.to_string()),
    };
    let doc: serde_json::Value = match serde_json::from_str(&o.stdout) {
        Ok(d) => d,
        Err(e) => return (false, format!("not a Prometheus response: {e}")),
    };
    // Instant vector: data.result[0].value[1]; scalar: data.result[1].
    let result = doc.pointer("/data/result");
    let text = result
        .and_then(|r| r.pointer("/0/value/1"))
        .or_else(|| result.and_then(|r| r.get(1)))
        .and_then(|v| v.as_str());
    let Some(value) = text.and_then(|t| t.parse::<f64>().ok()) else {
        return (false, "the query returned no sample".into());
    };
    let s = scope.clone().with("value", cel::Value::Float(value));
    match expect.eval_bool(&s) {
        Ok(b) => (b, format!("value {value}: {} is {b}", expect.source())),
        Err(e) => (false, format!("{}: {e}", expect.source())),
    }
}

/// Verification rounds until all checks pass or the deadline; `Some(reason)` on failure.
async fn verify_checks(
    verify: &crate::playbook::Verify,
    incident: &mut Incident,
    scope: &StepScope,
    deps: &RunDeps,
) -> Option<String> {
    let started = tokio::time::Instant::now();
    let deadline = started + verify.deadline;
    let watch_ids: Vec<Option<u64>> = verify
        .checks
        .iter()
        .map(|c| match c {
            Check::NoEvent {
                pattern, condition, ..
            } => Some(deps.watches.add(pattern.clone(), condition.clone())),
            _ => None,
        })
        .collect();
    let scope = scope.scope();
    let outcome = loop {
        let results = check_round(&verify.checks, &watch_ids, started, &scope, deps).await;
        let passed = results.iter().all(|r| r.passed);
        trail(
            deps,
            incident,
            TrailKind::Verification,
            if passed {
                "passed".into()
            } else {
                "not yet".into()
            },
            serde_json::to_value(&results).unwrap_or_default(),
        );
        incident.verification = results;
        deps.journal.save_incident(incident);
        if passed {
            break None;
        }
        let now = tokio::time::Instant::now();
        if now + verify.interval > deadline {
            let failed: Vec<String> = incident
                .verification
                .iter()
                .filter(|r| !r.passed)
                .map(|r| format!("{}: {}", r.check, r.detail))
                .collect();
            break Some(format!(
                "verification failed by the deadline: {}",
                failed.join("; ")
            ));
        }
        tokio::time::sleep(verify.interval).await;
    };
    for id in watch_ids.into_iter().flatten() {
        deps.watches.remove(id);
    }
    outcome
}

/// Sends every escalation; true if at least one went out.
async fn escalate(
    pb: &Playbook,
    incident: &mut Incident,
    reason: &str,
    scope: &StepScope,
    deps: &RunDeps,
) -> bool {
    let scope = scope.scope();
    let now = deps.clock.now_ms();
    let mut any = false;
    let mut doc = serde_json::to_value(&*incident).unwrap_or_default();
    if let Some(o) = doc.as_object_mut() {
        o.insert(
            "reason".into(),
            serde_json::Value::String(reason.to_string()),
        );
    }
    deps.redactor.redact_json(&mut doc);
    for e in &pb.escalate {
        let (what, sent) = match e {
            Escalation::Event { kind } => {
                deps.sink.publish(Event::new(
                    kind,
                    EVENT_SOURCE,
                    Some(&incident.id),
                    now,
                    doc.clone(),
                ));
                (format!("event {kind}"), Ok(()))
            }
            Escalation::Webhook { url, headers } => {
                let body = doc.to_string();
                let sent = post(url, headers, body, &scope, deps).await;
                (String::from("webhook"), sent)
            }
            Escalation::Alertmanager { url, headers } => {
                let mut alert = serde_json::json!([{
                    "labels": {
                        "alertname": "OpsloopRemediationFailed",
                        "playbook": incident.playbook,
                        "key": incident.key,
                        "target": incident.target,
                        "incident_id": incident.id,
                        "severity": "critical",
                    },
                    "annotations": {
                        "summary": format!("opsloop could not remediate {} with playbook {}", incident.target, incident.playbook),
                        "description": reason,
                    },
                    "startsAt": format_rfc3339(now),
                    "generatorURL": format!("opsloop://incidents/{}", incident.id),
                }]);
                deps.redactor.redact_json(&mut alert);
                let sent = post_alertmanager(url, headers, alert.to_string(), &scope, deps).await;
                (String::from("alertmanager"), sent)
            }
        };
        let ok = sent.is_ok();
        any |= ok;
        trail(
            deps,
            incident,
            TrailKind::Escalation,
            format!("{what}: {}", if ok { "sent" } else { "failed" }),
            serde_json::json!({ "error": sent.err().map(|e| deps.redactor.redact(&e)) }),
        );
    }
    any
}

async fn post_alertmanager(
    url: &crate::expr::Template,
    headers: &[(String, HeaderTemplate)],
    body: String,
    scope: &Scope,
    deps: &RunDeps,
) -> Result<(), String> {
    let base = url.render(scope)?;
    let full = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
    send(full, headers, body, scope, deps).await
}

async fn post(
    url: &crate::expr::Template,
    headers: &[(String, HeaderTemplate)],
    body: String,
    scope: &Scope,
    deps: &RunDeps,
) -> Result<(), String> {
    let url = url.render(scope)?;
    send(url, headers, body, scope, deps).await
}

async fn send(
    url: String,
    headers: &[(String, HeaderTemplate)],
    body: String,
    scope: &Scope,
    deps: &RunDeps,
) -> Result<(), String> {
    let mut headers = render_headers(headers, scope, &deps.env)?;
    headers.push(Header {
        name: "Content-Type".into(),
        value: "application/json".into(),
        secret: false,
    });
    let action = Action::Http {
        method: "POST".into(),
        url,
        headers,
        body: Some(body),
        expect_status: Vec::new(),
    };
    match perform(deps, &action, CHECK_TIMEOUT).await {
        Ok(o) if o.success => Ok(()),
        Ok(o) => Err(format!("status {:?}", o.status)),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_run_counts_attempts_backoffs_verify_and_compensation() {
        let yaml = r#"
playbooks:
  - name: slow
    trigger: {type: io.opsloop.log.rule_matched}
    steps:
      - name: one
        exec: {command: ["true"]}
        timeout: 10s
        retries: {attempts: 3, backoff: 1s}
    verify:
      deadline: 2m
      checks:
        - http: {url: "http://127.0.0.1:1/"}
    on_failure:
      steps:
        - name: back
          exec: {command: ["true"]}
          timeout: 5s
"#;
        let set = crate::PlaybookSet::from_config_yaml(yaml, "t.yaml").unwrap();
        let p = &set.playbooks()[0];
        // 3 attempts of 10 s, backoffs 1 s + 2 s, verify 120 s + one 30 s check, 5 s back.
        assert_eq!(longest_run(p), Duration::from_secs(30 + 3 + 150 + 5));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Duration::from_secs(1);
        assert_eq!(backoff(b, 1), Duration::from_secs(1));
        assert_eq!(backoff(b, 2), Duration::from_secs(2));
        assert_eq!(backoff(b, 3), Duration::from_secs(4));
        assert_eq!(backoff(b, 40), MAX_BACKOFF);
    }
}
