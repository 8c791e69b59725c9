use super::*;

fn red(text: &str) -> (String, usize) {
    let r = Redactor::default();
    let mut s = text.to_string();
    let n = r.redact(&mut s);
    (s, n)
}

#[test]
fn builtin_patterns_compile() {
    let r = Redactor::new(&[]).unwrap();
    assert!(r.is_enabled());
    assert_eq!(r.pattern_names().count(), builtin().len());
}

#[test]
fn redacts_secrets_keeping_their_keys() {
    let cases = [
        (
            "login user=bob password=hunter2 ok",
            "login user=bob password=<redacted> ok",
        ),
        ("password: hunter2", "password: <redacted>"),
        ("Password = hunter2", "Password = <redacted>"),
        (
            r#"{"user":"bob","password":"hunter2"}"#,
            r#"{"user":"bob","password":"<redacted>"}"#,
        ),
        (
            r#"{"password": "hun\"ter2", "x": 1}"#,
            r#"{"password": "<redacted>", "x": 1}"#,
        ),
        (
            r#"msg="{\"password\":\"hunter2\"}""#,
            r#"msg="{\"password\":\"<redacted>\"}""#,
        ),
        ("passwd=abc", "passwd=<redacted>"),
        ("pwd=abc", "pwd=<redacted>"),
        ("DB_PASSWORD=s3cr3t", "DB_PASSWORD=<redacted>"),
        (
            "spring.datasource.password=x1",
            "spring.datasource.password=<redacted>",
        ),
        ("client_secret=abc123", "client_secret=<redacted>"),
        ("clientSecret: 'abc'", "clientSecret: '<redacted>'"),
        ("token=abc.def", "token=<redacted>"),
        (
            "GET /cb?access_token=abc&state=1",
            "GET /cb?access_token=<redacted>&state=1",
        ),
        (
            "api_key=K1 apikey=K2 api-key: K3",
            "api_key=<redacted> apikey=<redacted> api-key: <redacted>",
        ),
        ("X-Api-Key: abc", "X-Api-Key: <redacted>"),
        (
            "aws_secret_access_key=wJalr/K7MDENG",
            "aws_secret_access_key=<redacted>",
        ),
        (
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
            "Authorization: Bearer <redacted>",
        ),
        (
            "authorization: Basic dXNlcjpwYXNz",
            "authorization: Basic <redacted>",
        ),
        (
            r#"{"Authorization": "Bearer abc123"}"#,
            r#"{"Authorization": "Bearer <redacted>"}"#,
        ),
        (
            "sent with bearer abcdef123456",
            "sent with bearer <redacted>",
        ),
        ("key id AKIAIOSFODNN7EXAMPLE used", "key id <redacted> used"),
        ("ASIAIOSFODNN7EXAMPLE", "<redacted>"),
        (
            "postgres://app:pa55w0rd@db:5432/x",
            "postgres://app:<redacted>@db:5432/x",
        ),
        ("redis://:hunter2@cache", "redis://:<redacted>@cache"),
        (
            "key: -----BEGIN RSA PRIVATE KEY-----\\nMIIEow\\n-----END RSA PRIVATE KEY----- done",
            "key: -----BEGIN RSA PRIVATE KEY-----<redacted>-----END RSA PRIVATE KEY----- done",
        ),
        (
            "-----BEGIN PRIVATE KEY----- MIIEvQIBADANBg (cut)",
            "-----BEGIN PRIVATE KEY-----<redacted>",
        ),
    ];
    for (input, want) in cases {
        let (got, n) = red(input);
        assert_eq!(got, want, "{input}");
        assert!(n >= 1, "{input}");
    }
}

#[test]
fn leaves_ordinary_text_alone() {
    let cases = [
        "Failed password for root from 10.0.0.1 port 22 ssh2",
        "Accepted password for bob",
        "password authentication failed for user \"bob\"",
        "passwords changed: 3",
        "tokenizer=bert secretary=alice",
        "token_count: 512 tokens used",
        "user=bob status=200",
        "the bearer of bad news",
        "bearer authentication failed",
        "GET http://example.com:8080/path@v2 200",
        "timezone Asia/Tokyo",
        "rotated keys: 3",
        "-----BEGIN CERTIFICATE----- MIIB",
    ];
    for input in cases {
        let (got, n) = red(input);
        assert_eq!((got.as_str(), n), (input, 0), "{input}");
    }
}

#[test]
fn redaction_is_idempotent() {
    let (once, _) = red("password=hunter2 Authorization: Bearer abc123def");
    let (twice, n) = red(&once);
    assert_eq!(once, twice);
    assert_eq!(n, 0);
}

#[test]
fn secret_key_names() {
    let r = Redactor::default();
    for k in [
        "password",
        "db_password",
        "dbPassword",
        "PASSWORD",
        "user.password",
        "secret",
        "client_secret",
        "token",
        "accessToken",
        "api_key",
        "apiKey",
        "x-api-key",
        "APIKEY",
        "Authorization",
        "set-cookie",
        "AWSSecretKey",
        "private_key",
    ] {
        assert!(r.is_secret_key(k), "{k}");
    }
    for k in [
        "tokenizer",
        "secretary",
        "passwords_changed",
        "keyboard",
        "monkey",
        "author",
        "user",
        "path",
    ] {
        assert!(!r.is_secret_key(k), "{k}");
    }
}

fn record(message: &str, fields: &[(&str, Value)]) -> Record {
    Record {
        message: message.into(),
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..Record::default()
    }
}

#[test]
fn redacts_structured_fields() {
    let r = Redactor::default();
    let rec = record(
        "login",
        &[
            ("password", "hunter2".into()),
            ("token_count", 5.into()),
            ("user", "bob".into()),
            ("url", "https://bob:pw1@example.com/".into()),
            (
                "auth",
                serde_json::json!({"apiKey": "k1", "headers": {"Authorization": "Bearer x"}}),
            ),
            ("tokens", serde_json::json!(["a", "b"])),
        ],
    );
    let (out, n) = r.redacted(&rec);
    assert!(matches!(out, Cow::Owned(_)));
    assert_eq!(n, 4);
    assert_eq!(out.field("password"), Some(&Value::from(MARKER)));
    assert_eq!(out.field("token_count"), Some(&Value::from(5)));
    assert_eq!(out.field("user"), Some(&Value::from("bob")));
    assert_eq!(
        out.field("url"),
        Some(&Value::from("https://bob:<redacted>@example.com/"))
    );
    assert_eq!(
        out.field("auth"),
        Some(&serde_json::json!({"apiKey": MARKER, "headers": {"Authorization": MARKER}}))
    );
    assert_eq!(out.field("tokens"), Some(&serde_json::json!(["a", "b"])));
}

#[test]
fn clean_records_are_borrowed() {
    let r = Redactor::default();
    let rec = record(
        "GET https://example.com/x 200 tokenizer ready",
        &[("user", "bob".into()), ("count", 3.into())],
    );
    let (out, n) = r.redacted(&rec);
    assert!(matches!(out, Cow::Borrowed(_)));
    assert_eq!(n, 0);
    let secret = record("password=x", &[]);
    let (out, n) = Redactor::disabled().redacted(&secret);
    assert!(matches!(out, Cow::Borrowed(_)));
    assert_eq!(n, 0);
}

#[test]
fn key_block_across_joined_lines() {
    let r = Redactor::default();
    let mut rec = record("loaded key -----BEGIN OPENSSH PRIVATE KEY-----", &[]);
    rec.continuation =
        "b3BlbnNzaC1rZXktdjEAAAAA\nAAAEbm9uZQ==\n-----END OPENSSH PRIVATE KEY-----\nnext".into();
    let (out, n) = r.redacted(&rec);
    assert_eq!(n, 1);
    assert_eq!(
        out.message,
        "loaded key -----BEGIN OPENSSH PRIVATE KEY-----"
    );
    assert_eq!(
        out.continuation,
        "<redacted>-----END OPENSSH PRIVATE KEY-----\nnext"
    );
}

#[test]
fn extra_patterns() {
    let r = Redactor::new(&[
        ("ssn", r"\bssn=(\d{3}-\d{2}-\d{4})"),
        ("card", r"\b\d{4}-\d{4}-\d{4}-\d{4}\b"),
    ])
    .unwrap();
    let mut s = "ssn=123-45-6789 paid with 4111-1111-1111-1111 password=x".to_string();
    assert_eq!(r.redact(&mut s), 3);
    assert_eq!(s, "ssn=<redacted> paid with <redacted> password=<redacted>");
    let mut clean = "nothing here".to_string();
    assert_eq!(r.redact(&mut clean), 0);
    assert!(matches!(
        Redactor::new(&[("bad", "(")]),
        Err(RedactError::Invalid { .. })
    ));
    let many: Vec<(&str, &str)> = (0..=MAX_EXTRA_PATTERNS).map(|_| ("x", "x")).collect();
    assert!(matches!(
        Redactor::new(&many),
        Err(RedactError::TooMany { .. })
    ));
}

#[test]
fn deep_values_are_cut_off() {
    let r = Redactor::default();
    let mut v = Value::from("password=x");
    for _ in 0..200 {
        v = Value::Array(vec![v]);
    }
    let rec = record("m", &[("deep", v)]);
    let (out, n) = r.redacted(&rec);
    assert_eq!(n, 1);
    let text = serde_json::to_string(&out.fields).unwrap_or_default();
    assert!(
        !text.contains("password=x") && text.contains(MARKER),
        "{text}"
    );
}

/// Everything a pipeline emits for lines and records that carry `hunter2`, as JSON.
fn pipeline_output(redactor: Option<Redactor>) -> (String, u64) {
    use crate::anomaly::AnomalyConfig;
    use crate::miner::MinerConfig;
    use crate::parse::Format;
    use crate::pipeline::{LogPipeline, SourceSpec};
    use crate::rules::{RuleSet, parse_rule_file};
    use opsloop_core::ingest::IngestedRecord;

    let yaml = r#"
rules:
  - id: login-failed
    severity: warning
    match: {keywords: [login failed]}
  - id: by-password-field
    severity: info
    match: {condition: 'has(fields.password)'}
"#;
    let file = parse_rule_file("test.yaml", yaml).unwrap();
    let rules = RuleSet::compile(&[("test.yaml".into(), file)]).unwrap();
    let mut p = LogPipeline::new(
        rules,
        MinerConfig::default(),
        AnomalyConfig::default(),
        "/opsloop/test",
    );
    if let Some(r) = redactor {
        p.set_redactor(r);
    }
    let spec = |format| SourceSpec {
        format: Some(format),
        multiline: Some(false),
        max_message: None,
    };
    p.add_source("raw", spec(Format::Raw));
    p.add_source("logfmt", spec(Format::Logfmt));
    p.add_source("json", spec(Format::Json));
    let mut out = Vec::new();
    p.push_line("raw", "login failed for bob password=hunter2", &mut out);
    p.push_line(
        "logfmt",
        r#"level=error msg="login failed" user=bob password=hunter2"#,
        &mut out,
    );
    p.push_line(
        "json",
        r#"{"level":"error","msg":"login failed: password=hunter2","password":"hunter2"}"#,
        &mut out,
    );
    // Not JSON: kept as the example of an `input_problem` event.
    p.push_line("json", "login failed password=hunter2", &mut out);
    p.push_record(
        IngestedRecord {
            source: "api".into(),
            received_ms: 0,
            timestamp: Some(1_000),
            level: None,
            message: "login failed: Authorization: Basic aHVudGVyMg== pwd=hunter2".into(),
            fields: vec![("password".into(), "hunter2".into())],
        },
        &mut out,
    );
    p.flush_all(&mut out);
    let kinds: Vec<&str> = out.iter().map(|e| e.kind.as_str()).collect();
    assert!(
        kinds.contains(&"io.opsloop.log.rule_matched")
            && kinds.contains(&"io.opsloop.log.input_problem"),
        "{kinds:?}"
    );
    let json = serde_json::to_string(&out).unwrap_or_default();
    let templates = format!("{:?}", p.templates());
    (format!("{json}\n{templates}"), p.redactions())
}

#[test]
fn pipeline_events_never_carry_the_password() {
    let (text, redactions) = pipeline_output(None);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("aHVudGVyMg=="), "{text}");
    assert!(text.contains("password=<redacted>"), "{text}");
    assert!(redactions >= 8, "{redactions}");
    // The same records without redaction do carry it: the check above can fail.
    let (text, redactions) = pipeline_output(Some(Redactor::disabled()));
    assert!(text.contains("hunter2"));
    assert_eq!(redactions, 0);
}

#[test]
fn inspector_reports_and_events_never_carry_the_password() {
    use crate::inspect::{InspectOptions, Inspector};
    use crate::rules::{RuleSet, parse_rule_file};
    use std::io::Write;
    use std::sync::Mutex;

    /// Event output shared with the test.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let run = |redactor: Option<Redactor>| -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        std::fs::write(
            &path,
            "level=error msg=\"login failed\" password=hunter2\nlevel=info msg=ok\n",
        )
        .unwrap();
        let yaml =
            "rules:\n  - id: login\n    severity: warning\n    match: {keywords: [login failed]}\n";
        let file = parse_rule_file("t.yaml", yaml).unwrap();
        let rules = RuleSet::compile(&[("t.yaml".into(), file)]).unwrap();
        let mut inspector = Inspector::new(InspectOptions::default(), rules);
        if let Some(r) = redactor {
            inspector.set_redactor(r);
        }
        let events = Shared::default();
        inspector.emit_events(Box::new(events.clone()));
        inspector.inspect_path(&path.display().to_string(), &mut |_| {});
        let (report, _, _) = inspector.finish();
        assert_eq!(report.rule_hits.len(), 1);
        let events = events.0.lock().map(|e| e.clone()).unwrap_or_default();
        format!(
            "{}\n{}",
            serde_json::to_string(&report).unwrap_or_default(),
            String::from_utf8_lossy(&events)
        )
    };
    let text = run(None);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("<redacted>"), "{text}");
    assert!(run(Some(Redactor::disabled())).contains("hunter2"));
}

#[test]
fn many_trigger_words_use_the_automaton_and_still_redact() {
    // Extra patterns with many literals: past the table's word limit the automaton scans.
    let words: Vec<String> = (0..80).map(|i| format!("tok{i:02}x")).collect();
    let patterns: Vec<(String, String)> = words
        .chunks(20)
        .enumerate()
        .map(|(i, chunk)| {
            (
                format!("extra-{i}"),
                format!("(?:{})=(\\S+)", chunk.join("|")),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = patterns
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_str()))
        .collect();
    let r = Redactor::new(&refs).unwrap();
    assert!(matches!(r.inner.triggers, Some(TriggerScan::Automaton(..))));
    let mut text = String::from("login tok77x=hunter2 done");
    assert_eq!(r.redact(&mut text), 1);
    assert!(!text.contains("hunter2"), "{text}");
    // A built-in pattern still fires through the automaton.
    let mut text = String::from("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig");
    assert!(r.redact(&mut text) >= 1);
    assert!(!text.contains("eyJzdWIiOiIxIn0"), "{text}");
    let mut clean = String::from("nothing to see here");
    assert_eq!(r.redact(&mut clean), 0);
}
