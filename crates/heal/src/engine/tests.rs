//! Engine tests: matching, thresholds over New Year and long uptimes (manual clock),
//! guardrails, approvals, resolved alerts, storms, and runs under paused tokio time.

use std::time::Duration;

use opsloop_core::time::{ManualClock, civil_to_millis};

use super::*;
use crate::action::{Action, ActionError, ActionOutput, RecordingRunner};
use crate::incident::{MemoryJournal, StepState};
use crate::run::run_incident;

struct Rig {
    engine: HealEngine,
    clock: Arc<ManualClock>,
    journal: Arc<MemoryJournal>,
    sink: Arc<MemorySink>,
}

fn rig_at(yaml: &str, env: &[(&str, &str)], now: i64) -> Rig {
    let set = PlaybookSet::from_yaml(yaml, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
    let clock = Arc::new(ManualClock::new(now));
    let journal = Arc::new(MemoryJournal::default());
    let sink = Arc::new(MemorySink::default());
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let engine = HealEngine::new(set, clock.clone(), journal.clone(), sink.clone(), env);
    Rig {
        engine,
        clock,
        journal,
        sink,
    }
}

fn rig(yaml: &str) -> Rig {
    rig_at(yaml, &[], 1_700_000_000_000)
}

fn alert(name: &str, instance: &str, firing: bool) -> Event {
    let kind = if firing { ALERT_FIRING } else { ALERT_RESOLVED };
    Event::new(
        kind,
        "/test",
        Some(name),
        0,
        serde_json::json!({
            "status": if firing { "firing" } else { "resolved" },
            "labels": { "alertname": name, "instance": instance },
        }),
    )
    .with_fingerprint_key(instance)
}

fn playbook(mode: &str, extra: &str) -> String {
    format!(
        r#"
playbooks:
  - name: disk-full
    trigger:
      type: io.opsloop.alert.firing
      condition: 'event.data.labels.alertname == "DiskFull"'
    key: 'event.data.labels.instance'
    mode: {mode}
{extra}
    steps:
      - name: rotate
        exec: {{ command: [rotate, '${{{{ event.data.labels.instance }}}}'] }}
"#
    )
}

fn remediations(d: &[Decision]) -> usize {
    d.iter()
        .filter(|d| matches!(d, Decision::Remediate(_)))
        .count()
}

fn suppressed(d: &[Decision]) -> Vec<SuppressReason> {
    d.iter()
        .filter_map(|d| match d {
            Decision::Suppressed { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

fn plans(d: Vec<Decision>) -> Vec<RunPlan> {
    d.into_iter()
        .filter_map(|d| match d {
            Decision::Remediate(p) => Some(*p),
            _ => None,
        })
        .collect()
}

#[test]
fn only_matching_type_and_condition_act() {
    let mut r = rig(&playbook("enforce", ""));
    assert!(r.engine.handle(&alert("HighCpu", "a", true)).is_empty());
    let other = Event::new(
        "io.opsloop.log.rule_matched",
        "/t",
        None,
        0,
        serde_json::json!({}),
    );
    assert!(r.engine.handle(&other).is_empty());
    let d = r.engine.handle(&alert("DiskFull", "a", true));
    assert_eq!(remediations(&d), 1);
    let plan = plans(d).remove(0);
    assert_eq!(plan.incident.key, "a");
    assert_eq!(plan.incident.target, "a");
    // `remediating` is the run's to record, once it may act (after the scale-out lock).
    assert_eq!(plan.incident.state, IncidentState::Detected);
    // Not-matched events leave no trace; the match does.
    let kinds: Vec<TrailKind> = r.journal.entries().iter().map(|e| e.kind).collect();
    assert_eq!(kinds[0], TrailKind::Matched);
    let types: Vec<String> = r.sink.events().iter().map(|e| e.kind.clone()).collect();
    assert_eq!(types, ["io.opsloop.incident.detected"]);
}

#[test]
fn threshold_windows_span_new_year_and_long_uptime() {
    let new_year_eve = civil_to_millis(2026, 12, 31, 23, 58, 0, 0).unwrap_or_default();
    let mut r = rig_at(
        &playbook("enforce", "    threshold: { count: 3, within: 5m }"),
        &[],
        new_year_eve,
    );
    let e = alert("DiskFull", "a", true);
    assert!(matches!(
        r.engine.handle(&e)[..],
        [Decision::ThresholdPending {
            count: 1,
            needed: 3,
            ..
        }]
    ));
    r.clock.advance(Duration::from_secs(90));
    assert!(matches!(
        r.engine.handle(&e)[..],
        [Decision::ThresholdPending { count: 2, .. }]
    ));
    // 2027-01-01 00:01:30: the third within five minutes, across the year boundary.
    r.clock.advance(Duration::from_secs(120));
    assert_eq!(remediations(&r.engine.handle(&e)), 1);

    // After a long uptime, old matches have left the window: one match is not enough.
    let mut r = rig_at(
        &playbook("enforce", "    threshold: { count: 2, within: 5m }"),
        &[],
        new_year_eve,
    );
    r.engine.handle(&e);
    r.clock.advance(Duration::from_secs(400 * 86_400));
    assert!(matches!(
        r.engine.handle(&e)[..],
        [Decision::ThresholdPending { count: 1, .. }]
    ));
    // A clock stepped backwards drops matches "from the future" rather than counting them.
    r.clock.advance(Duration::from_secs(10));
    r.clock.set(new_year_eve);
    assert!(matches!(
        r.engine.handle(&e)[..],
        [Decision::ThresholdPending { count: 1, .. }]
    ));
}

#[test]
fn guardrails_cooldown_and_open_incident() {
    let mut r = rig(&playbook("enforce", "    guardrails: { cooldown: 10m }"));
    let e = alert("DiskFull", "a", true);
    let plan = plans(r.engine.handle(&e)).remove(0);
    assert_eq!(
        suppressed(&r.engine.handle(&e)),
        [SuppressReason::IncidentOpen]
    );
    r.engine.finish(&plan.incident);
    assert_eq!(r.engine.running(), 0);
    r.clock.advance(Duration::from_secs(9 * 60));
    assert_eq!(suppressed(&r.engine.handle(&e)), [SuppressReason::Cooldown]);
    // Another key is not cooled down.
    assert_eq!(
        remediations(&r.engine.handle(&alert("DiskFull", "b", true))),
        1
    );
    r.clock.advance(Duration::from_secs(61));
    assert_eq!(remediations(&r.engine.handle(&e)), 1);
}

#[test]
fn guardrails_max_runs_per_hour_per_target() {
    let mut r = rig(&playbook(
        "enforce",
        "    target: '\"host-1\"'\n    guardrails: { cooldown: 1s, max_runs_per_hour: 2 }",
    ));
    let mut runs = 0;
    for i in 0..5 {
        let d = r.engine.handle(&alert("DiskFull", &format!("k{i}"), true));
        for p in plans(d.clone()) {
            runs += 1;
            r.engine.finish(&p.incident);
        }
        if i >= 2 {
            assert_eq!(suppressed(&d), [SuppressReason::MaxRunsPerHour]);
        }
        r.clock.advance(Duration::from_secs(60));
    }
    assert_eq!(runs, 2);
    r.clock.advance(Duration::from_secs(3600));
    assert_eq!(
        remediations(&r.engine.handle(&alert("DiskFull", "k9", true))),
        1
    );
}

#[test]
fn guardrails_blast_radius_counts_distinct_targets() {
    let mut r = rig(&playbook(
        "enforce",
        "    guardrails: { blast_radius: { max_targets: 2, within: 1h } }",
    ));
    for host in ["a", "b"] {
        for p in plans(r.engine.handle(&alert("DiskFull", host, true))) {
            r.engine.finish(&p.incident);
        }
    }
    assert_eq!(
        suppressed(&r.engine.handle(&alert("DiskFull", "c", true))),
        [SuppressReason::BlastRadius]
    );
    // A target already acted on stays allowed (its cooldown permitting).
    r.clock.advance(Duration::from_secs(6 * 60));
    assert_eq!(
        remediations(&r.engine.handle(&alert("DiskFull", "a", true))),
        1
    );
    r.clock.advance(Duration::from_secs(3600));
    assert_eq!(
        remediations(&r.engine.handle(&alert("DiskFull", "c", true))),
        1
    );
}

#[test]
fn guardrails_concurrency_is_global() {
    let yaml = r#"
playbooks:
  - name: one
    trigger: { type: a }
    key: 'event.subject'
    mode: enforce
    guardrails: { concurrency: 2 }
    steps: [ { event: { type: x } } ]
  - name: two
    trigger: { type: b }
    key: 'event.subject'
    mode: enforce
    guardrails: { concurrency: 2 }
    steps: [ { event: { type: x } } ]
"#;
    let mut r = rig(yaml);
    let ev = |t: &str, s: &str| Event::new(t, "/t", Some(s), 0, serde_json::json!({}));
    let p1 = plans(r.engine.handle(&ev("a", "1"))).remove(0);
    assert_eq!(remediations(&r.engine.handle(&ev("b", "2"))), 1);
    assert_eq!(
        suppressed(&r.engine.handle(&ev("a", "3"))),
        [SuppressReason::Concurrency]
    );
    r.engine.finish(&p1.incident);
    assert_eq!(remediations(&r.engine.handle(&ev("a", "3"))), 1);
}

#[test]
fn resolved_alerts_never_act_and_cancel_pending_work() {
    let mut r = rig(&playbook(
        "enforce",
        "    threshold: { count: 2, within: 5m }",
    ));
    r.engine.handle(&alert("DiskFull", "a", true));
    let d = r.engine.handle(&alert("DiskFull", "a", false));
    assert!(
        matches!(&d[..], [Decision::Cancelled { incident: None, .. }]),
        "{d:?}"
    );
    // The window started over: one more firing is not enough.
    assert!(matches!(
        r.engine.handle(&alert("DiskFull", "a", true))[..],
        [Decision::ThresholdPending { count: 1, .. }]
    ));
    // A firing-typed event whose status says resolved (Alertmanager payload) never acts.
    let mut r = rig(&playbook("enforce", ""));
    let mut e = alert("DiskFull", "a", true);
    e.data["status"] = serde_json::json!("resolved");
    let (d, v) = r.engine.handle_explained(&e);
    assert_eq!(remediations(&d), 0);
    assert!(
        matches!(v[0].verdict, Verdict::ResolvedAlert { .. }),
        "{v:?}"
    );

    // Awaiting approval, then resolved: cancelled, and a late approval does nothing.
    let mut r = rig(&playbook("approve", ""));
    let d = r.engine.handle(&alert("DiskFull", "a", true));
    let Some(Decision::AwaitingApproval(inc)) = d.into_iter().next() else {
        panic!("expected an approval");
    };
    let d = r.engine.handle(&alert("DiskFull", "a", false));
    assert!(matches!(
        &d[..],
        [Decision::Cancelled {
            incident: Some(_),
            ..
        }]
    ));
    let d = r.engine.handle(&approval(true, &inc.id, "alice"));
    assert!(matches!(&d[..], [Decision::ApprovalIgnored { .. }]));
    assert_eq!(
        r.journal.incident(&inc.id).map(|i| i.state),
        Some(IncidentState::Cancelled)
    );
}

fn approval(approve: bool, id: &str, who: &str) -> Event {
    Event::new(
        if approve { APPROVE_TYPE } else { REJECT_TYPE },
        "/api",
        Some(id),
        0,
        serde_json::json!({ "incident_id": id, "approver": who }),
    )
}

#[test]
fn approve_and_reject_flow() {
    let mut r = rig(&playbook("approve", ""));
    let d = r.engine.handle(&alert("DiskFull", "a", true));
    let Some(Decision::AwaitingApproval(inc)) = d.into_iter().next() else {
        panic!("expected an approval");
    };
    assert_eq!(inc.state, IncidentState::AwaitingApproval);
    assert_eq!(inc.steps[0].state, StepState::Planned);
    assert_eq!(inc.steps[0].rendered["command"][1], "a");
    // Repeats wait for the same incident.
    assert_eq!(
        suppressed(&r.engine.handle(&alert("DiskFull", "a", true))),
        [SuppressReason::IncidentOpen]
    );
    assert!(matches!(
        r.engine.handle(&approval(true, "nope", "alice"))[..],
        [Decision::ApprovalIgnored { .. }]
    ));
    assert!(matches!(
        r.engine.handle(&approval(true, &inc.id, ""))[..],
        [Decision::ApprovalIgnored { .. }]
    ));
    let plan = plans(r.engine.handle(&approval(true, &inc.id, "alice"))).remove(0);
    assert_eq!(plan.incident.approver.as_deref(), Some("alice"));
    assert_eq!(plan.incident.id, inc.id);
    let states: Vec<String> = r.sink.events().iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        states,
        [
            "io.opsloop.incident.detected",
            "io.opsloop.incident.awaiting_approval",
            "io.opsloop.incident.approved",
        ]
    );
    assert!(
        r.journal
            .entries()
            .iter()
            .any(|e| e.kind == TrailKind::Approved && e.detail == "alice")
    );

    // Rejection.
    let d = r.engine.handle(&alert("DiskFull", "b", true));
    let Some(Decision::AwaitingApproval(inc)) = d.into_iter().next() else {
        panic!("expected an approval");
    };
    let d = r.engine.handle(&approval(false, &inc.id, "bob"));
    let Some(Decision::Rejected(rej)) = d.into_iter().next() else {
        panic!("expected a rejection");
    };
    assert_eq!(rej.state, IncidentState::Rejected);
    assert_eq!(rej.approver.as_deref(), Some("bob"));
    assert_eq!(r.engine.awaiting_approval(), 0);
    // Not cooled down by a rejection: a new firing asks again.
    assert!(matches!(
        r.engine.handle(&alert("DiskFull", "b", true))[..],
        [Decision::AwaitingApproval(_)]
    ));
}

#[test]
fn approvals_expire() {
    let mut r = rig(&playbook("approve", ""));
    r.engine.handle(&alert("DiskFull", "a", true));
    r.clock.advance(Duration::from_secs(25 * 3600));
    let d = r.engine.handle(&alert("HighCpu", "z", true));
    assert!(matches!(
        &d[..],
        [Decision::Cancelled {
            incident: Some(_),
            ..
        }]
    ));
    assert_eq!(r.engine.awaiting_approval(), 0);
}

#[test]
fn an_approval_after_the_window_is_ignored_before_the_sweep() {
    let mut r = rig(&playbook("approve", ""));
    let d = r.engine.handle(&alert("DiskFull", "a", true));
    let Some(Decision::AwaitingApproval(inc)) = d.into_iter().next() else {
        panic!("expected an approval");
    };
    // The sweep runs just before the window ends; the approval comes just after it.
    r.clock.advance(Duration::from_secs(24 * 3600 - 30));
    r.engine.handle(&alert("HighCpu", "z", true));
    r.clock.advance(Duration::from_secs(40));
    let d = r.engine.handle(&approval(true, &inc.id, "alice"));
    assert!(
        matches!(&d[..], [Decision::ApprovalIgnored { reason, .. }] if reason.contains("expired")),
        "{d:?}"
    );
}

#[test]
fn dry_run_records_interpolated_steps_and_runs_nothing() {
    let mut r = rig(&playbook("dry-run", ""));
    let d = r.engine.handle(&alert("DiskFull", "db-7", true));
    let Some(Decision::DryRun(inc)) = d.into_iter().next() else {
        panic!("expected a dry run");
    };
    assert_eq!(inc.state, IncidentState::DryRun);
    assert_eq!(
        inc.steps[0].rendered["command"],
        serde_json::json!(["rotate", "db-7"])
    );
    assert_eq!(r.engine.running(), 0);
    let saved = r
        .journal
        .incident(&inc.id)
        .unwrap_or_else(|| panic!("not saved"));
    assert_eq!(saved.state, IncidentState::DryRun);
    // A dry run counts as a run for the cooldown: it shows what enforce would do.
    assert_eq!(
        suppressed(&r.engine.handle(&alert("DiskFull", "db-7", true))),
        [SuppressReason::Cooldown]
    );
}

#[tokio::test(start_paused = true)]
async fn a_storm_of_identical_events_acts_at_most_the_configured_number_of_times() {
    let mut r = rig(&playbook(
        "enforce",
        "    guardrails: { cooldown: 1s, max_runs_per_hour: 3 }",
    ));
    let runner = Arc::new(RecordingRunner::default());
    let deps = r.engine.run_deps(runner.clone());
    let e = alert("DiskFull", "a", true);
    let mut runs = 0;
    for _ in 0..10_000 {
        for plan in plans(r.engine.handle(&e)) {
            runs += 1;
            let done = run_incident(plan, &deps).await;
            assert_eq!(done.state, IncidentState::Resolved);
            r.engine.finish(&done);
        }
        r.clock.advance(Duration::from_millis(100));
    }
    assert_eq!(runs, 3);
    assert_eq!(runner.count(), 3);
    // The trail holds the suppressions without one row per event.
    let suppressions = r
        .journal
        .entries()
        .iter()
        .filter(|e| e.kind == TrailKind::Suppressed)
        .count();
    assert!((1..100).contains(&suppressions), "{suppressions}");
}

#[test]
fn keys_are_bounded() {
    let mut r = rig(&playbook(
        "enforce",
        "    threshold: { count: 2, within: 1m }",
    ));
    r.engine = std::mem::replace(
        &mut r.engine,
        HealEngine::new(
            PlaybookSet::empty(),
            r.clock.clone(),
            r.journal.clone(),
            r.sink.clone(),
            BTreeMap::new(),
        ),
    )
    .with_limits(EngineLimits {
        max_keys_per_playbook: 1000,
        ..EngineLimits::default()
    });
    for i in 0..20_000 {
        r.engine
            .handle(&alert("DiskFull", &format!("host-{i}"), true));
    }
    assert!(
        r.engine.tracked_keys() <= 1000,
        "{}",
        r.engine.tracked_keys()
    );
    r.clock.advance(Duration::from_secs(3600));
    r.engine.handle(&alert("HighCpu", "x", true));
    assert_eq!(r.engine.tracked_keys(), 0);
}

#[test]
fn a_flood_of_new_keys_does_not_undo_a_cooldown() {
    let mut r = rig(&playbook(
        "enforce",
        "    guardrails: { cooldown: 30m, blast_radius: { max_targets: 100000, within: 1h } }",
    ));
    r.engine = std::mem::replace(
        &mut r.engine,
        HealEngine::new(
            PlaybookSet::empty(),
            r.clock.clone(),
            r.journal.clone(),
            r.sink.clone(),
            BTreeMap::new(),
        ),
    )
    .with_limits(EngineLimits {
        max_keys_per_playbook: 100,
        ..EngineLimits::default()
    });
    for p in plans(r.engine.handle(&alert("DiskFull", "a", true))) {
        r.engine.finish(&p.incident);
    }
    // Thousands of other keys within the cooldown (each one runs and finishes too).
    for i in 0..5_000 {
        for p in plans(
            r.engine
                .handle(&alert("DiskFull", &format!("flood-{i}"), true)),
        ) {
            r.engine.finish(&p.incident);
        }
    }
    r.clock.advance(Duration::from_secs(60));
    assert!(
        remediations(&r.engine.handle(&alert("DiskFull", "a", true))) == 0,
        "the cooldown of a was forgotten"
    );
    // Memory stays bounded: past twice the limit, new keys are not acted on.
    assert!(
        r.engine.tracked_keys() <= 200,
        "{}",
        r.engine.tracked_keys()
    );
    assert_eq!(
        suppressed(&r.engine.handle(&alert("DiskFull", "late", true))),
        [SuppressReason::KeysFull]
    );
}

#[test]
fn a_clock_stepped_back_keeps_the_guardrails() {
    let mut r = rig(&playbook(
        "enforce",
        "    guardrails: { cooldown: 30m, blast_radius: { max_targets: 1, within: 1h } }",
    ));
    for p in plans(r.engine.handle(&alert("DiskFull", "a", true))) {
        r.engine.finish(&p.incident);
    }
    // NTP steps the wall clock back a day: the run now looks a day in the future.
    r.clock.set(1_700_000_000_000 - 86_400_000);
    assert_eq!(
        suppressed(&r.engine.handle(&alert("DiskFull", "a", true))),
        [SuppressReason::Cooldown]
    );
    assert_eq!(
        suppressed(&r.engine.handle(&alert("DiskFull", "b", true))),
        [SuppressReason::BlastRadius]
    );
    // The guardrails count from the stepped-back time on, and end.
    r.clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(
        remediations(&r.engine.handle(&alert("DiskFull", "a", true))),
        1
    );
}

fn failing_verify_playbook() -> String {
    r#"
playbooks:
  - name: web-restart
    trigger: { type: io.opsloop.alert.firing }
    key: 'event.data.labels.instance'
    mode: enforce
    steps:
      - name: restart
        http:
          method: POST
          url: 'http://svc.local/restart/${{ event.data.labels.instance }}'
          headers: { Authorization: { secret_env: HOOK_TOKEN } }
    verify:
      deadline: 30s
      interval: 10s
      checks:
        - http: { url: 'http://svc.local/health', expect_status: 200, body_contains: ok }
    on_failure:
      steps:
        - name: undo
          http: { method: POST, url: 'http://svc.local/undo' }
      escalate:
        - webhook: { url: 'http://pager.local/hook', headers: { X-Token: { secret_env: HOOK_TOKEN } } }
        - event: { type: io.opsloop.heal.escalated }
"#
    .into()
}

#[tokio::test(start_paused = true)]
async fn failed_verification_compensates_then_escalates_all_recorded() {
    let mut r = rig_at(
        &failing_verify_playbook(),
        &[("HOOK_TOKEN", "tok-very-secret-123")],
        1_700_000_000_000,
    );
    let runner = Arc::new(RecordingRunner::new(|action, _| {
        let Action::Http { url, .. } = action else {
            return Err(ActionError::Other("unexpected".into()));
        };
        let health = url.ends_with("/health");
        Ok(ActionOutput {
            success: true,
            status: Some(if health { 503 } else { 200 }),
            // A server echoing the secret back: it must not reach the record.
            stdout: if health {
                "down".into()
            } else {
                "echo tok-very-secret-123".into()
            },
            ..ActionOutput::default()
        })
    }));
    let deps = r.engine.run_deps(runner.clone());
    let plan = plans(r.engine.handle(&alert("Down", "web-1", true))).remove(0);
    let start = tokio::time::Instant::now();
    let done = run_incident(plan, &deps).await;
    r.engine.finish(&done);
    assert_eq!(done.state, IncidentState::Escalated);
    // 30 s deadline, 10 s interval: checks at 0, 10, 20 and 30 s.
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    let urls: Vec<String> = runner
        .actions()
        .iter()
        .filter_map(|a| match a {
            Action::Http { url, .. } => Some(url.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        urls,
        [
            "http://svc.local/restart/web-1",
            "http://svc.local/health",
            "http://svc.local/health",
            "http://svc.local/health",
            "http://svc.local/health",
            "http://svc.local/undo",
            "http://pager.local/hook",
        ]
    );
    // The secret did go to the servers that need it.
    let Action::Http { headers, .. } = &runner.actions()[0] else {
        panic!("not http");
    };
    assert_eq!(headers[0].value, "tok-very-secret-123");
    let kinds: Vec<TrailKind> = r.journal.entries().iter().map(|e| e.kind).collect();
    let pos = |k: TrailKind| kinds.iter().position(|x| *x == k).unwrap_or(usize::MAX);
    assert!(pos(TrailKind::Verification) < pos(TrailKind::Escalation));
    let undo = r
        .journal
        .entries()
        .iter()
        .position(|e| e.detail.starts_with("undo"))
        .unwrap_or(usize::MAX);
    assert!(undo < pos(TrailKind::Escalation));
    let states: Vec<String> = r.sink.events().iter().map(|e| e.kind.clone()).collect();
    assert!(states.contains(&"io.opsloop.heal.escalated".to_string()));
    assert_eq!(
        states.last().map(String::as_str),
        Some("io.opsloop.incident.escalated")
    );
    let saved = r
        .journal
        .incident(&done.id)
        .unwrap_or_else(|| panic!("not saved"));
    assert!(
        saved
            .steps
            .iter()
            .any(|s| s.compensation && s.name == "undo")
    );
    assert!(!saved.verification.is_empty());
    assert!(
        saved
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("verification failed"))
    );

    // The secret appears nowhere in what was recorded or published.
    let all = format!(
        "{}{}{}",
        serde_json::to_string(&r.journal.entries()).unwrap_or_default(),
        serde_json::to_string(&r.journal.incidents()).unwrap_or_default(),
        serde_json::to_string(&r.sink.events()).unwrap_or_default(),
    );
    assert!(!all.contains("tok-very-secret-123"));
    assert!(all.contains("[REDACTED]"));
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially_on_tokio_time() {
    let yaml = r#"
name: flaky
trigger: { type: t }
mode: enforce
steps:
  - name: poke
    capture: poke
    retries: { attempts: 4, backoff: 2s }
    timeout: 5s
    exec: { command: [poke] }
  - name: after
    when: 'steps.poke.exit_code == 0 && steps.poke.stdout.startsWith("ok")'
    event: { type: io.opsloop.heal.custom, data: { out: '${{ steps.poke.stdout }}' } }
"#;
    let mut r = rig(yaml);
    let runner = Arc::new(RecordingRunner::new(|action, n| match action {
        Action::Exec { .. } if n < 2 => Ok(ActionOutput {
            success: false,
            exit_code: Some(1),
            stderr: "busy".into(),
            ..ActionOutput::default()
        }),
        Action::Exec { .. } => Ok(ActionOutput {
            success: true,
            exit_code: Some(0),
            stdout: "ok done".into(),
            ..ActionOutput::default()
        }),
        Action::Event { event } => Ok(ActionOutput {
            success: true,
            emitted: Some((**event).clone()),
            ..ActionOutput::default()
        }),
        _ => Err(ActionError::Unsupported("x")),
    }));
    let deps = r.engine.run_deps(runner.clone());
    let ev = Event::new("t", "/t", Some("s"), 0, serde_json::json!({}));
    let plan = plans(r.engine.handle(&ev)).remove(0);
    let start = tokio::time::Instant::now();
    let done = run_incident(plan, &deps).await;
    assert_eq!(done.state, IncidentState::Resolved, "{done:?}");
    let at: Vec<Duration> = runner.instants().iter().map(|t| *t - start).collect();
    // Attempts at 0, 2 s, 2+4 s; then the event step right away.
    assert_eq!(
        at,
        [
            Duration::ZERO,
            Duration::from_secs(2),
            Duration::from_secs(6),
            Duration::from_secs(6)
        ]
    );
    assert_eq!(done.steps[0].attempts, 3);
    assert_eq!(done.steps[0].exit_code, Some(0));
    assert_eq!(done.steps[1].state, StepState::Succeeded);
    let custom = r
        .sink
        .events()
        .into_iter()
        .find(|e| e.kind == "io.opsloop.heal.custom")
        .unwrap_or_else(|| panic!("no custom event"));
    assert_eq!(custom.data["out"], "ok done");
}

#[tokio::test(start_paused = true)]
async fn a_step_that_hangs_times_out_and_the_when_false_step_is_skipped() {
    let yaml = r#"
name: slow
trigger: { type: t }
mode: enforce
steps:
  - name: skip-me
    when: 'false'
    exec: { command: [nope] }
  - name: hang
    timeout: 3s
    exec: { command: [sleep, '100'] }
"#;
    let mut r = rig(yaml);
    struct Hang;
    impl crate::action::ActionRunner for Hang {
        fn run<'a>(
            &'a self,
            _action: &'a Action,
        ) -> crate::action::BoxFuture<'a, Result<ActionOutput, ActionError>> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(ActionOutput::default())
            })
        }
    }
    let deps = r.engine.run_deps(Arc::new(Hang));
    let ev = Event::new("t", "/t", Some("s"), 0, serde_json::json!({}));
    let plan = plans(r.engine.handle(&ev)).remove(0);
    let done = run_incident(plan, &deps).await;
    assert_eq!(done.state, IncidentState::Failed);
    assert_eq!(done.steps[0].state, StepState::Skipped);
    assert_eq!(done.steps[1].state, StepState::Failed);
    assert!(
        done.steps[1]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("timed out"))
    );
}

#[tokio::test(start_paused = true)]
async fn no_event_check_waits_for_quiet() {
    let yaml = r#"
name: quiet
trigger: { type: io.opsloop.alert.firing }
key: 'event.data.labels.instance'
mode: enforce
steps: [ { event: { type: io.opsloop.heal.custom } } ]
verify:
  deadline: 2m
  interval: 10s
  checks:
    - no_event: { type: io.opsloop.alert.firing, condition: 'event.data.labels.instance == "a"', for: 30s }
"#;
    let mut r = rig(yaml);
    let deps = r.engine.run_deps(Arc::new(RecordingRunner::default()));
    let plan = plans(r.engine.handle(&alert("X", "a", true))).remove(0);
    let start = tokio::time::Instant::now();
    let task = tokio::spawn(async move { run_incident(plan, &deps).await });
    // The alert repeats at 15 s: the quiet period starts over.
    tokio::time::sleep(Duration::from_secs(15)).await;
    r.engine.handle(&alert("X", "a", true));
    let done = task.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.state, IncidentState::Resolved);
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(45) && elapsed <= Duration::from_secs(50),
        "{elapsed:?}"
    );
}

#[test]
fn explain_says_why_each_playbook_did_not_act() {
    let yaml = r#"
playbooks:
  - name: disk
    trigger: { type: io.opsloop.alert.firing, condition: 'event.data.labels.alertname == "DiskFull"' }
    steps: [ { event: { type: x } } ]
  - name: logs
    trigger: { type: 'io.opsloop.log.*' }
    steps: [ { event: { type: x } } ]
  - name: three
    trigger: { type: io.opsloop.alert.firing }
    threshold: { count: 3 }
    steps: [ { event: { type: x } } ]
  - name: broken-key
    trigger: { type: io.opsloop.alert.firing }
    key: 'event.data.nope'
    steps: [ { event: { type: x } } ]
"#;
    let mut r = rig(yaml);
    let (_, v) = r.engine.handle_explained(&alert("HighCpu", "a", true));
    let by = |n: &str| {
        v.iter()
            .find(|x| x.playbook == n)
            .map(|x| x.verdict.clone())
            .unwrap_or_else(|| panic!("no verdict for {n}: {v:?}"))
    };
    assert!(matches!(by("disk"), Verdict::ConditionFalse { .. }));
    assert!(matches!(by("logs"), Verdict::TypeMismatch { .. }));
    assert!(matches!(
        by("three"),
        Verdict::ThresholdNotReached {
            count: 1,
            needed: 3,
            ..
        }
    ));
    assert!(matches!(by("broken-key"), Verdict::EvaluationError { .. }));
    let (_, v) = r.engine.handle_explained(&alert("DiskFull", "a", true));
    assert!(
        v.iter()
            .any(|x| x.playbook == "disk" && matches!(x.verdict, Verdict::Triggered { .. }))
    );
}

#[test]
fn reload_keeps_state_by_name_and_cancels_approvals_of_removed_playbooks() {
    let mut r = rig(&playbook("enforce", ""));
    let plan = plans(r.engine.handle(&alert("DiskFull", "a", true))).remove(0);
    r.engine.finish(&plan.incident);
    let same = PlaybookSet::from_yaml(&playbook("enforce", ""), "t.yaml")
        .unwrap_or_else(|e| panic!("{e}"));
    r.engine.replace_playbooks(same);
    assert_eq!(
        suppressed(&r.engine.handle(&alert("DiskFull", "a", true))),
        [SuppressReason::Cooldown]
    );

    let mut r = rig(&playbook("approve", ""));
    let Some(Decision::AwaitingApproval(inc)) = r
        .engine
        .handle(&alert("DiskFull", "a", true))
        .into_iter()
        .next()
    else {
        panic!("expected an approval");
    };
    r.engine.replace_playbooks(PlaybookSet::empty());
    assert_eq!(r.engine.awaiting_approval(), 0);
    assert_eq!(
        r.journal.incident(&inc.id).map(|i| i.state),
        Some(IncidentState::Cancelled)
    );
    assert!(matches!(
        r.engine.handle(&approval(true, &inc.id, "alice"))[..],
        [Decision::ApprovalIgnored { .. }]
    ));
}

#[test]
fn secret_files_and_secret_named_variables_are_redacted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("token");
    std::fs::write(&file, "file-secret-xyz\n").unwrap_or_else(|e| panic!("{e}"));
    let yaml = format!(
        r#"
name: s
trigger: {{ type: t }}
mode: dry-run
steps:
  - http:
      url: 'http://x/${{{{ env.DB_PASSWORD }}}}'
      headers: {{ A: {{ secret_file: '{}' }} }}
      body: 'plain ${{{{ env.PLAIN }}}}'
"#,
        file.display()
    );
    let mut r = rig_at(
        &yaml,
        &[("DB_PASSWORD", "pw-very-secret"), ("PLAIN", "visible")],
        0,
    );
    let ev = Event::new("t", "/t", Some("s"), 0, serde_json::json!({}));
    let Some(Decision::DryRun(inc)) = r.engine.handle(&ev).into_iter().next() else {
        panic!("expected a dry run");
    };
    let text = serde_json::to_string(&inc).unwrap_or_default();
    assert!(!text.contains("pw-very-secret"), "{text}");
    assert!(!text.contains("file-secret-xyz"), "{text}");
    assert!(text.contains("plain visible"), "{text}");
    assert_eq!(inc.steps[0].rendered["headers"][0]["value"], "[REDACTED]");
}

fn awaiting(d: Vec<Decision>) -> Incident {
    match d.into_iter().next() {
        Some(Decision::AwaitingApproval(inc)) => *inc,
        other => panic!("expected an approval, got {other:?}"),
    }
}

#[test]
fn approvals_are_held_to_the_blast_radius_and_runs_per_hour_as_of_the_approval() {
    // Two targets may each wait for approval, but only one may be acted on per window.
    let mut r = rig(&playbook(
        "approve",
        "    guardrails: { blast_radius: { max_targets: 1, within: 1h }, concurrency: 5 }",
    ));
    let a = awaiting(r.engine.handle(&alert("DiskFull", "a", true)));
    let b = awaiting(r.engine.handle(&alert("DiskFull", "b", true)));
    let plan = plans(r.engine.handle(&approval(true, &a.id, "alice"))).remove(0);
    assert_eq!(plan.incident.target, "a");
    assert_eq!(
        suppressed(&r.engine.handle(&approval(true, &b.id, "alice"))),
        [SuppressReason::BlastRadius]
    );
    // Left waiting, not lost: once the blast-radius window has passed, it acts.
    assert_eq!(r.engine.awaiting_approval(), 1);
    r.engine.finish(&plan.incident);
    r.clock.advance(Duration::from_secs(3_601));
    let plan = plans(r.engine.handle(&approval(true, &b.id, "alice"))).remove(0);
    assert_eq!(plan.incident.target, "b");
    assert_eq!(r.engine.awaiting_approval(), 0);

    // Runs per hour on one target: a run that happened after the approval was asked counts.
    let mut r = rig(&playbook(
        "approve",
        "    target: '\"host-1\"'\n    guardrails: { cooldown: 1s, max_runs_per_hour: 1, concurrency: 5 }",
    ));
    let a = awaiting(r.engine.handle(&alert("DiskFull", "a", true)));
    let b = awaiting(r.engine.handle(&alert("DiskFull", "b", true)));
    let plan = plans(r.engine.handle(&approval(true, &a.id, "alice"))).remove(0);
    r.engine.finish(&plan.incident);
    assert_eq!(
        suppressed(&r.engine.handle(&approval(true, &b.id, "alice"))),
        [SuppressReason::MaxRunsPerHour]
    );
    // A rejection is never held back by a guardrail.
    assert!(matches!(
        r.engine.handle(&approval(false, &b.id, "bob"))[..],
        [Decision::Rejected(_)]
    ));
}

#[test]
fn an_approval_runs_the_playbook_the_approver_saw() {
    let mut r = rig(&playbook("approve", ""));
    let inc = awaiting(r.engine.handle(&alert("DiskFull", "a", true)));
    assert_eq!(inc.steps[0].rendered["command"][0], "rotate");
    // A reload changes the steps while the incident waits.
    let changed = playbook("approve", "").replace("command: [rotate,", "command: [wipe,");
    r.engine.replace_playbooks(
        PlaybookSet::from_yaml(&changed, "t.yaml").unwrap_or_else(|e| panic!("{e}")),
    );
    let plan = plans(r.engine.handle(&approval(true, &inc.id, "alice"))).remove(0);
    let step = format!("{:?}", plan.playbook.steps[0]);
    assert!(step.contains("rotate") && !step.contains("wipe"), "{step}");
    // New incidents get the new version.
    r.engine.finish(&plan.incident);
    r.clock.advance(Duration::from_secs(3_600));
    let inc = awaiting(r.engine.handle(&alert("DiskFull", "b", true)));
    assert_eq!(inc.steps[0].rendered["command"][0], "wipe");
}

#[test]
fn a_restart_takes_back_cooldowns_approvals_and_interrupted_runs() {
    let yaml = playbook(
        "enforce",
        "    guardrails: { cooldown: 10m, concurrency: 5 }",
    );
    let mut first = rig(&yaml);
    // The previous run: a on `a` finished, one on `b` was under way when it stopped.
    let done = plans(first.engine.handle(&alert("DiskFull", "a", true))).remove(0);
    let mut done = done.incident;
    done.transition(IncidentState::Resolved, first.clock.now_ms());
    let mut cut = plans(first.engine.handle(&alert("DiskFull", "b", true)))
        .remove(0)
        .incident;
    cut.transition(IncidentState::Remediating, first.clock.now_ms());
    // And, from an approve-mode version of it, one waiting with its trigger, one whose
    // trigger is gone, and one of a playbook that no longer exists.
    let mut approve = rig(&playbook("approve", ""));
    let trigger_c = alert("DiskFull", "c", true);
    let waiting = awaiting(approve.engine.handle(&trigger_c));
    let mut lost = awaiting(approve.engine.handle(&alert("DiskFull", "d", true)));
    // A record without its trigger (written before incidents kept it).
    assert!(lost.trigger.is_some());
    lost.trigger = None;
    // One whose trigger is not in the store (under scale-out it came through another agent)
    // but kept in the incident record.
    let kept = awaiting(approve.engine.handle(&alert("DiskFull", "e", true)));
    let mut orphan = waiting.clone();
    orphan.id = "orphan".into();
    orphan.playbook = "gone".into();

    let mut r = rig_at(&yaml, &[], first.clock.now_ms() + 60_000);
    assert_eq!(r.engine.memory_ms(), 3_600_000);
    let mut lookups = Vec::new();
    let restored = r.engine.restore(
        vec![
            done,
            cut.clone(),
            waiting.clone(),
            lost.clone(),
            kept.clone(),
            orphan,
        ],
        &mut |id: &str| {
            lookups.push(id.to_string());
            (id == trigger_c.id).then(|| trigger_c.clone())
        },
    );
    assert_eq!(
        restored,
        Restored {
            runs: 1,
            awaiting: 2,
            interrupted: 1,
            cancelled: 2
        }
    );
    // Cooldowns hold across the restart, for the finished and the interrupted run.
    for key in ["a", "b"] {
        assert_eq!(
            suppressed(&r.engine.handle(&alert("DiskFull", key, true))),
            [SuppressReason::Cooldown],
            "{key}"
        );
    }
    // The interrupted run ended failed, saying why; the lost approval and the orphan ended
    // cancelled; each transition is recorded.
    let state_of = |id: &str| r.journal.incident(id).map(|i| (i.state, i.reason));
    let (state, reason) = state_of(&cut.id).unwrap_or_else(|| panic!("not recorded"));
    assert_eq!(state, IncidentState::Failed);
    assert!(reason.is_some_and(|r| r.contains("interrupted")));
    assert_eq!(
        state_of(&lost.id).map(|s| s.0),
        Some(IncidentState::Cancelled)
    );
    assert_eq!(
        state_of("orphan").map(|s| s.0),
        Some(IncidentState::Cancelled)
    );
    // The waiting incidents can be approved after the restart and run their steps.
    assert_eq!(r.engine.awaiting_approval(), 2);
    let plan = plans(r.engine.handle(&approval(true, &kept.id, "alice"))).remove(0);
    assert_eq!(plan.trigger.subject.as_deref(), Some("DiskFull"));
    assert_eq!(plan.trigger.data["labels"]["instance"], "e");
    assert!(
        plan.incident.trigger.is_none(),
        "a running incident does not carry it"
    );
    let plan = plans(r.engine.handle(&approval(true, &waiting.id, "alice"))).remove(0);
    assert_eq!(plan.incident.id, waiting.id);
    assert_eq!(plan.trigger.id, trigger_c.id);
    // A new alert for the waiting key does not open a second incident meanwhile.
    assert_eq!(
        suppressed(&r.engine.handle(&alert("DiskFull", "c", true))),
        [SuppressReason::IncidentOpen]
    );
}

#[test]
fn a_restart_after_the_approval_window_cancels_the_wait() {
    let mut before = rig(&playbook("approve", ""));
    let trigger = alert("DiskFull", "a", true);
    let waiting = awaiting(before.engine.handle(&trigger));
    let mut r = rig_at(
        &playbook("approve", ""),
        &[],
        before.clock.now_ms() + 25 * 3_600_000,
    );
    let restored = r
        .engine
        .restore(vec![waiting.clone()], &mut |_| Some(trigger.clone()));
    assert_eq!(restored.cancelled, 1);
    assert_eq!(r.engine.awaiting_approval(), 0);
    assert_eq!(
        r.journal.incident(&waiting.id).map(|i| i.state),
        Some(IncidentState::Cancelled)
    );
}

#[test]
fn a_trickle_below_the_threshold_is_recorded_once_per_interval() {
    let mut r = rig(&playbook(
        "enforce",
        "    threshold: { count: 100, within: 1h }",
    ));
    for _ in 0..50 {
        r.clock.advance(Duration::from_millis(100));
        r.engine.handle(&alert("DiskFull", "a", true));
    }
    let pending = |r: &Rig| {
        r.journal
            .entries()
            .iter()
            .filter(|e| e.kind == TrailKind::ThresholdPending)
            .count()
    };
    assert_eq!(pending(&r), 1);
    // A minute later the next match is recorded again, saying how many were not.
    r.clock.advance(Duration::from_secs(60));
    r.engine.handle(&alert("DiskFull", "a", true));
    assert_eq!(pending(&r), 2);
    let last = r.journal.entries().last().cloned();
    assert_eq!(
        last.map(|e| e.data["matches_since_last_record"].clone()),
        Some(serde_json::json!(49))
    );
}

#[test]
fn an_approval_expires_on_the_timer_without_events() {
    let mut r = rig(&playbook("approve", ""));
    let inc = awaiting(r.engine.handle(&alert("DiskFull", "a", true)));
    r.clock.advance(Duration::from_secs(24 * 3_600));
    let d = r.engine.tick();
    assert!(matches!(d[..], [Decision::Cancelled { .. }]), "{d:?}");
    assert_eq!(
        r.journal.incident(&inc.id).map(|i| i.state),
        Some(IncidentState::Cancelled)
    );
}
