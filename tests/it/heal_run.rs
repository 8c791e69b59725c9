//! `opsloop run` with the shipped `examples/alert-exec.yaml`: Alertmanager notifications
//! posted to the webhook receiver reach the self-healing loop through the bus, the sandboxed
//! step runs once for two identical firing notifications of one group and not at all on the
//! resolved one, the incident is listed, and the trail verifies after the agent stopped.

use std::path::Path;
use std::process::{Command, Stdio};

use opsloop_bus::testing::free_port;
use serde_json::Value;

use crate::run::{Agent, http, stop_agent, wait_for};
use crate::{fixture, run};

const TOKEN: &str = "heal-run-test-token";

fn remediated_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("remediated.log"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn incidents(api: u16) -> Option<Vec<Value>> {
    let (status, body) = http(api, "GET", "/api/v1/incidents", "", Some(TOKEN));
    if status != 200 {
        return None;
    }
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["incidents"].as_array().cloned())
}

/// The incident's state once it is no longer in progress.
fn settled_state(api: u16) -> Option<String> {
    let list = incidents(api)?;
    let state = list.first()?["state"].as_str()?.to_string();
    matches!(state.as_str(), "resolved" | "failed" | "escalated").then_some(state)
}

fn event_ids(api: u16, kind: &str) -> Vec<String> {
    let (status, body) = http(
        api,
        "GET",
        &format!("/api/v1/events?type={kind}&limit=1000"),
        "",
        Some(TOKEN),
    );
    if status != 200 {
        return Vec::new();
    }
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| {
            v["events"].as_array().map(|events| {
                events
                    .iter()
                    .filter_map(|e| e["id"].as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// The audit trail's records (the first thousand).
fn trail(api: u16) -> Vec<Value> {
    let (status, body) = http(api, "GET", "/api/v1/audit-log?limit=1000", "", Some(TOKEN));
    if status != 200 {
        return Vec::new();
    }
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["records"].as_array().cloned())
        .unwrap_or_default()
}

fn notify(api: u16, name: &str) {
    let body = std::fs::read_to_string(fixture(&format!("heal_run/{name}"))).unwrap();
    let (status, answer) = http(api, "POST", "/api/v1/alertmanager", &body, Some(TOKEN));
    assert!((200..300).contains(&status), "{name}: {status} {answer}");
}

/// Starts `opsloop run` on a shipped example (`examples/NAME`) with the API on `api`, its data
/// in `data`, `env` set and the API token in `OPSLOOP_API_TOKEN`; returns once it is ready.
pub(crate) fn start_example(
    name: &str,
    api: u16,
    data: &Path,
    env: &[(&str, &std::ffi::OsStr)],
    token: &str,
) -> Agent {
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let child = Command::new(env!("CARGO_BIN_EXE_opsloop"))
        .args(["run", "--config"])
        .arg(&example)
        .args(["--listen", &format!("127.0.0.1:{api}"), "--data-dir"])
        .arg(data)
        .envs(env.iter().copied())
        .env("OPSLOOP_API_TOKEN", token)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent = Agent(child);
    wait_for("agent readiness", || {
        (http(api, "GET", "/readyz", "", None).0 == 200).then_some(())
    });
    agent
}

#[test]
fn the_alert_exec_example_acts_once_per_group_and_never_on_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // The sandboxed command runs as `nobody`: it must be able to reach and write there.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let api = free_port();
    let data = dir.path().join("data");
    let mut agent = start_example(
        "alert-exec.yaml",
        api,
        &data,
        &[("OPSLOOP_EXAMPLE_DIR", out.as_os_str())],
        TOKEN,
    );

    // Without the token the receiver refuses (and nothing reaches the bus).
    let body = std::fs::read_to_string(fixture("heal_run/firing.json")).unwrap();
    let (status, _) = http(api, "POST", "/api/v1/alertmanager", &body, None);
    assert_eq!(status, 401);

    // Two identical notifications of one group: one incident, one action.
    notify(api, "firing.json");
    notify(api, "firing.json");
    wait_for("both notifications on the bus", || {
        (event_ids(api, "io.opsloop.alert.firing").len() == 2).then_some(())
    });
    wait_for("the remediation", || {
        (remediated_lines(&out) >= 1).then_some(())
    });
    let state = wait_for("the incident to settle", || settled_state(api));
    assert_eq!(state, "resolved");
    let list = incidents(api).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["playbook"], "disk-full-exec", "{list:?}");
    assert_eq!(
        std::fs::read_to_string(out.join("remediated.log")).unwrap(),
        "remediated DiskFull\n"
    );

    // Resolved: never acts, and the trail says why (the decision about that very event).
    notify(api, "resolved.json");
    let resolved = wait_for("the resolved notification on the bus", || {
        event_ids(api, "io.opsloop.alert.resolved")
            .into_iter()
            .next()
    });
    let decision = wait_for("the loop's decision on the resolved notification", || {
        trail(api)
            .into_iter()
            .find(|r| r["data"]["event_id"].as_str() == Some(resolved.as_str()))
    });
    assert_eq!(decision["kind"], "suppressed", "{decision}");
    assert_eq!(decision["data"]["detail"], "resolved", "{decision}");
    assert_eq!(remediated_lines(&out), 1, "acted on the resolved alert");
    assert_eq!(incidents(api).map(|l| l.len()), Some(1));
    stop_agent(&mut agent);
    assert_eq!(
        remediated_lines(&out),
        1,
        "acted after the resolved notification"
    );

    let verify = run(&["audit-log", "verify", "--data-dir", data.to_str().unwrap()]);
    assert!(
        verify.status.success(),
        "audit-log verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[test]
fn the_alert_exec_example_is_a_valid_agent_config() {
    let out = run(&["config", "check", "examples/alert-exec.yaml"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `api.tokens`: each named token from its environment variable or file, with its role;
/// the legacy `OPSLOOP_API_TOKEN` still acts as admin; no secret reaches the logs.
#[test]
fn named_tokens_come_from_env_and_files_with_their_roles() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let viewer_file = dir.path().join("viewer.token");
    std::fs::write(&viewer_file, "viewer-secret-in-file\n").unwrap();
    let config = dir.path().join("opsloop.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{api}\ndata_dir: {}\napi:\n  tokens:\n    - name: pager\n      role: operator\n      token_env: HEAL_RUN_OPERATOR_TOKEN\n    - name: dashboards\n      role: viewer\n      token_file: {}\n",
            dir.path().join("data").display(),
            viewer_file.display()
        ),
    )
    .unwrap();
    let logs = dir.path().join("agent.log");
    let child = Command::new(env!("CARGO_BIN_EXE_opsloop"))
        .args(["run", "--config"])
        .arg(&config)
        .env("HEAL_RUN_OPERATOR_TOKEN", "operator-secret-in-env")
        .env("OPSLOOP_API_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&logs).unwrap())
        .spawn()
        .unwrap();
    let mut agent = Agent(child);
    wait_for("agent readiness", || {
        (http(api, "GET", "/readyz", "", None).0 == 200).then_some(())
    });
    let body = std::fs::read_to_string(fixture("heal_run/firing.json")).unwrap();
    let post = |token: Option<&str>| http(api, "POST", "/api/v1/alertmanager", &body, token).0;
    let get = |token: Option<&str>| http(api, "GET", "/api/v1/incidents", "", token).0;

    assert_eq!(post(None), 401);
    assert_eq!(post(Some("wrong")), 401);
    assert_eq!(post(Some("viewer-secret-in-file")), 403);
    assert!((200..300).contains(&post(Some("operator-secret-in-env"))));
    assert!(
        (200..300).contains(&post(Some(TOKEN))),
        "legacy token is admin"
    );
    assert_eq!(get(Some("viewer-secret-in-file")), 200);
    stop_agent(&mut agent);

    let logs = std::fs::read_to_string(&logs).unwrap();
    for secret in ["viewer-secret-in-file", "operator-secret-in-env", TOKEN] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }

    // A named token whose variable is unset stops the start, naming the field.
    let out = Command::new(env!("CARGO_BIN_EXE_opsloop"))
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("HEAL_RUN_OPERATOR_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("api.tokens[0].token_env"), "{stderr}");
}

/// The shipped disk-full example in `opsloop run`: a DiskFull notification runs `df` in the
/// sandbox on the allowed directory, the captured output decides whether the compress step
/// runs (only above 95 % use), and the exec verification reads `df` again.
#[test]
fn the_disk_full_example_measures_then_acts_only_above_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(logs.join("app.log"), "fresh, not older than a day\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let api = free_port();
    let data = dir.path().join("data");
    let mut agent = start_example(
        "disk-full.yaml",
        api,
        &data,
        &[("OPSLOOP_LOG_DIR", logs.as_os_str())],
        TOKEN,
    );
    notify(api, "firing.json");
    // Settled, or (on a disk over the limit) verifying with a first failed check: the
    // verification then goes on for its two minutes before escalating.
    let incident = wait_for("the incident to settle or fail a check", || {
        let first = incidents(api)?.into_iter().next()?;
        let id = first["id"].as_str()?.to_string();
        let (_, body) = http(
            api,
            "GET",
            &format!("/api/v1/incidents/{id}"),
            "",
            Some(TOKEN),
        );
        let incident: Value = serde_json::from_str(&body).ok()?;
        let state = incident["state"].as_str()?;
        let failed_check = incident["verification"]
            .as_array()
            .is_some_and(|v| v.iter().any(|c| c["passed"] == false));
        (matches!(state, "resolved" | "failed" | "escalated") || failed_check).then_some(incident)
    });
    assert_eq!(incident["playbook"], "disk-full-rotate", "{incident}");
    let state = incident["state"].as_str().unwrap().to_string();
    let steps = incident["steps"].as_array().unwrap();
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no step {name}: {incident}"))
    };
    // `df -P` ran in the sandbox on the allowed directory, and its use decided the rest.
    let measure = step("measure");
    assert_eq!(measure["state"], "succeeded", "{incident}");
    let out = measure["output"].as_str().unwrap();
    let used: u32 = out
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|c| c.trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("df output: {out}"));
    if used <= 95 {
        assert_eq!(step("compress")["state"], "skipped", "{incident}");
        assert_eq!(state, "resolved", "{incident}");
    } else {
        // A full disk here: the step ran, but the fresh log is not old enough to compress,
        // so the verification fails (and the loop escalates at its deadline).
        assert_eq!(step("compress")["state"], "succeeded", "{incident}");
        assert!(
            matches!(state.as_str(), "verifying" | "escalated"),
            "{incident}"
        );
    }
    assert!(logs.join("app.log").exists(), "the fresh log was touched");
    stop_agent(&mut agent);
    let verify = run(&["audit-log", "verify", "--data-dir", data.to_str().unwrap()]);
    assert!(verify.status.success());
}
