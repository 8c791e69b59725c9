//! `opsloop config` end to end.

use serde_json::Value;

use crate::run;

#[test]
fn default_prints_a_config_that_checks() {
    let out = run(&["config", "default"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("listen: 127.0.0.1:7878") && text.contains("type: syslog"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("opsloop.yaml");
    std::fs::write(&path, text.as_bytes()).unwrap();
    let out = run(&["config", "check", path.to_str().unwrap_or("")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let json = run(&["config", "default", "--output", "json"]);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["data_dir"], "./opsloop-data");
}

#[test]
fn check_reports_every_problem_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "listen: nope\nsources:\n  - type: syslog\n    name: s\n  - type: file\n    name: s\n    include: [/var/log/x.log]\n    max_line_bytes: 1\n",
    )
    .unwrap();
    let p = path.to_str().unwrap_or("");
    let out = run(&["config", "check", "--output", "json", p]);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let paths: Vec<&str> = v["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "listen",
            "sources[0].udp",
            "sources[1].name",
            "sources[1].max_line_bytes"
        ]
    );
    let text = run(&["config", "check", p]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("bad.yaml: sources[1].max_line_bytes: 1: expected"),
        "{stdout}"
    );
    // A value of the wrong kind is named by its path and line.
    std::fs::write(
        &path,
        "sources:\n  - type: file\n    name: s\n    include: [x]\n    start_at: middle\n",
    )
    .unwrap();
    let out = run(&["config", "check", "--output", "json", p]);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"][0]["path"], "sources[0]");
    let message = v["errors"][0]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("middle") && message.contains("line 2"),
        "{message}"
    );
}

#[test]
fn run_reports_a_bad_config_as_json_with_output_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("opsloop.yaml");
    std::fs::write(&path, "listen: nope\n").unwrap();
    let out = run(&[
        "run",
        "--output",
        "json",
        "--config",
        path.to_str().unwrap_or(""),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let message = doc["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("listen"), "{message}");
}
