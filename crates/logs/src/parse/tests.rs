use super::*;
use proptest::prelude::*;

fn parse(format: Format, line: &str) -> Option<Record> {
    let mut rec = Record::default();
    Parser::new(format, 2026)
        .parse(line, &mut rec)
        .then_some(rec)
}

fn field<'a>(rec: &'a Record, k: &str) -> Option<&'a Value> {
    rec.field(k)
}

#[test]
fn json_lines() {
    let r = parse(
        Format::Json,
        r#"{"ts":"2026-01-02T03:04:05Z","level":"error","msg":"db down","status":503,"ok":false}"#,
    );
    let r = r.unwrap_or_default();
    assert_eq!(r.message, "db down");
    assert_eq!(r.level, Some(Level::Error));
    assert!(r.timestamp.is_some());
    assert_eq!(field(&r, "status"), Some(&Value::from(503)));
    assert!(parse(Format::Json, "not json").is_none());
    assert!(parse(Format::Json, "{broken").is_none());
    let pino = parse(
        Format::Json,
        r#"{"level":50,"time":1700000000000,"msg":"x"}"#,
    );
    assert_eq!(pino.and_then(|r| r.level), Some(Level::Error));
}

#[test]
fn logfmt_lines() {
    let r = parse(
        Format::Logfmt,
        r#"ts=2026-01-02T03:04:05Z level=warn msg="slow query" duration_ms=2500 cached"#,
    )
    .unwrap_or_default();
    assert_eq!(r.message, "slow query");
    assert_eq!(r.level, Some(Level::Warn));
    assert_eq!(field(&r, "duration_ms"), Some(&Value::from(2500)));
    assert_eq!(field(&r, "cached"), Some(&Value::Bool(true)));
    assert!(parse(Format::Logfmt, "just some words here").is_none());
    assert!(parse(Format::Logfmt, r#"a=1 msg="unterminated"#).is_none());
}

#[test]
fn syslog_3164_and_5424() {
    let r = parse(
        Format::Syslog,
        "<34>Oct 11 22:14:15 mymachine su[123]: 'su root' failed for lonvick",
    )
    .unwrap_or_default();
    assert_eq!(r.message, "'su root' failed for lonvick");
    assert_eq!(r.level, Some(Level::Critical));
    assert_eq!(field(&r, "app"), Some(&Value::from("su")));
    assert_eq!(field(&r, "pid"), Some(&Value::from(123)));
    let r = parse(
        Format::Syslog,
        "Jun  9 06:06:20 combo kernel: Linux version 2.6.5",
    )
    .unwrap_or_default();
    assert_eq!(r.message, "Linux version 2.6.5");
    let r = parse(
        Format::Syslog,
        r#"<165>1 2003-10-11T22:14:15.003Z host.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="App"] An application event"#,
    )
    .unwrap_or_default();
    assert_eq!(r.message, "An application event");
    assert_eq!(r.level, Some(Level::Notice));
    assert!(r.timestamp.is_some());
    assert!(parse(Format::Syslog, "<999>garbage").is_none());
    assert!(parse(Format::Syslog, "hello world").is_none());
}

#[test]
fn access_logs() {
    let line = r#"10.1.2.3 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif?x=1 HTTP/1.0" 503 2326 "http://example.com/" "curl/8.0""#;
    let r = parse(Format::Access, line).unwrap_or_default();
    assert_eq!(r.message, "GET /apache_pb.gif 503");
    assert_eq!(r.level, Some(Level::Error));
    assert_eq!(field(&r, "status"), Some(&Value::from(503)));
    assert_eq!(field(&r, "user_agent"), Some(&Value::from("curl/8.0")));
    assert_eq!(r.timestamp, civil_to_millis(2000, 10, 10, 20, 55, 36, 0));
}

#[test]
fn klog_lines() {
    let r = parse(
        Format::Klog,
        "E0102 15:04:05.123456   12345 reflector.go:138] failed to list pods",
    )
    .unwrap_or_default();
    assert_eq!(r.message, "failed to list pods");
    assert_eq!(r.level, Some(Level::Error));
    assert_eq!(field(&r, "source"), Some(&Value::from("reflector.go:138")));
    assert!(parse(Format::Klog, "Info something").is_none());
}

#[test]
fn plain_lines() {
    let r = parse(
        Format::Plain,
        "2026-01-02 03:04:05,123 ERROR [main] c.e.Db: connection refused",
    )
    .unwrap_or_default();
    assert_eq!(r.level, Some(Level::Error));
    assert_eq!(r.message, "[main] c.e.Db: connection refused");
    let r = parse(Format::Plain, "2026-01-02T03:04:05Z [main] WARN slow").unwrap_or_default();
    assert_eq!(r.level, Some(Level::Warn));
    assert_eq!(r.message, "[main] slow");
    let r = parse(
        Format::Plain,
        "2026/01/02 03:04:05 [error] 12#0: upstream timed out",
    )
    .unwrap_or_default();
    assert_eq!(r.level, Some(Level::Error));
    assert_eq!(r.message, "12#0: upstream timed out");
    assert!(parse(Format::Plain, "\tat com.example.Foo(Foo.java:1)").is_none());
}

#[test]
fn regex_pattern() {
    let p = Parser::with_pattern(
        r"^(?P<ts>\S+) (?P<level>\w+) (?P<component>\w+): (?P<msg>.*)$",
        2026,
    );
    let p = p.unwrap();
    let mut r = Record::default();
    assert!(p.parse("2026-01-02T03:04:05Z ERROR api: boom", &mut r));
    assert_eq!(r.message, "boom");
    assert_eq!(r.level, Some(Level::Error));
    assert_eq!(r.field("component"), Some(&Value::from("api")));
    assert!(matches!(
        Parser::with_pattern("(?P<x>.*)", 2026),
        Err(PatternError::NoMessage)
    ));
    assert!(Parser::with_pattern("(", 2026).is_err());
}

#[test]
fn detection() {
    let json = [r#"{"msg":"a"}"#, r#"{"msg":"b"}"#];
    assert_eq!(detect(&json, 2026), Format::Json);
    let klog = [
        "I0102 15:04:05.000000 1 a.go:1] x",
        "W0102 15:04:06.000000 1 a.go:2] y",
    ];
    assert_eq!(detect(&klog, 2026), Format::Klog);
    let plain = [
        "2026-01-02 03:04:05 INFO a",
        "\tat x",
        "2026-01-02 03:04:06 ERROR b",
    ];
    assert_eq!(detect(&plain, 2026), Format::Plain);
    let lf = ["level=info msg=a x=1", "level=warn msg=b x=2"];
    assert_eq!(detect(&lf, 2026), Format::Logfmt);
    assert_eq!(
        detect(&["hello there", "general kenobi"], 2026),
        Format::Raw
    );
    let sys = [
        "Jun  9 06:06:20 combo kernel: a",
        "Jun  9 06:06:21 combo sshd[1]: b",
    ];
    assert_eq!(detect(&sys, 2026), Format::Syslog);
}

#[test]
fn continuation_lines() {
    let mut p = Parser::new(Format::Plain, 2026);
    assert!(p.starts_record("2026-01-02 03:04:05 ERROR x"));
    assert!(!p.starts_record("\tat com.example.Foo.bar(Foo.java:12)"));
    assert!(!p.starts_record("Caused by: java.io.IOException"));
    assert!(!p.starts_record("ValueError: bad"));
    let mut raw = Parser::new(Format::Raw, 2026);
    assert!(raw.starts_record("ValueError: bad"));
}

proptest! {
    #[test]
    fn parsers_never_panic(line in "\\PC{0,200}") {
        let mut rec = Record::default();
        for format in Format::DETECTABLE {
            rec.clear();
            let _ = Parser::new(format, 2026).parse(&line, &mut rec);
        }
    }

    #[test]
    fn parsers_never_panic_on_near_misses(
        prefix in prop::sample::select(vec!["<13>", "<165>1 ", "Jan  1 ", "I0101 ", "2026-01-0", "{\"msg\":", "a=\"", "1.2.3.4 - - ["]),
        rest in "[ -~]{0,80}",
    ) {
        let line = format!("{prefix}{rest}");
        let mut rec = Record::default();
        for format in Format::DETECTABLE {
            rec.clear();
            let _ = Parser::new(format, 2026).parse(&line, &mut rec);
        }
    }

    #[test]
    fn logfmt_round_trip(pairs in prop::collection::vec(("[a-z_]{1,8}", "[ -~]{0,12}"), 1..6)) {
        let line: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        let line = line.join(" ");
        let mut seen = Vec::new();
        prop_assert!(logfmt_pairs(&line, |k, v, _| seen.push((k.to_string(), v))));
        let expected: Vec<(String, String)> = pairs.into_iter().collect();
        prop_assert_eq!(seen, expected);
    }
}

#[test]
fn plain_relatives_from_common_loggers() {
    // Android logcat: pid, tid, one-letter level, tag.
    let r = parse(
        Format::Plain,
        "03-17 16:13:38.811  1702  2395 D WindowManager: printFreezingDisplayLogs",
    )
    .unwrap_or_default();
    assert_eq!(r.level, Some(Level::Debug));
    assert_eq!(r.message, "WindowManager: printFreezingDisplayLogs");
    assert_eq!(r.field("pid"), Some(&Value::from(1702)));
    assert_eq!(r.timestamp, civil_to_millis(2026, 3, 17, 16, 13, 38, 811));
    // Apache error log: bracketed ctime, bracketed level.
    let r = parse(
        Format::Plain,
        "[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6",
    )
    .unwrap_or_default();
    assert_eq!(r.level, Some(Level::Error));
    assert_eq!(r.message, "mod_jk child workerEnv in error state 6");
    assert_eq!(r.timestamp, civil_to_millis(2005, 12, 4, 4, 47, 44, 0));
    // log4j yy/MM/dd (Spark) and Hadoop's yyMMdd hhmmss.
    let r = parse(
        Format::Plain,
        "17/06/09 20:10:40 INFO executor.Backend: Registered",
    )
    .unwrap_or_default();
    assert_eq!(r.timestamp, civil_to_millis(2017, 6, 9, 20, 10, 40, 0));
    assert_eq!(r.message, "executor.Backend: Registered");
    let r = parse(
        Format::Plain,
        "081109 203615 148 INFO dfs.DataNode: PacketResponder 1 terminating",
    )
    .unwrap_or_default();
    assert_eq!(r.timestamp, civil_to_millis(2008, 11, 9, 20, 36, 15, 0));
    assert_eq!(r.level, Some(Level::Info));
    // Windows CBS: a comma after the seconds is not a fraction.
    let r = parse(
        Format::Plain,
        "2016-09-28 04:30:30, Info                  CBS    Loaded Servicing Stack",
    )
    .unwrap_or_default();
    assert_eq!(r.level, Some(Level::Info));
    assert_eq!(r.timestamp, civil_to_millis(2016, 9, 28, 4, 30, 30, 0));
    // Python logging's default-ish format.
    let r = parse(
        Format::Plain,
        "2024-01-01 10:00:00,123 - payments - ERROR - charge failed",
    )
    .unwrap_or_default();
    assert_eq!(r.level, Some(Level::Error));
    assert!(r.message.ends_with("charge failed"), "{}", r.message);
    // "I" as a word is not a level.
    let r = parse(Format::Plain, "2024-01-01 10:00:00 I think so").unwrap_or_default();
    assert_eq!(r.level, None);
}

#[test]
fn year_less_times_in_the_future_are_last_year() {
    let now = civil_to_millis(2026, 1, 5, 0, 0, 0, 0).unwrap_or_default();
    let p = Parser::new(Format::Syslog, 2026).roll_back_future(now);
    let mut r = Record::default();
    assert!(p.parse("Dec 30 23:59:59 host app: x", &mut r));
    assert_eq!(r.timestamp, civil_to_millis(2025, 12, 30, 23, 59, 59, 0));
    r.clear();
    assert!(p.parse("Jan  4 10:00:00 host app: x", &mut r));
    assert_eq!(r.timestamp, civil_to_millis(2026, 1, 4, 10, 0, 0, 0));
}

#[test]
fn levels_inferred_from_whole_words() {
    assert_eq!(infer_level("Failed password for root"), Some(Level::Error));
    assert_eq!(
        infer_level("Kernel panic - not syncing"),
        Some(Level::Critical)
    );
    assert_eq!(infer_level("warning: disk 91% full"), Some(Level::Warn));
    assert_eq!(infer_level("errors=0 warnings=0"), None);
    assert_eq!(infer_level("terror in the failedness"), None);
    assert_eq!(infer_level("all good"), None);
}

#[test]
fn postgres_and_cri_lines() {
    let r = parse(
        Format::Plain,
        "2024-01-02 03:04:06.123 UTC [1240] FATAL:  password authentication failed",
    )
    .unwrap_or_default();
    assert_eq!(r.level, Some(Level::Critical));
    assert_eq!(r.message, "password authentication failed");
    assert_eq!(r.field("pid"), Some(&Value::from(1240)));
    let r = parse(
        Format::Plain,
        "2024-01-02 03:04:05.123 UTC [1234] LOG:  ready",
    )
    .unwrap_or_default();
    assert_eq!(r.level, Some(Level::Info));

    let r = parse(
        Format::Plain,
        "2024-01-02T03:04:06.123456789Z stderr F level=error msg=\"connection refused\" peer=db",
    )
    .unwrap_or_default();
    assert_eq!(r.message, "connection refused");
    assert_eq!(r.level, Some(Level::Error));
    assert_eq!(r.field("stream"), Some(&Value::from("stderr")));
    assert_eq!(r.timestamp, civil_to_millis(2024, 1, 2, 3, 4, 6, 123));
    let r = parse(Format::Plain, "2024-01-02T03:04:07.1Z stdout P partial").unwrap_or_default();
    assert!(r.partial);
    assert_eq!(r.message, "partial");
}

#[test]
fn detection_tolerates_stack_traces() {
    let go = [
        "2024-01-02T03:04:05.000Z INFO server started",
        "2024-01-02T03:04:06.000Z ERROR handler failed",
        "panic: assignment to entry in nil map",
        "goroutine 1 [running]:",
        "main.main()",
        "\t/app/main.go:12 +0x1d",
        "exit status 2",
        "2024-01-02T03:04:07.000Z INFO server started",
    ];
    assert_eq!(detect(&go, 2026), Format::Plain);
}

fn ms(y: i64, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    civil_to_millis(y, mo, d, h, mi, 0, 0).unwrap_or_else(|| panic!("bad date"))
}

fn time_at(p: &Parser, line: &str) -> Option<i64> {
    let mut r = Record::default();
    p.parse(line, &mut r).then_some(r.timestamp).flatten()
}

#[test]
fn the_year_follows_the_arrival_time_not_the_start() {
    // Started mid-June 2026; the parser's year was fixed then, and two days later "today"
    // went a year back.
    let start = ms(2026, 6, 15, 12, 0);
    let mut p = Parser::new(Format::Syslog, 2026).roll_back_future(start);
    assert_eq!(
        time_at(&p, "Jun 15 11:00:00 host app: x"),
        Some(ms(2026, 6, 15, 11, 0))
    );
    p.set_now(start + 3 * 86_400_000);
    assert_eq!(
        time_at(&p, "Jun 18 11:00:00 host app: x"),
        Some(ms(2026, 6, 18, 11, 0))
    );
    p.set_now(start + 400 * 86_400_000);
    assert_eq!(
        time_at(&p, "Jul 20 11:00:00 host app: x"),
        Some(ms(2027, 7, 20, 11, 0)),
        "400 days on: the clock's year"
    );
    // klog and logcat decide the same way.
    let mut k = Parser::new(Format::Klog, 2026);
    k.set_now(start + 400 * 86_400_000);
    assert_eq!(
        time_at(&k, "I0720 11:00:00.000000 1 a.go:1] x"),
        Some(ms(2027, 7, 20, 11, 0))
    );
}

#[test]
fn year_less_times_across_new_year() {
    let mut p = Parser::new(Format::Syslog, 1970);
    p.set_now(ms(2027, 1, 1, 0, 5));
    assert_eq!(
        time_at(&p, "Jan  1 00:01:00 host app: x"),
        Some(ms(2027, 1, 1, 0, 1))
    );
    assert_eq!(
        time_at(&p, "Dec 31 23:59:00 host app: x"),
        Some(ms(2026, 12, 31, 23, 59))
    );
    // Two days ahead is still this year; more is last year.
    assert_eq!(
        time_at(&p, "Jan  3 00:04:00 host app: x"),
        Some(ms(2027, 1, 3, 0, 4))
    );
    assert_eq!(
        time_at(&p, "Jan  3 00:06:00 host app: x"),
        Some(ms(2026, 1, 3, 0, 6))
    );
    // Just before New Year, a writer whose clock is ahead is not eleven months back.
    p.set_now(ms(2026, 12, 31, 23, 59));
    assert_eq!(
        time_at(&p, "Jan  1 00:01:00 host app: x"),
        Some(ms(2027, 1, 1, 0, 1))
    );
    assert_eq!(
        time_at(&p, "Dec 31 23:58:00 host app: x"),
        Some(ms(2026, 12, 31, 23, 58))
    );
    // Without an arrival time the given year is kept as it is.
    let fixed = Parser::new(Format::Syslog, 2026);
    assert_eq!(
        time_at(&fixed, "Dec 31 23:59:00 host app: x"),
        Some(ms(2026, 12, 31, 23, 59))
    );
}

#[test]
fn february_29_and_impossible_dates() {
    let mut p = Parser::new(Format::Syslog, 2025);
    assert_eq!(
        time_at(&p, "Feb 29 10:00:00 host app: x"),
        None,
        "2025 has none"
    );
    p.set_now(ms(2025, 1, 10, 0, 0));
    assert_eq!(
        time_at(&p, "Feb 29 10:00:00 host app: x"),
        Some(ms(2024, 2, 29, 10, 0)),
        "the last Feb 29 before now"
    );
    p.set_now(ms(2026, 3, 1, 0, 0));
    assert_eq!(time_at(&p, "Feb 29 10:00:00 host app: x"), None);
    // Days the month does not have do not parse, in any format, and do not roll over.
    for (format, line) in [
        (Format::Syslog, "Feb 30 10:00:00 host app: x"),
        (Format::Syslog, "Apr 31 10:00:00 host app: x"),
        (
            Format::Syslog,
            "<13>1 2025-02-30T10:00:00Z host app - - - x",
        ),
        (Format::Klog, "I0230 10:00:00.000000 1 a.go:1] x"),
        (Format::Plain, "2025-02-30 10:00:00 INFO x"),
        (Format::Plain, "2025/04/31 10:00:00 [error] x"),
        (Format::Plain, "04-31 10:00:00.000  1 2 D Tag: x"),
        (Format::Plain, "[Sun Feb 30 04:47:44 2025] [error] x"),
        (
            Format::Access,
            r#"1.2.3.4 - - [31/Apr/2025:10:00:00 +0000] "GET / HTTP/1.1" 200 1"#,
        ),
    ] {
        assert!(parse(format, line).is_none(), "{line}");
    }
    // A leap day in ctime, read before through 1970, which has none.
    let r = parse(Format::Plain, "[Thu Feb 29 04:47:44 2024] [error] x").unwrap_or_default();
    assert_eq!(r.timestamp, civil_to_millis(2024, 2, 29, 4, 47, 44, 0));
}
