//! `opsloop inspect` end to end.

use std::io::Write;

use serde_json::Value;

use crate::{assert_golden, fixture, run, run_with_stdin};

/// The text report without the timing figures, which vary run to run.
fn stable_text(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    text.lines()
        .map(|l| match l.find(" in ") {
            Some(i) if l.starts_with("opsloop inspect:") => format!("{} in <elapsed>", &l[..i]),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn stable_json(stdout: &[u8]) -> String {
    let mut v: Value = serde_json::from_slice(stdout).unwrap();
    if let Some(s) = v.get_mut("summary").and_then(Value::as_object_mut) {
        s.remove("elapsed_seconds");
        s.remove("lines_per_second");
    }
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
}

#[test]
fn golden_text_reports() {
    for name in [
        "java-app.log",
        "syslog.log",
        "access.log",
        "kubelet.log",
        "go-panic.log",
        "postgres.log",
        "containerd-cri.log",
    ] {
        let path = format!("tests/fixtures/{name}");
        let out = run(&["inspect", "--year", "2026", &path]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_golden(&format!("{name}.txt"), &stable_text(&out.stdout));
    }
}

#[test]
fn golden_json_report() {
    let out = run(&[
        "inspect",
        "--year",
        "2026",
        "--output",
        "json",
        "tests/fixtures/java-app.log",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_golden("java-app.log.json", &stable_json(&out.stdout));
}

#[test]
fn golden_assignments() {
    let out = run(&[
        "inspect",
        "--emit",
        "assignments",
        "tests/fixtures/java-app.log",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_golden(
        "java-app.log.assignments.jsonl",
        &String::from_utf8_lossy(&out.stdout),
    );
}

#[test]
fn assignments_have_one_row_per_record_in_order() {
    let out = run(&[
        "inspect",
        "--parser",
        "raw",
        "--emit",
        "assignments",
        "tests/fixtures/syslog.log",
    ]);
    let rows: Vec<Value> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 42);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["line"].as_u64(), Some(i as u64 + 1));
        assert!(r["template_id"].as_str().is_some_and(|s| s.len() == 16));
        assert!(r["template"].as_str().is_some());
    }
}

#[test]
fn exit_codes() {
    // A rule of the chosen severity fired.
    let out = run(&[
        "inspect",
        "--fail-on",
        "critical",
        "tests/fixtures/syslog.log",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&[
        "inspect",
        "--fail-on",
        "critical",
        "tests/fixtures/access.log",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "only an error-level rule fired there"
    );
    // A missing file: reported, the others still inspected, exit 2.
    let out = run(&[
        "inspect",
        "--output",
        "json",
        "tests/fixtures/access.log",
        "no/such/file.log",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["files"][0]["records"], 60);
    assert!(report["files"][1]["error"].is_string());
    // Bad flags.
    assert_eq!(
        run(&["inspect", "--parser", "nope", "x"]).status.code(),
        Some(2)
    );
}

#[test]
fn bad_input_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.log");
    let mut content = b"ok line one\nbad \xff\xfe bytes\n".to_vec();
    content.extend(vec![b'y'; 11 << 20]);
    content.extend_from_slice(b"\n\0\0binary\0\nlast line\n");
    std::fs::write(&path, &content).unwrap();
    let p = path.to_str().unwrap_or("");
    let out = run(&["inspect", "--output", "json", p]);
    assert_eq!(out.status.code(), Some(3), "input problems give exit 3");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["records"], 5, "nothing dropped");
    let counts = &report["problems"]["counts"];
    assert_eq!(counts["invalid_utf8"], 1);
    assert_eq!(counts["line_too_long"], 1);
    assert_eq!(counts["binary"], 1);
    let ex = &report["problems"]["examples"][0];
    assert_eq!(ex["line"], 2);
    assert!(ex["file"].as_str().is_some_and(|f| f.ends_with("bad.log")));
}

#[test]
fn gzip_and_truncated_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read(fixture("syslog.log")).unwrap_or_default();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&text).unwrap();
    let gz = enc.finish().unwrap_or_default();
    let whole = dir.path().join("s.log.gz");
    std::fs::write(&whole, &gz).unwrap();
    let out = run(&["inspect", "--output", "json", whole.to_str().unwrap_or("")]);
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["records"], 42);

    let cut = dir.path().join("cut.log.gz");
    std::fs::write(&cut, &gz[..gz.len() * 2 / 3]).unwrap();
    let out = run(&["inspect", "--output", "json", cut.to_str().unwrap_or("")]);
    assert_eq!(out.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["problems"]["counts"]["truncated_gzip"], 1);
    assert!(
        report["summary"]["records"]
            .as_u64()
            .is_some_and(|n| n > 0 && n < 42)
    );
}

#[test]
fn stdin_and_dash() {
    let input =
        b"level=info msg=\"user logged in\" user=alice\nlevel=error msg=\"db timeout\" took=5s\n";
    for args in [
        vec!["inspect", "--output", "json"],
        vec!["inspect", "--output", "json", "-"],
    ] {
        let out = run_with_stdin(&args, input);
        assert_eq!(out.status.code(), Some(0));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["files"][0]["format"], "logfmt");
        assert_eq!(report["levels"]["error"], 1);
    }
}

#[test]
fn state_file_keeps_ids_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("miner.json");
    let s = state.to_str().unwrap_or("");
    let a = dir.path().join("a.log");
    let b = dir.path().join("b.log");
    std::fs::write(&a, "user alice logged in from 10.0.0.1\n").unwrap();
    std::fs::write(
        &b,
        "user bob logged in from 10.0.0.2\nuser carol logged in from 10.0.0.3\n\
         user dave logged in from 10.0.0.4\n",
    )
    .unwrap();
    let first = run(&[
        "inspect",
        "--emit",
        "assignments",
        "--state",
        s,
        a.to_str().unwrap_or(""),
    ]);
    assert!(state.exists());
    let second = run(&[
        "inspect",
        "--emit",
        "assignments",
        "--state",
        s,
        b.to_str().unwrap_or(""),
    ]);
    let id = |out: &[u8], n: usize| -> String {
        let line = out.split(|&c| c == b'\n').nth(n).unwrap_or_default();
        let v: Value = serde_json::from_slice(line).unwrap_or_default();
        v["template_id"].as_str().unwrap_or_default().to_string()
    };
    let first_id = id(&first.stdout, 0);
    assert!(!first_id.is_empty());
    assert_eq!(
        id(&second.stdout, 2),
        first_id,
        "the template generalised and kept its id"
    );
    std::fs::write(&state, "not json").unwrap();
    let bad = run(&["inspect", "--state", s, a.to_str().unwrap_or("")]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("miner.json"));
}

#[test]
fn user_rules_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        r#"rules:
  - id: slow-checkout
    severity: error
    labels: {team: shop}
    match:
      field: path
      regex: '^/api/checkout'
      condition: 'fields.status >= 500'
"#,
    )
    .unwrap();
    let r = rules.to_str().unwrap_or("");
    let out = run(&[
        "inspect",
        "--no-builtin-rules",
        "--rules",
        r,
        "--output",
        "json",
        "tests/fixtures/access.log",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["rules_loaded"], 1);
    let hit = &report["rule_hits"][0];
    assert_eq!(hit["rule"], "slow-checkout");
    assert_eq!(hit["labels"]["team"], "shop");

    std::fs::write(
        &rules,
        "rules:\n  - id: broken\n    severity: error\n    match: {regex: '(unclosed'}\n",
    )
    .unwrap();
    let out = run(&["inspect", "--rules", r, "tests/fixtures/access.log"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rules.yaml") && err.contains("broken") && err.contains("match.regex"),
        "{err}"
    );
}

#[test]
fn named_regex_parser() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custom.log");
    std::fs::write(&path, "12:00:01|E|payments|charge failed for order 17\n12:00:02|I|payments|charge ok for order 18\n")
        .unwrap();
    let out = run(&[
        "inspect",
        "--output",
        "json",
        "--pattern",
        r"^(?P<clock>[^|]+)\|(?P<level>\w)\|(?P<component>[^|]+)\|(?P<msg>.*)$",
        path.to_str().unwrap_or(""),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["files"][0]["format"], "regex");
    assert_eq!(report["levels"]["error"], 1);
    let bad = run(&[
        "inspect",
        "--pattern",
        "(?P<x>.*)",
        path.to_str().unwrap_or(""),
    ]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn findings_as_cloudevents() {
    let out = run(&["inspect", "--emit", "events", "tests/fixtures/kubelet.log"]);
    assert_eq!(out.status.code(), Some(0));
    let events: Vec<Value> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(events.len(), 12, "6 crash-loop and 6 probe-failure matches");
    for e in &events {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["type"], "io.opsloop.log.rule_matched");
        assert_eq!(e["datacontenttype"], "application/json");
        assert!(e["id"].as_str().is_some_and(|s| s.len() == 36));
        assert!(
            e["time"]
                .as_str()
                .is_some_and(|t| t.starts_with("2026-11-20T10:00:"))
        );
        assert!(e["fingerprint"].as_str().is_some_and(|f| f.len() == 16));
        assert!(e["data"]["line"].as_u64().is_some());
    }
    let crash: Vec<&Value> = events
        .iter()
        .filter(|e| e["subject"] == "k8s-crashloop")
        .collect();
    assert_eq!(crash.len(), 6);
    assert!(
        crash
            .iter()
            .all(|e| e["fingerprint"] == crash[0]["fingerprint"]),
        "one finding, one fingerprint"
    );
    let ids: std::collections::HashSet<&str> =
        events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), events.len());
}
