//! The heal loop across a restart of `opsloop run`: an incident awaiting approval can be
//! approved after it, a run cut short by a crash ends `failed` (not stuck `remediating`),
//! and cooldowns hold across it.

use serde_json::Value;

use crate::run::{http, start_agent, stop_agent, wait_for};
use opsloop_bus::testing::free_port;

fn config(api: u16, data: &std::path::Path, mode: &str, step: &str) -> String {
    format!(
        r#"listen: 127.0.0.1:{api}
data_dir: {}
hooks:
  - name: deploy
    type: com.example.deploy.failed
    subject: body.service
playbooks:
  - name: redeploy
    trigger: {{ type: com.example.deploy.failed }}
    key: event.subject
    mode: {mode}
    guardrails: {{ cooldown: 1h }}
    steps:
{step}
"#,
        data.display()
    )
}

fn incidents(api: u16) -> Vec<Value> {
    let (_, body) = http(api, "GET", "/api/v1/incidents?playbook=redeploy", "", None);
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["incidents"].as_array().cloned())
        .unwrap_or_default()
}

fn ready(api: u16) {
    wait_for("readiness", || {
        (http(api, "GET", "/readyz", "", None).0 == 200).then_some(())
    });
}

fn suppressed_after_restart(api: u16, reason: &str) {
    wait_for("the repeat suppressed", || {
        http(
            api,
            "POST",
            "/api/v1/hooks/deploy",
            r#"{"service": "checkout"}"#,
            None,
        );
        let (_, trail) = http(api, "GET", "/api/v1/audit-log?limit=1000", "", None);
        let trail: Value = serde_json::from_str(&trail).ok()?;
        trail["records"]
            .as_array()?
            .iter()
            .any(|r| r["kind"] == "suppressed" && r["data"]["detail"] == reason)
            .then_some(())
    });
}

#[test]
fn an_approval_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let data = dir.path().join("data");
    let path = dir.path().join("opsloop.yaml");
    let step = "      - name: note\n        event: { type: com.example.noted }";
    std::fs::write(&path, config(api, &data, "approve", step)).unwrap();
    let mut agent = start_agent(&path);
    ready(api);
    http(
        api,
        "POST",
        "/api/v1/hooks/deploy",
        r#"{"service": "checkout"}"#,
        None,
    );
    let id = wait_for("an incident awaiting approval", || {
        let list = incidents(api);
        let first = list.first()?;
        (first["state"] == "awaiting_approval").then(|| first["id"].as_str().map(String::from))?
    });
    stop_agent(&mut agent);

    let mut agent = start_agent(&path);
    ready(api);
    // Still one incident open for the key: a repeat does not open a second one.
    suppressed_after_restart(api, "incident_open");
    let (status, body) = http(
        api,
        "POST",
        &format!("/api/v1/incidents/{id}/approve"),
        "",
        None,
    );
    assert_eq!(status, 202, "{body}");
    wait_for("the approved incident resolved", || {
        let list = incidents(api);
        (list.len() == 1 && list[0]["state"] == "resolved").then_some(())
    });
    stop_agent(&mut agent);
}

#[test]
fn a_run_cut_short_by_a_crash_ends_failed_and_its_cooldown_holds() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let data = dir.path().join("data");
    let path = dir.path().join("opsloop.yaml");
    let step = "      - name: slow\n        exec: { command: [sleep, '60'] }\n        timeout: 2m";
    std::fs::write(&path, config(api, &data, "enforce", step)).unwrap();
    let mut agent = start_agent(&path);
    ready(api);
    http(
        api,
        "POST",
        "/api/v1/hooks/deploy",
        r#"{"service": "checkout"}"#,
        None,
    );
    wait_for("the run under way", || {
        let list = incidents(api);
        (list.first()?["state"] == "remediating").then_some(())
    });
    // A crash, not a clean stop.
    let _ = agent.0.kill();
    let _ = agent.0.wait();

    let mut agent = start_agent(&path);
    ready(api);
    let list = wait_for("the interrupted run ended", || {
        let list = incidents(api);
        (list.first()?["state"] == "failed").then_some(list)
    });
    assert_eq!(list.len(), 1, "{list:?}");
    let detail: Value = {
        let id = list[0]["id"].as_str().unwrap_or_default();
        let (_, body) = http(api, "GET", &format!("/api/v1/incidents/{id}"), "", None);
        serde_json::from_str(&body).unwrap_or_default()
    };
    assert!(detail.to_string().contains("interrupted"), "{detail}");
    // The key cools down: the same failure right after the restart does not run it again.
    suppressed_after_restart(api, "cooldown");
    assert_eq!(incidents(api).len(), 1);
    stop_agent(&mut agent);
}
