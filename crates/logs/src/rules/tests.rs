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
    let file = parse_rule_file("builtin", BUILTIN_RULES).unwrap();
    let mut rules = RuleSet::compile(&[("builtin".into(), file)]).unwrap();
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
    .unwrap();
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
    .unwrap();
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
    .unwrap();
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

fn condition_rule(condition: &str) -> String {
    format!(
        "rules:\n  - id: long\n    severity: error\n    match:\n      condition: '{condition}'\n"
    )
}

fn condition_error(condition: &str) -> String {
    set(&condition_rule(condition))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

/// Runs `f` on a thread with the default 2 MiB stack of spawned threads.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap_or_else(|_| panic!("the thread panicked"))
}

#[test]
fn long_conditions_are_rejected_not_run() {
    // The fuzz finding: `fields.status + 1 + 1 ... > 1` overflowed the stack (an abort) when
    // evaluated, and its compile was accepted. Each size hits another bound.
    let terms = |n: usize| format!("fields.status{} > 1", " + 1".repeat(n));
    let cases = [
        (5_000, "bytes long"),
        (900, "operators"),
        (60, "levels deep"),
    ];
    for (n, bound) in cases {
        let expr = terms(n);
        let text = on_small_stack(move || condition_error(&expr));
        assert!(
            text.contains("test.yaml")
                && text.contains("\"long\"")
                && text.contains("match.condition")
                && text.contains(bound),
            "{n} terms: {text}"
        );
    }
    let text = condition_error(&format!("{}true{}", "(".repeat(9), ")".repeat(9)));
    assert!(text.contains("nests brackets 9 deep"), "{text}");
}

#[test]
fn syntax_error_past_column_65535_is_an_error() {
    // The second fuzz finding: `cel` panicked formatting the error ("Formatting argument out
    // of range"). The length bound stops it first, and the compiler's panic is caught too.
    let expr = format!("{}1 +* 2", " ".repeat(70_000));
    let text = condition_error(&expr);
    assert!(text.contains("bytes long"), "{text}");
    let caught = std::panic::catch_unwind(|| {
        std::panic::catch_unwind(|| cel::Program::compile(&expr).map_err(|e| e.to_string()))
            .map_err(|p| panic_message(&*p).to_string())
    });
    match caught {
        Ok(Err(message)) => assert!(message.contains("out of range"), "{message}"),
        Ok(Ok(r)) => panic!("cel no longer panics here: {:?}", r.err()),
        Err(_) => panic!("the panic escaped"),
    }
}

#[test]
fn accepted_maximum_runs_on_a_2_mib_stack() {
    // The largest conditions accepted, of each shape that makes the parser or the evaluator
    // recurse, compiled, evaluated and dropped on a 2 MiB stack.
    let plus = |n: usize| {
        format!(
            "{}fields.n{} > 0{}",
            "(".repeat(MAX_CONDITION_NESTING),
            " + 1".repeat(n),
            ")".repeat(MAX_CONDITION_NESTING)
        )
    };
    let largest_plus = (1..MAX_CONDITION_OPERATORS)
        .take_while(|&n| compile_bounded(&plus(n)).is_ok())
        .last()
        .map(plus)
        .unwrap_or_default();
    let and_terms = (MAX_CONDITION_OPERATORS - 1) / 3;
    let and = format!(
        "{}fields.status == 1{}{}",
        "(".repeat(MAX_CONDITION_NESTING),
        " && fields.status == 1".repeat(and_terms - 1),
        ")".repeat(MAX_CONDITION_NESTING)
    );
    let mut macros = String::from("fields.status == 1");
    for i in 0..MAX_CONDITION_NESTING {
        macros = format!("[1].all(x{i}, {macros})");
    }
    let ternary = |n: usize| format!("{}fields.status == 1", "false ? false : ".repeat(n));
    let largest_ternary = (1..MAX_CONDITION_OPERATORS)
        .take_while(|&n| compile_bounded(&ternary(n)).is_ok())
        .last()
        .map(ternary)
        .unwrap_or_default();
    for expr in [largest_plus, and, macros, largest_ternary] {
        assert!(!expr.is_empty());
        let shown = expr.clone();
        let fired = on_small_stack(move || {
            let program = compile_bounded(&expr).map_err(|e| format!("{expr}: {e}"))?;
            drop(program);
            let mut rules = set(&condition_rule(&expr)).map_err(|e| e.to_string())?;
            // `n` is an int (`status`, non-negative, is a uint to CEL: no `+ 1` on it).
            let r = rec("x", None, &[("status", 1.into()), ("n", (-1).into())]);
            Ok::<_, String>(fire(&mut rules, &r, 0))
        });
        assert_eq!(fired, Ok(vec!["long".to_string()]), "{shown}");
    }
}

#[test]
fn condition_shape_reads_strings_and_comments_like_cel() {
    // Brackets and operators inside strings and comments are not structure.
    assert_eq!(
        condition_shape(r#"message.contains("((((((((((((")"#),
        (1, 1)
    );
    assert_eq!(
        condition_shape("'a.b.c' + \"\"\"((\"\"\" + r'\\' // (((((("),
        (0, 2)
    );
    // An unterminated string is a lexer error: what follows is read as code.
    assert_eq!(condition_shape("\"((((\n"), (4, 0));
    // An invalid escape ends the string for the lexer too.
    assert_eq!(condition_shape(r#""\q((((" "#), (4, 0));
    assert_eq!(condition_shape("a in b && c || d >= e"), (0, 4));
    assert!(
        set(&condition_rule(
            r#"message.matches("^(a|b)(c|d)(e|f)(g|h)(i|j)(k|l)(m|n)(o|p)(q|r)$")"#
        ))
        .is_ok()
    );
}

#[test]
fn load_reports_file_rule_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let good = write(
        "a.yaml",
        "rules:\n  - id: mine\n    severity: info\n    match: {keywords: [hello]}\n",
    );
    let set = RuleSet::load(true, &[good]).unwrap();
    let builtin = RuleSet::load(true, &[]).unwrap();
    assert_eq!(set.len(), builtin.len() + 1);
    assert_eq!(RuleSet::load(false, &[]).map(|s| s.len()).ok(), Some(0));
    let only_dir = RuleSet::load(false, &[dir.path().to_path_buf()]).map(|s| s.len());
    assert_eq!(only_dir.ok(), Some(1));

    let bogus = write(
        "bogus.yaml",
        "rules:\n  - id: ok\n    severity: info\n    match: {keywords: [a]}\n  - id: sev\n    severity: bogus\n    match: {keywords: [b]}\n",
    );
    let e = RuleSet::load(false, &[bogus]).err().map(|e| e.to_string());
    let text = e.unwrap_or_default();
    assert!(
        text.contains("bogus.yaml")
            && text.contains("rules[1] (id \"sev\")")
            && text.contains("bogus"),
        "{text}"
    );

    let bad_regex = write(
        "regex.yml",
        "rules:\n  - id: ok\n    severity: info\n    match: {keywords: [a]}\n\n  - id: paren\n    severity: error\n    match:\n      regex: \"(\"\n",
    );
    let e = RuleSet::load(false, &[bad_regex]).err();
    assert!(
        matches!(
            &e,
            Some(RuleError::Invalid {
                line: Some(6),
                index: 1,
                field: "match.regex",
                ..
            })
        ),
        "{e:?}"
    );
    let text = e.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.contains("regex.yml:6: rules[1] (id \"paren\"): match.regex"),
        "{text}"
    );

    let long = write(
        "long.yaml",
        &condition_rule(&format!("fields.status{} > 1", " + 1".repeat(5_000))),
    );
    let text = RuleSet::load(false, &[long])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        text.contains("long.yaml:2: rules[0] (id \"long\"): match.condition")
            && text.contains("bytes long"),
        "{text}"
    );
    let missing = dir.path().join("missing.yaml");
    assert!(matches!(
        RuleSet::load(false, &[missing]),
        Err(RuleError::Io { .. })
    ));
}

#[test]
fn windows_survive_hostile_times_and_groups() {
    let mut rules = set(r#"
rules:
  - id: burst
    severity: warning
    match: {keywords: [fail]}
    window: count >= 2 within 1m by fields.client
"#)
    .unwrap();
    // Record times come from input: the extremes must not overflow.
    let r = rec("fail", None, &[("client", "a".into())]);
    assert!(fire(&mut rules, &r, i64::MIN).is_empty());
    assert!(fire(&mut rules, &r, i64::MAX).is_empty());
    assert_eq!(fire(&mut rules, &r, i64::MAX), ["burst"]);
    // A flood of distinct groups stays bounded and the live group still fires.
    for i in 0..30_000 {
        let r = rec("fail", None, &[("client", format!("c{i}").into())]);
        fire(&mut rules, &r, 1_000 + i);
    }
    assert!(rules.windows[0].len() <= MAX_WINDOW_GROUPS);
    let live = rec("fail", None, &[("client", "c29999".into())]);
    assert_eq!(fire(&mut rules, &live, 31_000), ["burst"]);
    // Huge group values share a bounded key.
    let big = |c: char| {
        rec(
            "fail",
            None,
            &[("client", c.to_string().repeat(10_000).into())],
        )
    };
    fire(&mut rules, &big('x'), 40_000);
    assert!(rules.windows[0].keys().all(|k| k.len() <= MAX_GROUP_KEY));

    let text = set("rules:\n  - id: w\n    severity: info\n    match: {keywords: [x]}\n    window: count >= 4000000000 within 1h\n")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(text.contains("too high"), "{text}");
}

#[test]
fn shared_keywords_fire_every_rule() {
    // Many rules on the same keyword: one automaton pattern, every rule still fires.
    let mut yaml = String::from("rules:\n");
    for i in 0..2_000 {
        yaml.push_str(&format!(
            "  - id: r{i}\n    severity: info\n    match: {{keywords: [error, timeout]}}\n"
        ));
    }
    let mut rules = set(&yaml).unwrap();
    assert_eq!(
        fire(&mut rules, &rec("an ERROR here", None, &[]), 0).len(),
        2_000
    );
    assert_eq!(
        fire(&mut rules, &rec("a Timeout", None, &[]), 0).len(),
        2_000
    );
    assert!(fire(&mut rules, &rec("all fine", None, &[]), 0).is_empty());
}
