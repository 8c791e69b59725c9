//! Defects found in the agent by reading it and by fuzzing it, each driven black-box through
//! the binary: the API's protection and errors, stream framing, quiet sources under load,
//! unreadable checkpoints, connection limits, secrets, and what `config check` loads.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use opsloop_bus::testing::free_port;
use serde_json::Value;

use crate::run::{
    Agent, append, http, metric, start_agent, stop_agent, stored_events, syslog_agent, wait_for,
};

fn write_config(dir: &Path, api: u16, body: &str) -> std::path::PathBuf {
    let config = dir.join("opsloop.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{api}\ndata_dir: {}\n{body}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    config
}

/// Sends one syslog line over UDP that the built-in `oom-kill` rule matches.
fn send_oom_line(syslog: u16) {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(
        b"<3>Nov 20 10:00:00 web kernel: Out of memory: Killed process 42 (java)",
        ("127.0.0.1", syslog),
    )
    .unwrap();
}

/// Waits until a `rule_matched` event of `rule` is stored.
fn wait_for_rule_event(api: u16, rule: &str) {
    wait_for("the rule event", || {
        stored_events(api, "type=io.opsloop.log.rule_matched")
            .iter()
            .any(|e| e["subject"] == rule)
            .then_some(())
    });
}

fn ready(api: u16) {
    wait_for("readiness", || {
        (http(api, "GET", "/readyz", "", None).0 == 200).then_some(())
    });
}

#[test]
fn with_a_token_reads_need_it_too_and_rules_are_listed_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, api, _) = syslog_agent(dir.path(), "api:\n  token: s3cret\n");
    for path in ["/api/v1/events", "/api/v1/templates", "/api/v1/rules"] {
        let (status, body) = http(api, "GET", path, "", None);
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("\"error\""), "{path}: {body}");
        assert_eq!(http(api, "GET", path, "", Some("wrong")).0, 401, "{path}");
        assert_eq!(http(api, "GET", path, "", Some("s3cret")).0, 200, "{path}");
    }
    assert_eq!(http(api, "GET", "/healthz", "", None).0, 200);
    assert_eq!(http(api, "GET", "/metrics", "", None).0, 200);
    // Rules are known at start: listed at once, not after the first save.
    let (_, rules) = http(api, "GET", "/api/v1/rules", "", Some("s3cret"));
    let rules: Value = serde_json::from_str(&rules).unwrap();
    let listed = rules["rules"].as_array().map_or(0, Vec::len);
    assert!(listed > 5, "{rules}");
    stop_agent(&mut agent);
}

#[test]
fn metrics_can_be_protected_and_query_errors_are_json() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, api, _) = syslog_agent(
        dir.path(),
        "api:\n  token: s3cret\n  protect_metrics: true\n",
    );
    assert_eq!(http(api, "GET", "/metrics", "", None).0, 401);
    assert_eq!(http(api, "GET", "/metrics", "", Some("s3cret")).0, 200);
    for query in [
        "limit=abc",
        "limit=-1",
        "limit=1e3",
        "cursor=-1",
        "since=2026-02-30T00:00:00Z",
    ] {
        let (status, body) = http(
            api,
            "GET",
            &format!("/api/v1/events?{query}"),
            "",
            Some("s3cret"),
        );
        assert_eq!(status, 400, "{query}: {body}");
        let doc: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{query}: {e}: {body}"));
        assert!(doc["error"]["message"].is_string(), "{query}: {body}");
    }
    stop_agent(&mut agent);
}

/// A busy source must not hold back a quiet one's last multi-line record: each source is
/// flushed on its own idle time.
#[test]
fn a_quiet_sources_last_record_is_flushed_while_another_source_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let (busy, quiet) = (dir.path().join("busy.log"), dir.path().join("quiet.log"));
    std::fs::write(&busy, "2026-11-20 10:00:00 INFO start\n").unwrap();
    std::fs::write(&quiet, "2026-11-20 10:00:00 INFO start\n").unwrap();
    let config = write_config(
        dir.path(),
        api,
        &format!(
            "sources:\n  - type: file\n    name: busy\n    include: [{}]\n    start_at: beginning\n  - type: file\n    name: quiet\n    include: [{}]\n    start_at: beginning\n    multiline: on\n",
            busy.display(),
            quiet.display()
        ),
    );
    let mut agent = start_agent(&config);
    ready(api);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, busy) = (std::sync::Arc::clone(&stop), busy.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&busy)
                .unwrap();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = writeln!(f, "2026-11-20 10:00:01 INFO request {i} served in 3 ms");
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    // A record with a continuation line, then silence on this source.
    append(
        &quiet,
        "2026-11-20 10:00:02 ERROR write /data/x: no space left on device\n    at io.write(File.java:12)\n",
    );
    wait_for(
        "the quiet source's record while the busy one writes",
        || {
            stored_events(api, "type=io.opsloop.log.rule_matched")
                .iter()
                .any(|e| e["subject"] == "disk-full" && e["data"]["input"] == "quiet")
                .then_some(())
        },
    );
    assert!(!writer.is_finished(), "the busy source was still writing");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    stop_agent(&mut agent);
}

#[test]
fn tcp_frames_over_the_limit_are_cut_kept_and_counted_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (api, port) = (free_port(), free_port());
    let config = write_config(
        dir.path(),
        api,
        &format!(
            "sources:\n  - type: syslog\n    name: syslog\n    udp: 127.0.0.1:{port}\n    tcp: 127.0.0.1:{port}\n    max_line_bytes: 1024\n    max_connections: 2\n"
        ),
    );
    let mut agent = start_agent(&config);
    ready(api);
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let long = format!(
        "<3>Nov 20 10:00:00 web app: Out of memory: Killed process 1 (java) {}",
        "x".repeat(5000)
    );
    let next = "<3>Nov 20 10:00:01 web app: accept4: too many open files";
    let newline_long = format!("<3>Nov 20 10:00:02 web app: {}\n", "y".repeat(3000));
    let payload = format!("{} {long}{} {next}{newline_long}", long.len(), next.len());
    tcp.write_all(payload.as_bytes()).unwrap();
    wait_for("both frames after the long one", || {
        let hits: Vec<Value> = stored_events(api, "type=io.opsloop.log.rule_matched");
        let subjects: Vec<&str> = hits.iter().filter_map(|e| e["subject"].as_str()).collect();
        (subjects.contains(&"oom-kill") && subjects.contains(&"too-many-open-files")).then_some(())
    });
    wait_for("cut lines counted", || {
        (metric(api, "opsloop_log_lines_cut_total{source=\"syslog\"}") == Some(2)).then_some(())
    });
    wait_for("a cut_lines input problem", || {
        stored_events(api, "type=io.opsloop.log.input_problem")
            .iter()
            .any(|e| e["data"]["kind"] == "cut_lines")
            .then_some(())
    });
    // Over the connection limit: refused and counted; the ones inside keep working.
    let _second = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _third = TcpStream::connect(("127.0.0.1", port)).unwrap();
    wait_for("a refused connection", || {
        (metric(
            api,
            "opsloop_syslog_tcp_connections_refused_total{source=\"syslog\"}",
        ) >= Some(1))
        .then_some(())
    });
    // Empty, blank and NUL-only datagrams are lines read and processed alike.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in [&b""[..], b"   ", b"\0\0\0", b"\n"] {
        udp.send_to(d, ("127.0.0.1", port)).unwrap();
    }
    wait_for("read and processed agree", || {
        let read = metric(api, "opsloop_log_lines_read_total{source=\"syslog\"}")?;
        let processed = metric(api, "opsloop_log_lines_processed_total{source=\"syslog\"}")?;
        (read >= 7 && read == processed).then_some(())
    });
    drop(tcp);
    stop_agent(&mut agent);
}

/// Injected failure: another process holds the store's write lock, so events cannot be
/// stored. The publisher keeps retrying (nothing is skipped) and the agent says it is not
/// ready until the lock is gone; then the event is stored and it is ready again.
#[test]
fn a_store_that_refuses_writes_turns_readiness_off_until_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, api, syslog) = syslog_agent(dir.path(), "");
    let db = rusqlite::Connection::open(dir.path().join("data").join("opsloop.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    send_oom_line(syslog);
    wait_for("not ready while events cannot be stored", || {
        (http(api, "GET", "/readyz", "", None).0 == 503).then_some(())
    });
    assert!(metric(api, "opsloop_events_publish_failures_total") >= Some(1));
    db.execute_batch("ROLLBACK").unwrap();
    wait_for("ready again", || {
        (http(api, "GET", "/readyz", "", None).0 == 200).then_some(())
    });
    wait_for_rule_event(api, "oom-kill");
    stop_agent(&mut agent);
}

/// A source restarted by a reload must not drop the record its last run still held (the
/// last line of a source is held until the next line or an idle flush).
#[test]
fn a_reload_that_restarts_a_source_keeps_the_record_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, api, syslog) = syslog_agent(dir.path(), "");
    let config = dir.path().join("opsloop.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    send_oom_line(syslog);
    wait_for("the line processed", || {
        (metric(api, "opsloop_log_lines_processed_total{source=\"syslog\"}") == Some(1))
            .then_some(())
    });
    // Restart the source at once: a changed setting, then SIGHUP.
    std::fs::write(&config, format!("{text}    max_line_bytes: 4096\n")).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &agent.0.id().to_string()])
        .status();
    wait_for("the reload", || {
        (metric(api, "opsloop_config_reloads_total") >= Some(1)).then_some(())
    });
    wait_for_rule_event(api, "oom-kill");
    stop_agent(&mut agent);
}

#[test]
fn an_unreadable_checkpoint_is_reported_and_the_files_read_again_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let log = dir.path().join("app.log");
    std::fs::write(
        &log,
        "2026-11-20 10:00:00 ERROR write /data/x: no space left on device\n",
    )
    .unwrap();
    {
        let mut store = opsloop_store::Store::open(&dir.path().join("data")).unwrap();
        store.put_checkpoint("tail:app", "{not json", 0).unwrap();
    }
    let config = write_config(
        dir.path(),
        api,
        &format!(
            "sources:\n  - type: file\n    name: app\n    include: [{}]\n    start_at: end\n",
            log.display()
        ),
    );
    let mut agent = start_agent(&config);
    ready(api);
    wait_for("the line before the start, read again", || {
        stored_events(api, "type=io.opsloop.log.rule_matched")
            .iter()
            .any(|e| e["subject"] == "disk-full")
            .then_some(())
    });
    let problems = stored_events(api, "type=io.opsloop.log.input_problem");
    assert!(
        problems
            .iter()
            .any(|e| e["data"]["kind"] == "checkpoint_unreadable"),
        "{problems:?}"
    );
    assert_eq!(
        metric(api, "opsloop_checkpoint_errors_total{source=\"app\"}"),
        Some(1)
    );
    stop_agent(&mut agent);
}

#[test]
fn secrets_are_redacted_before_they_are_stored_and_events_name_the_real_host() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let config = write_config(dir.path(), api, "");
    let mut agent = Agent(
        std::process::Command::new(env!("CARGO_BIN_EXE_opsloop"))
            .args(["run", "--config", config.to_str().unwrap()])
            .env_remove("HOSTNAME")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    ready(api);
    let body = r#"{"message":"login failed for admin password=hunter2: connection refused","level":"error"}"#;
    assert_eq!(http(api, "POST", "/api/v1/logs", body, None).0, 202);
    let events = wait_for("the rule event", || {
        let e = stored_events(api, "type=io.opsloop.log.rule_matched");
        (!e.is_empty()).then_some(e)
    });
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("password=<redacted>"), "{text}");
    let (_, templates) = http(api, "GET", "/api/v1/templates", "", None);
    assert!(!templates.contains("hunter2"), "{templates}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if !host.is_empty() {
        assert_eq!(events[0]["source"], format!("/opsloop/agent/{host}"));
    }
    stop_agent(&mut agent);
}

#[test]
fn human_logs_written_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let config = write_config(dir.path(), api, "");
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let mut agent = Agent(
        std::process::Command::new(env!("CARGO_BIN_EXE_opsloop"))
            .args(["run", "--config", config.to_str().unwrap()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    ready(api);
    stop_agent(&mut agent);
    let text = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    assert!(text.contains("API listening"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
}

#[test]
fn config_check_loads_the_rule_files_run_would_load() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - id: bad\n    severity: bogus\n    match:\n      regex: \"(\"\n",
    )
    .unwrap();
    let config = dir.path().join("opsloop.yaml");
    std::fs::write(&config, format!("rules:\n  paths: [{}]\n", rules.display())).unwrap();
    let out = crate::run(&[
        "config",
        "check",
        config.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["valid"], false);
    let errors = doc["errors"].to_string();
    assert!(errors.contains("rules.yaml"), "{errors}");
    // A condition so long it would overflow the stack is refused by check, not by a crash.
    let long = format!(
        "rules:\n  - id: deep\n    severity: error\n    match:\n      regex: x\n      condition: \"fields.status{} > 1\"\n",
        " + 1".repeat(6000)
    );
    std::fs::write(&rules, long).unwrap();
    let out = crate::run(&["config", "check", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // And the durations that used to wrap are refused with their path.
    std::fs::write(
        &config,
        "store:\n  retention:\n    max_age: 213503982335d\n",
    )
    .unwrap();
    let out = crate::run(&["config", "check", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("store.retention.max_age"),
        "{out:?}"
    );
}
