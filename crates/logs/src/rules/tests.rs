use super::*;
use std::time::Duration;

fn set(yaml: &str) -> Result<RuleSet, RuleError> {
    let file = parse_rule_file("test.yaml", yaml)?;
    RuleSet::compile(&[("test.yaml".to_string(), file)])
}

fn rec(message: &str, level: Option<Level>, fields: &[(&str, Value)]) -> Record {
    Record {
        message: message.into(),
        level,
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..Record::default()
    }
}

fn fire(rules: &mut RuleSet, r: &Record, now_ms: i64) -> Vec<String> {
    let ctx = RuleContext {
        template_id: TemplateId(7),
        template_key: (0, 0),
        template: "t <*>",
        timestamp: Some(now_ms),
    };
    let mut hits = Vec::new();
    rules.evaluate(r, &ctx, &mut hits);
    hits.iter()
        .map(|h| rules.rules()[h.rule].spec.id.clone())
        .collect()
}

#[test]
fn builtin_pack_compiles_and_fires() {
    let file = parse_rule_file("builtin", BUILTIN_RULES).unwrap_or_else(|e| panic!("{e}"));
    let mut rules = RuleSet::compile(&[("builtin".into(), file)]).unwrap_or_else(|e| panic!("{e}"));
    assert!(rules.len() >= 12);
    let cases = [
        ("Out of memory: Killed process 1234 (java)", "oom-kill"),
        (
            "dial tcp 10.0.0.1:5432: connect: connection refused",
            "connection-refused",
        ),
        ("write /data/x: no space left on device", "disk-full"),
        ("accept4: too many open files", "too-many-open-files"),
        (
            "x509: certificate has expired or is not yet valid",
            "tls-error",
        ),
        ("dial tcp: lookup db.internal: no such host", "dns-failure"),
        (
            "Back-off restarting failed container app in pod web-1",
            "k8s-crashloop",
        ),
        (
            "Readiness probe failed: HTTP probe failed with statuscode: 503",
            "k8s-probe-failure",
        ),
        ("context deadline exceeded", "timeout"),
        (
            "goroutine 1 [running]: panic: runtime error",
            "panic-or-segfault",
        ),
    ];
    for (msg, id) in cases {
        let hits = fire(&mut rules, &rec(msg, None, &[]), 0);
        assert!(
            hits.contains(&id.to_string()),
            "{msg:?} should fire {id}, got {hits:?}"
        );
    }
    assert!(fire(&mut rules, &rec("all good here", None, &[]), 0).is_empty());
}

#[test]
fn all_predicates_must_hold() {
    let mut rules = set(r#"
rules:
  - id: slow-5xx
    severity: error
    match:
      keywords: [upstream]
      level: warn
      condition: 'fields.status >= 500 && fields.duration_ms > 2000'
"#)
    .unwrap_or_else(|e| panic!("{e}"));
    let ok = rec(
        "Upstream failed",
        Some(Level::Error),
        &[("status", 503.into()), ("duration_ms", 2500.into())],
    );
    assert_eq!(fire(&mut rules, &ok, 0), ["slow-5xx"]);
    let fast = rec(
        "upstream failed",
        Some(Level::Error),
        &[("status", 503.into()), ("duration_ms", 20.into())],
    );
    assert!(fire(&mut rules, &fast, 0).is_empty());
    let info = rec(
        "upstream failed",
        Some(Level::Info),
        &[("status", 503.into()), ("duration_ms", 2500.into())],
    );
    assert!(fire(&mut rules, &info, 0).is_empty());
    let missing = rec("upstream failed", Some(Level::Error), &[]);
    assert!(fire(&mut rules, &missing, 0).is_empty());
    assert_eq!(
        rules.condition_errors[0], 0,
        "a missing field is false, not an error"
    );
}

#[test]
fn template_and_field_predicates() {
    let mut rules = set(r#"
rules:
  - id: by-template
    severity: info
    match: {template: "t <*>"}
  - id: by-id
    severity: info
    match: {template_id: "0000000000000007"}
  - id: admin-path
    severity: warning
    match: {field: path, regex: '^/admin'}
"#)
    .unwrap_or_else(|e| panic!("{e}"));
    let r = rec("x", None, &[("path", "/admin/users".into())]);
    assert_eq!(
        fire(&mut rules, &r, 0),
        ["by-template", "by-id", "admin-path"]
    );
}

#[test]
fn windows_count_per_group() {
    let mut rules = set(r#"
rules:
  - id: brute
    severity: warning
    match: {regex: 'Failed password'}
    window: count >= 3 within 1m by fields.ip
"#)
    .unwrap_or_else(|e| panic!("{e}"));
    let a = rec(
        "Failed password for root",
        None,
        &[("ip", "1.1.1.1".into())],
    );
    let b = rec(
        "Failed password for root",
        None,
        &[("ip", "2.2.2.2".into())],
    );
    assert!(fire(&mut rules, &a, 0).is_empty());
    assert!(fire(&mut rules, &b, 1_000).is_empty());
    assert!(fire(&mut rules, &a, 2_000).is_empty());
    assert_eq!(fire(&mut rules, &a, 3_000), ["brute"]);
    // Outside the window the count starts again.
    assert!(fire(&mut rules, &b, 120_000).is_empty());
}

#[test]
fn errors_name_file_rule_and_field() {
    let e = set("rules:\n  - id: bad\n    severity: error\n    match: {regex: '('}\n").err();
    let text = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.contains("test.yaml") && text.contains("bad") && text.contains("match.regex"),
        "{text}"
    );
    let e = set("rules:\n  - id: c\n    severity: error\n    match: {condition: 'a &&'}\n").err();
    assert!(
        e.map(|e| e.to_string())
            .unwrap_or_default()
            .contains("match.condition")
    );
    let e = set(
        "rules:\n  - id: w\n    severity: error\n    match: {regex: x}\n    window: sometimes\n",
    )
    .err();
    assert!(
        e.map(|e| e.to_string())
            .unwrap_or_default()
            .contains("window")
    );
    let e = set("rules:\n  - id: u\n    severity: error\n    match: {regx: x}\n").err();
    assert!(e.is_some(), "unknown keys are rejected");
    let e = set("rules:\n  - id: d\n    severity: error\n    match: {regex: x}\n  - id: d\n    severity: error\n    match: {regex: y}\n").err();
    assert!(
        e.map(|e| e.to_string())
            .unwrap_or_default()
            .contains("duplicate")
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("1m").ok(), Some(Duration::from_secs(60)));
    assert_eq!(
        parse_duration("1h30m").ok(),
        Some(Duration::from_secs(5400))
    );
    assert_eq!(
        parse_duration("250ms").ok(),
        Some(Duration::from_millis(250))
    );
    assert!(parse_duration("5").is_err());
    assert!(parse_duration("5x").is_err());
}
