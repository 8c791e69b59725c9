use super::*;
use std::sync::{Arc, Mutex};

use crate::rules::{BUILTIN_RULES, parse_rule_file};

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn builtin() -> RuleSet {
    let file = parse_rule_file("builtin", BUILTIN_RULES).unwrap();
    RuleSet::compile(&[("builtin".into(), file)]).unwrap()
}

fn run(content: &[u8], options: InspectOptions) -> (Report, Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    std::fs::write(&path, content).unwrap();
    let sink = Shared::default();
    let mut inspector = Inspector::new(options, builtin());
    inspector.emit_assignments(Box::new(sink.clone()));
    inspector.inspect_path(path.to_str().unwrap_or(""), &mut |_| {});
    let (report, _, err) = inspector.finish();
    assert!(err.is_none());
    let out = sink.0.lock().map(|v| v.clone()).unwrap_or_default();
    let rows = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    (report, rows)
}

#[test]
fn java_stack_traces_join_their_first_line() {
    let log = b"2026-01-02 03:04:05,000 INFO  [main] Service started on port 8080
2026-01-02 03:04:06,000 ERROR [main] Request failed
java.lang.IllegalStateException: boom
\tat com.example.Foo.bar(Foo.java:12)
\tat com.example.Foo.main(Foo.java:5)
Caused by: java.io.IOException: connection refused
\t... 2 more
2026-01-02 03:04:07,000 INFO  [main] Service started on port 8081
";
    let (report, rows) = run(log, InspectOptions::default());
    assert_eq!(report.files[0].format, Format::Plain);
    assert_eq!(report.summary.records, 3);
    // Rules see the joined lines: `Caused by: ... connection refused` is on line 6.
    let hit = report
        .rule_hits
        .iter()
        .find(|h| h.rule == "connection-refused");
    assert_eq!(hit.map(|h| h.examples[0].line), Some(2));
    assert_eq!(report.summary.lines, 8);
    let lines: Vec<u64> = rows
        .iter()
        .map(|r| r["line"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(lines, [1, 2, 8]);
    assert_eq!(rows[0]["template_id"], rows[2]["template_id"]);
    assert_eq!(rows[0]["template"], "[main] Service started on port <*>");
    assert_eq!(report.levels.get("error"), Some(&1));
    assert_eq!(report.problems.counts.len(), 0);
}

#[test]
fn mixed_and_broken_input_is_counted_not_dropped() {
    let mut log = Vec::new();
    for _ in 0..3 {
        log.extend_from_slice(b"{\"msg\":\"user login\",\"level\":\"info\"}\n");
    }
    log.extend_from_slice(b"{\"msg\":\"user login\",\"level\":\"info\"}\n");
    log.extend_from_slice(b"{\"msg\":\"user login\",\"level\":\"info\"}\n");
    log.extend_from_slice(b"plain text in a json file\n");
    log.extend_from_slice(b"{\"msg\":\"bad \xff byte\",\"level\":\"warn\"}\n");
    log.extend_from_slice(b"\0\0\0binary\0\n");
    log.extend_from_slice(&vec![b'x'; 3 << 20]);
    log.extend_from_slice(b"\n{\"msg\":\"last\"}\n");
    let (report, rows) = run(&log, InspectOptions::default());
    assert_eq!(report.files[0].format, Format::Json);
    assert_eq!(rows.len(), 10, "every line is a record");
    let c = &report.problems.counts;
    assert_eq!(c.get("parse_error"), Some(&3), "{c:?}");
    assert_eq!(c.get("invalid_utf8"), Some(&1));
    assert_eq!(c.get("binary"), Some(&1));
    assert_eq!(c.get("line_too_long"), Some(&1));
    assert!(
        report
            .problems
            .examples
            .iter()
            .all(|p| p.file.ends_with("app.log") && p.line > 0)
    );
}

#[test]
fn raw_lines_are_never_joined() {
    let log = b"first line\n  indented line\n\nCaused by: x\n";
    let opts = InspectOptions {
        format: Some(Format::Raw),
        ..InspectOptions::default()
    };
    let (_, rows) = run(log, opts);
    assert_eq!(rows.len(), 4, "raw: every line is a record, blank ones too");
    assert_eq!(rows[2]["line"], 3);
}

#[test]
fn rules_fire_with_examples() {
    let log = b"Jun  9 06:06:20 web kernel: Out of memory: Killed process 4242 (java)
Jun  9 06:06:21 web sshd[1]: Accepted password for root from 10.0.0.1 port 22 ssh2
";
    let (report, _) = run(log, InspectOptions::default());
    assert_eq!(report.files[0].format, Format::Syslog);
    let oom = report.rule_hits.iter().find(|h| h.rule == "oom-kill");
    let oom = oom.unwrap_or_else(|| panic!("oom-kill should fire: {:?}", report.rule_hits));
    assert_eq!(oom.count, 1);
    assert_eq!(oom.examples[0].line, 1);
    assert_eq!(oom.severity, Severity::Critical);
}

#[test]
fn missing_file_is_reported() {
    let mut inspector = Inspector::new(InspectOptions::default(), builtin());
    inspector.inspect_path("/nonexistent/opsloop-test.log", &mut |_| {});
    let (report, _, _) = inspector.finish();
    assert!(report.files[0].error.is_some());
}

#[test]
fn problems_are_bounded_and_counted() {
    let mut log = Vec::new();
    for i in 0..5000 {
        log.extend_from_slice(format!("{{\"msg\":\"ok {i}\"}}\nnot json {i}\n").as_bytes());
    }
    let opts = InspectOptions {
        format: Some(Format::Json),
        ..InspectOptions::default()
    };
    let (report, _) = run(&log, opts);
    assert_eq!(report.problems.counts.get("parse_error"), Some(&5000));
    assert_eq!(report.summary.problems, 5000);
    assert_eq!(report.files[0].problems, 5000);
    assert_eq!(report.problems.examples.len(), DEFAULT_MAX_PROBLEMS);
    assert_eq!(
        report.problems.examples[0].line, 2,
        "the first ones are kept"
    );
    // The tally itself never holds more than the examples.
    let mut tally = ProblemTally::new(DEFAULT_MAX_PROBLEMS);
    for i in 0..10_000 {
        tally.add(Problem {
            kind: ProblemKind::Binary,
            file: "f".into(),
            line: i,
            detail: String::new(),
        });
    }
    assert_eq!(
        (tally.total, tally.examples.len()),
        (10_000, DEFAULT_MAX_PROBLEMS)
    );
}

#[test]
fn the_problems_listed_are_configurable() {
    let log = b"{\"msg\":\"ok\"}\nbad 1\nbad 2\nbad 3\n";
    let opts = InspectOptions {
        format: Some(Format::Json),
        max_problems: 2,
        ..InspectOptions::default()
    };
    let (report, _) = run(log, opts);
    assert_eq!(report.summary.problems, 3);
    assert_eq!(report.problems.examples.len(), 2);
}

#[test]
fn impossible_dates_are_parse_problems_kept_as_raw_messages() {
    let log = b"Feb 28 06:06:20 web kernel: Out of memory: Killed process 4242 (java)
Feb 30 06:06:21 web kernel: Out of memory: Killed process 4243 (java)
Apr 31 06:06:22 web sshd[1]: Accepted password for root from 10.0.0.1 port 22 ssh2
Mar  1 06:06:23 web sshd[1]: Accepted password for root from 10.0.0.1 port 22 ssh2
";
    let opts = InspectOptions {
        year: Some(2025),
        ..InspectOptions::default()
    };
    let (report, rows) = run(log, opts);
    assert_eq!(report.files[0].format, Format::Syslog);
    assert_eq!(
        rows.len(),
        4,
        "each a record of its own, none joined as a continuation"
    );
    assert_eq!(report.problems.counts.get("parse_error"), Some(&2));
    let lines: Vec<u64> = report.problems.examples.iter().map(|p| p.line).collect();
    assert_eq!(lines, [2, 3]);
    // Not rolled into March or May: the dated records are Feb 28 and Mar 1.
    assert_eq!(
        report.summary.first_timestamp.as_deref(),
        Some("2025-02-28T06:06:20.000Z")
    );
    assert_eq!(
        report.summary.last_timestamp.as_deref(),
        Some("2025-03-01T06:06:23.000Z")
    );
}

#[test]
fn cri_partial_lines_join_per_stream_and_are_capped() {
    let (a, b, c, d) = (
        "a".repeat(30),
        "b".repeat(30),
        "c".repeat(30),
        "d".repeat(30),
    );
    let log = format!(
        "2024-01-02T03:04:05.000Z stdout P {a}
2024-01-02T03:04:05.001Z stderr F err line
2024-01-02T03:04:05.002Z stdout P {b}
2024-01-02T03:04:05.003Z stdout P {c}
2024-01-02T03:04:05.004Z stdout F {d}
2024-01-02T03:04:05.005Z stdout F next
"
    );
    let opts = InspectOptions {
        format: Some(Format::Plain),
        max_line: 200,
        ..InspectOptions::default()
    };
    let (report, rows) = run(log.as_bytes(), opts.clone());
    let lines: Vec<u64> = rows
        .iter()
        .map(|r| r["line"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        lines,
        [2, 1, 6],
        "stderr's line does not end stdout's message"
    );
    let examples: Vec<&str> = report
        .templates
        .iter()
        .map(|t| t.example.as_str())
        .collect();
    assert!(
        examples.contains(&format!("{a}{b}{c}{d}").as_str()),
        "{examples:?}"
    );
    assert!(examples.contains(&"err line"));
    assert_eq!(report.problems.counts.len(), 0);
    // Lines of 64 bytes are whole; the message joined from them is cut at 64 bytes.
    let opts = InspectOptions {
        max_line: 64,
        ..opts
    };
    let (report, rows) = run(log.as_bytes(), opts);
    assert_eq!(rows.len(), 3);
    let examples: Vec<&str> = report
        .templates
        .iter()
        .map(|t| t.example.as_str())
        .collect();
    assert!(
        examples.contains(&format!("{a}{b}cccc").as_str()),
        "{examples:?}"
    );
    assert_eq!(report.problems.counts.get("line_too_long"), Some(&1));
    assert_eq!(report.problems.examples[0].line, 1);
}
