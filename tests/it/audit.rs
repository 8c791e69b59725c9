//! `opsloop audit`: the binary on the fixtures of `tests/fixtures/audit` — every check's
//! fixture pair, golden text and SARIF, bad input, stdin, `kind: List`, suppression,
//! config, exit codes.

use std::path::Path;

use serde_json::Value;

use super::{run, run_with_stdin};

const DIR: &str = "tests/fixtures/audit";

/// Compares with `tests/fixtures/audit/golden/NAME`; `UPDATE_GOLDEN=1` rewrites it.
fn assert_audit_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(DIR)
        .join("golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
    assert!(
        expected == actual,
        "{} differs (UPDATE_GOLDEN=1 to accept):\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn json(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(output)))
}

fn check_ids(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_check_fires_on_its_fixture_and_not_on_the_fixed_twin() {
    let listed = run(&["audit", "--list-checks", "--output", "json"]);
    assert_eq!(listed.status.code(), Some(0));
    let checks = json(&listed)["checks"].as_array().unwrap().clone();
    assert!(checks.len() >= 50, "{} checks", checks.len());
    for check in checks {
        let id = check["id"].as_str().unwrap();
        let bad = format!("{DIR}/checks/{id}.yaml");
        let output = run(&["audit", &bad, "--output", "json", "--fail-on", "never"]);
        assert_eq!(output.status.code(), Some(0), "{id}");
        let report = json(&output);
        let hit = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == id)
            .unwrap_or_else(|| panic!("{bad} does not trigger {id}"));
        assert!(hit["line"].as_u64().unwrap() > 0, "{id}");
        assert!(!hit["why"].as_str().unwrap().is_empty());
        let fixed = format!("{DIR}/checks/{id}.fixed.yaml");
        let output = run(&["audit", &fixed, "--output", "json", "--fail-on", "never"]);
        assert!(
            !check_ids(&json(&output)).iter().any(|c| c == id),
            "{fixed} triggers {id}"
        );
    }
}

#[test]
fn text_report_is_grouped_by_file_and_object() {
    let output = run(&["audit", &format!("{DIR}/app")]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "errors fail the run by default"
    );
    assert_audit_golden("app.txt", &stdout(&output));
}

/// The SARIF log with the tool version replaced, pretty-printed.
fn normalised_sarif(output: &std::process::Output) -> String {
    let mut log = json(output);
    log["runs"][0]["tool"]["driver"]["version"] = Value::from("VERSION");
    serde_json::to_string_pretty(&log).unwrap() + "\n"
}

#[test]
fn sarif_follows_the_contract() {
    let output = run(&["audit", &format!("{DIR}/app"), "--output", "sarif"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "SARIF is printed on failure too"
    );
    let log = json(&output);
    assert_eq!(log["version"], "2.1.0");
    let sarif_run = &log["runs"][0];
    assert_eq!(sarif_run["artifacts"].as_array().unwrap().len(), 3);
    for result in sarif_run["results"].as_array().unwrap() {
        let id = result["ruleId"].as_str().unwrap();
        assert!(!id.contains("checkout"), "object names stay out of ruleId");
        let location = &result["locations"][0]["physicalLocation"];
        assert!(
            location["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
                .starts_with("tests/fixtures/audit/app/")
        );
        assert!(location["region"]["startLine"].as_u64().unwrap() >= 1);
    }
    let gomaxprocs = sarif_run["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "gomaxprocs-above-cpu-limit")
        .unwrap();
    // The `value:` line of the GOMAXPROCS env var.
    assert_eq!(
        gomaxprocs["locations"][0]["physicalLocation"]["region"]["startLine"],
        26
    );
    assert_audit_golden("app.sarif.json", &normalised_sarif(&output));
}

#[test]
fn unparsable_files_are_reported_with_their_line_and_the_rest_audited() {
    let output = run(&["audit", &format!("{DIR}/broken"), "--output", "sarif"]);
    // partly-broken.yaml's second document (hostPID) is still audited: an error finding,
    // but unparsable files make the run incomplete, and that exit code wins.
    assert_eq!(output.status.code(), Some(3));
    let log = json(&output);
    let sarif_run = &log["runs"][0];
    assert_eq!(sarif_run["artifacts"].as_array().unwrap().len(), 5);
    let notifications = sarif_run["invocations"][0]["toolExecutionNotifications"]
        .as_array()
        .unwrap();
    let line_of = |file: &str| {
        notifications
            .iter()
            .find(|n| {
                n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                    .as_str()
                    .unwrap()
                    .ends_with(file)
            })
            .map(|n| {
                n["locations"][0]["physicalLocation"]["region"]["startLine"]
                    .as_u64()
                    .unwrap()
            })
            .unwrap_or_else(|| panic!("no notification for {file}"))
    };
    assert_eq!(line_of("duplicate-key.yaml"), 10, "at the repeated key");
    assert_eq!(line_of("tabs.yaml"), 6);
    assert_eq!(line_of("not-utf8.yaml"), 6);
    assert_eq!(line_of("truncated.yaml"), 6);
    assert_eq!(line_of("partly-broken.yaml"), 6);
    assert!(
        sarif_run["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["ruleId"] == "host-pid")
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("tests/fixtures/audit/broken/tabs.yaml:6:"),
        "{stderr}"
    );
    assert_audit_golden("broken.sarif.json", &normalised_sarif(&output));

    let only_broken = run(&[
        "audit",
        &format!("{DIR}/broken/tabs.yaml"),
        &format!("{DIR}/broken/not-utf8.yaml"),
    ]);
    assert_eq!(
        only_broken.status.code(),
        Some(3),
        "input problems, nothing fired"
    );
    assert!(stdout(&only_broken).contains("tabs.yaml:6:2: parse error"));
}

#[test]
fn stdin_and_lists_are_read() {
    let helm = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(DIR)
            .join("inputs/helm-output.yaml"),
    )
    .unwrap();
    let output = run_with_stdin(
        &["audit", "-", "--output", "json", "--fail-on", "never"],
        &helm,
    );
    assert_eq!(output.status.code(), Some(0));
    let report = json(&output);
    let ids = check_ids(&report);
    assert!(ids.contains(&"gogc-off-without-gomemlimit".to_string()));
    assert!(
        ids.contains(&"single-replica-under-pdb".to_string()),
        "PDB resolved to the Deployment"
    );
    assert!(!ids.contains(&"pdb-selects-nothing".to_string()));
    assert_eq!(report["findings"][0]["file"], "-");

    let output = run(&[
        "audit",
        &format!("{DIR}/inputs/list.json"),
        "--output",
        "json",
        "--fail-on",
        "never",
    ]);
    let report = json(&output);
    assert!(check_ids(&report).contains(&"host-ipc".to_string()));
    let host_ipc = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "host-ipc")
        .unwrap();
    assert_eq!(host_ipc["line"], 10);
    assert_eq!(report["summary"]["unknown_kinds"]["Widget"], 1);
}

#[test]
fn annotations_suppress_with_a_reason() {
    let output = run(&[
        "audit",
        &format!("{DIR}/inputs/suppressed.yaml"),
        "--output",
        "json",
    ]);
    let report = json(&output);
    let ids = check_ids(&report);
    assert!(!ids.contains(&"host-network".to_string()));
    assert!(!ids.contains(&"host-pid".to_string()));
    let suppressed = report["suppressed"].as_array().unwrap();
    assert_eq!(suppressed.len(), 2);
    assert_eq!(suppressed[0]["reason"], "node agent: reads host metrics");
    assert_eq!(output.status.code(), Some(0), "only warnings left");
}

#[test]
fn config_and_flags_disable_checks() {
    let target = format!("{DIR}/checks/image-tag-latest.yaml");
    let config = format!("{DIR}/inputs/audit-config.yaml");
    let output = run(&["audit", &target, "--config", &config, "--output", "json"]);
    assert!(!check_ids(&json(&output)).contains(&"image-tag-latest".to_string()));
    let output = run(&[
        "audit",
        &target,
        "--disable",
        "image-tag-latest",
        "--output",
        "json",
    ]);
    assert!(!check_ids(&json(&output)).contains(&"image-tag-latest".to_string()));

    let bad = run(&[
        "audit",
        &target,
        "--config",
        &format!("{DIR}/inputs/bad-config.yaml"),
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cpu-limits-missing"));
    let bad_sarif = run(&[
        "audit",
        &target,
        "--config",
        &format!("{DIR}/inputs/bad-config.yaml"),
        "--output",
        "sarif",
    ]);
    assert_eq!(bad_sarif.status.code(), Some(2));
    let log = json(&bad_sarif);
    assert_eq!(
        log["runs"][0]["invocations"][0]["executionSuccessful"],
        false
    );
}

#[test]
fn exit_codes_follow_fail_on() {
    let target = format!("{DIR}/checks/image-tag-latest.yaml");
    assert_eq!(run(&["audit", &target]).status.code(), Some(0), "a warning");
    assert_eq!(
        run(&["audit", &target, "--fail-on", "warning"])
            .status
            .code(),
        Some(1)
    );
    let clean = format!("{DIR}/clean.yaml");
    assert_eq!(
        run(&["audit", &clean, "--fail-on", "info"]).status.code(),
        Some(0)
    );
    let missing = run(&["audit", &clean, "no-such-file.yaml", "--output", "json"]);
    assert_eq!(missing.status.code(), Some(2));
    let report = json(&missing);
    assert_eq!(report["files"].as_array().unwrap().len(), 2);
}

#[test]
fn list_checks_text_names_every_check() {
    let output = run(&["audit", "--list-checks"]);
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    for id in [
        "gomaxprocs-above-cpu-limit",
        "grace-period-shorter-than-prestop",
        "hpa-utilization-without-requests",
        "rbac-exec-into-pods",
    ] {
        assert!(text.contains(id), "{id}");
    }
    assert!(text.contains("why: "));
}
