//! `opsloop heal check` and `opsloop heal test` on the shipped examples and the fixtures in
//! `tests/fixtures/heal`, and the alert-exec example acted on for real: the engine with the
//! sandboxed runner (the built binary as the sandbox helper).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use opsloop_core::Event;
use opsloop_core::time::SystemClock;
use opsloop_heal::action::SystemRunner;
use opsloop_heal::engine::{Decision, MemorySink};
use opsloop_heal::incident::{IncidentState, MemoryJournal, TrailKind};
use opsloop_heal::run::run_incident;
use opsloop_heal::{HealEngine, PlaybookSet};
use opsloop_sandbox::Helper;

use crate::{fixture, run};

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn check_accepts_the_shipped_examples() {
    let out = run(&[
        "heal",
        "check",
        "examples/alert-exec.yaml",
        "examples/log-oom-restart.yaml",
        "examples/disk-full.yaml",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("examples/alert-exec.yaml:10: disk-full-exec: valid (mode enforce)"),
        "{text}"
    );
    assert!(text.contains("oom-restart: valid (mode approve)"), "{text}");
    assert!(text.contains("3 playbook(s) valid"), "{text}");

    let out = run(&["heal", "check", "examples", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let doc = json(&out);
    assert_eq!(doc["valid"], true);
    assert_eq!(
        doc["playbooks"],
        serde_json::json!(["disk-full-exec", "disk-full-rotate", "oom-restart"])
    );
}

#[test]
fn check_lists_every_problem_with_file_and_line() {
    let invalid = fixture("heal/invalid.yaml");
    let unknown = fixture("heal/unknown-field.yaml");
    let out = run(&[
        "heal",
        "check",
        invalid.to_str().unwrap(),
        unknown.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("invalid.yaml:2: playbooks[0].name: \"Broken_Name\""),
        "{text}"
    );
    assert!(
        text.contains("invalid.yaml:5: playbooks[0].trigger.condition: invalid CEL"),
        "{text}"
    );
    assert!(text.contains("invalid.yaml:7: playbooks[0].steps[0].kubernetes.name: a kubernetes action needs `name`"), "{text}");
    assert!(
        text.contains("unknown-field.yaml:5: steps[0].retry: unknown field `retry`"),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 problem(s)"));

    let out = run(&[
        "heal",
        "check",
        unknown.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["errors"][0]["line"], 5);
    assert_eq!(doc["errors"][0]["path"], "steps[0].retry");

    let out = run(&["heal", "check", "tests/fixtures/heal/missing.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("missing.yaml"));
}

#[test]
fn test_explains_the_alert_example_step_by_step() {
    let events = fixture("heal/diskfull-firing.json");
    let out = crate::opsloop()
        .args([
            "heal",
            "test",
            "examples/alert-exec.yaml",
            events.to_str().unwrap(),
            "--output",
            "json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("OPSLOOP_EXAMPLE_DIR", "/srv/example")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&out);
    let verdict = |i: usize| doc["events"][i]["playbooks"][0].clone();
    let first = verdict(0);
    assert_eq!(first["playbook"], "disk-full-exec");
    assert_eq!(first["outcome"], "triggered");
    assert_eq!(first["mode"], "enforce");
    assert_eq!(first["target"], "db-1:9100");
    let step = &first["steps"][0]["rendered"];
    assert_eq!(step["kind"], "exec");
    assert_eq!(step["allow_write"], serde_json::json!(["/srv/example"]));
    assert_eq!(step["command"][4], "DiskFull");
    assert_eq!(step["command"][5], "/srv/example");
    // The second notification of the group does not act again; the resolved one never acts.
    assert_eq!(verdict(1)["outcome"], "suppressed");
    assert_eq!(verdict(2)["outcome"], "resolved_alert");

    let out = run(&[
        "heal",
        "test",
        "examples/alert-exec.yaml",
        events.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("disk-full-exec: MATCHED: would open an incident (mode enforce"),
        "{text}"
    );
    assert!(text.contains("1. record [exec]"), "{text}");
    assert!(text.contains("resolved alert for key"), "{text}");
}

#[test]
fn test_shows_threshold_approval_and_kubernetes_step_of_the_oom_example() {
    let events = fixture("heal/oom-kill.json");
    let out = run(&[
        "heal",
        "test",
        "examples/log-oom-restart.yaml",
        events.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let doc = json(&out);
    let first = &doc["events"][0]["playbooks"][0];
    assert_eq!(first["outcome"], "threshold_not_reached");
    assert_eq!(first["count"], 1);
    let second = &doc["events"][1]["playbooks"][0];
    assert_eq!(second["outcome"], "triggered");
    assert_eq!(second["mode"], "approve");
    assert_eq!(second["key"], "shop/checkout");
    let step = &second["steps"][0]["rendered"];
    assert_eq!(step["action"], "rollout_restart");
    assert_eq!(step["object_kind"], "Deployment");
    assert_eq!(step["namespace"], "shop");
    assert_eq!(step["name"], "checkout");
}

#[test]
fn test_explains_the_disk_example_and_non_matches() {
    let events = fixture("heal/oom-kill.json");
    let out = crate::opsloop()
        .args([
            "heal",
            "test",
            "examples",
            events.to_str().unwrap(),
            "--output",
            "json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let doc = json(&out);
    let verdicts = doc["events"][0]["playbooks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let rotate = verdicts
        .iter()
        .find(|v| v["playbook"] == "disk-full-rotate")
        .cloned()
        .unwrap_or_default();
    assert_eq!(rotate["outcome"], "type_mismatch");

    let events = fixture("heal/diskfull-firing.json");
    let out = crate::opsloop()
        .args([
            "heal",
            "test",
            "examples/disk-full.yaml",
            events.to_str().unwrap(),
            "--output",
            "json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("OPSLOOP_LOG_DIR", "/var/log/app")
        .output()
        .unwrap();
    let doc = json(&out);
    let first = &doc["events"][0]["playbooks"][0];
    assert_eq!(first["outcome"], "triggered");
    assert_eq!(
        first["steps"][0]["rendered"]["command"],
        serde_json::json!(["df", "-P", "/var/log/app"])
    );
    assert!(
        first["steps"][1]["rendered"]["when"]
            .as_str()
            .unwrap_or_default()
            .contains("> 95")
    );

    // A bad entry is named (event and field) and skipped; the others are still shown, and
    // the exit status says the input had a problem.
    let out = run_with_events_file(
        "[{\"subject\": \"x\"}, {\"type\": \"io.opsloop.alert.firing\", \"data\": {\"labels\": {\"alertname\": \"DiskFull\"}}}]",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("event[0].type: missing"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("disk-full-exec: MATCHED"));
    let out = run_with_events_file("not json");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not JSON"));
}

fn run_with_events_file(content: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.json");
    std::fs::write(&path, content).unwrap();
    run(&[
        "heal",
        "test",
        "examples/alert-exec.yaml",
        path.to_str().unwrap(),
    ])
}

fn alert(firing: bool, id: &str) -> Event {
    let kind = if firing {
        "io.opsloop.alert.firing"
    } else {
        "io.opsloop.alert.resolved"
    };
    let mut e = Event::new(
        kind,
        "/opsloop/alertmanager",
        Some("DiskFull"),
        0,
        serde_json::json!({
            "status": if firing { "firing" } else { "resolved" },
            "labels": { "alertname": "DiskFull", "instance": "db-1:9100" },
        }),
    );
    e.id = id.into();
    e.fingerprint = "b7c1e2a9d4f00001".into();
    e
}

#[test]
fn the_alert_exec_example_acts_once_in_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    // The sandbox runs the command as `nobody`.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let set = PlaybookSet::load(&[
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/alert-exec.yaml")
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let journal = Arc::new(MemoryJournal::default());
    let sink = Arc::new(MemorySink::default());
    let env: BTreeMap<String, String> = [(
        "OPSLOOP_EXAMPLE_DIR".to_string(),
        dir.path().display().to_string(),
    )]
    .into();
    let mut engine = HealEngine::new(
        set,
        Arc::new(SystemClock),
        journal.clone(),
        sink.clone(),
        env,
    );
    let helper = Helper::new(env!("CARGO_BIN_EXE_opsloop"), ["heal", "sandbox-helper"]);
    let runner = Arc::new(SystemRunner::new(helper).unwrap());
    let deps = engine.run_deps(runner);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut finals = Vec::new();
    for event in [alert(true, "e1"), alert(true, "e2"), alert(false, "e3")] {
        for d in engine.handle(&event) {
            if let Decision::Remediate(plan) = d {
                let done = rt.block_on(run_incident(*plan, &deps));
                engine.finish(&done);
                finals.push(done);
            }
        }
    }
    assert_eq!(finals.len(), 1);
    let done = &finals[0];
    let log = std::fs::read_to_string(dir.path().join("remediated.log")).unwrap_or_default();
    assert_eq!(
        done.state,
        IncidentState::Resolved,
        "{done:#?}\nlog: {log:?}"
    );
    assert_eq!(log, "remediated DiskFull\n");
    assert_eq!(done.steps[0].exit_code, Some(0));
    let trail = journal.entries();
    assert!(
        trail
            .iter()
            .any(|e| e.kind == TrailKind::StepFinished && e.detail == "record: succeeded")
    );
    assert!(trail.iter().any(|e| e.kind == TrailKind::Suppressed));
    let types: Vec<String> = sink.events().iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        types,
        [
            "io.opsloop.incident.detected",
            "io.opsloop.incident.remediating",
            "io.opsloop.incident.resolved"
        ]
    );
}
