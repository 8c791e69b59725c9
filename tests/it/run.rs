//! `opsloop run` end to end: a real agent on loopback ports, fed over syslog UDP and TCP and
//! HTTP, queried over its API, stopped with SIGTERM.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use opsloop_bus::testing::free_port;

/// Kills the agent if a test fails before stopping it.
pub(crate) struct Agent(pub(crate) Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

pub(crate) fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// Starts an agent with a syslog source (UDP and TCP) on free ports and waits until it is
/// ready; `extra` is more top-level YAML. Returns the agent, the API port and the syslog port.
pub(crate) fn syslog_agent(dir: &std::path::Path, extra: &str) -> (Agent, u16, u16) {
    let (api, syslog) = (free_port(), free_port());
    let config = dir.join("opsloop.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{api}\ndata_dir: {}\n{extra}sources:\n  - type: syslog\n    name: syslog\n    udp: 127.0.0.1:{syslog}\n    tcp: 127.0.0.1:{syslog}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let agent = start_agent(&config);
    wait_for("readiness", || {
        (http(api, "GET", "/readyz", "", None).0 == 200).then_some(())
    });
    (agent, api, syslog)
}

#[test]
fn agent_turns_syslog_and_http_logs_into_events() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, api, syslog) = syslog_agent(dir.path(), "api:\n  token: t0ken\n");

    // UDP, TCP with octet counting and with newlines, and HTTP ingest.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let oom = b"<3>Nov 20 10:00:00 web kernel: Out of memory: Killed process 42 (java)";
    udp.send_to(oom, ("127.0.0.1", syslog)).unwrap();
    let mut tcp = TcpStream::connect(("127.0.0.1", syslog)).unwrap();
    let framed = "<3>1 2026-11-20T10:00:01Z web app - - - dial tcp: lookup db: no such host";
    let payload = format!(
        "{} {framed}<3>Nov 20 10:00:02 web app: accept4: too many open files\n",
        framed.len()
    );
    tcp.write_all(payload.as_bytes()).unwrap();
    drop(tcp);
    let body = r#"{"message":"x509: certificate has expired","level":"error"}"#;
    assert_eq!(
        http(api, "POST", "/api/v1/logs", body, None).0,
        401,
        "the token is required"
    );
    assert_eq!(
        http(api, "POST", "/api/v1/logs", body, Some("t0ken")).0,
        202
    );
    // A body declared over the limit is refused before it is sent.
    let mut big = TcpStream::connect(("127.0.0.1", api)).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        big,
        "POST /api/v1/logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0ken\r\nContent-Length: {}\r\n\r\n",
        11 << 20
    )
    .unwrap();
    let mut head = [0u8; 12];
    big.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
    drop(big);

    let subjects = wait_for("four rule events", || {
        let (status, body) = http(
            api,
            "GET",
            "/api/v1/events?type=io.opsloop.log.rule_matched",
            "",
            Some("t0ken"),
        );
        let v: Value = serde_json::from_str(&body).ok()?;
        let mut subjects: Vec<String> = v["events"]
            .as_array()?
            .iter()
            .filter_map(|e| e["subject"].as_str().map(str::to_string))
            .collect();
        subjects.sort();
        (status == 200 && subjects.len() == 4).then_some(subjects)
    });
    assert_eq!(
        subjects,
        [
            "dns-failure",
            "oom-kill",
            "tls-error",
            "too-many-open-files"
        ]
    );
    let (_, metrics) = http(api, "GET", "/metrics", "", None);
    assert!(
        metrics.contains("opsloop_log_lines_read_total{source=\"syslog\"} 3"),
        "{metrics}"
    );
    // Records posted to the API count under one label, whatever source they name.
    assert!(
        metrics.contains("opsloop_log_lines_read_total{source=\"http\"} 1")
            && metrics.contains("opsloop_log_lines_processed_total{source=\"http\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("opsloop_events_published_total 4"),
        "{metrics}"
    );

    // SIGTERM: drain and exit 0 in bounded time.
    stop_agent(&mut agent);
}

#[test]
fn refuses_non_loopback_without_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_opsloop"))
        .args([
            "run",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
            dir.path().to_str().unwrap_or(""),
        ])
        .env_remove("OPSLOOP_API_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without an API token"));
}

pub(crate) fn start_agent(config: &std::path::Path) -> Agent {
    let child = Command::new(env!("CARGO_BIN_EXE_opsloop"))
        .args(["run", "--config", config.to_str().unwrap_or("")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Agent(child)
}

pub(crate) fn stop_agent(agent: &mut Agent) {
    let _ = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if let Ok(Some(status)) = agent.0.try_wait() {
            assert_eq!(status.code(), Some(0));
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("agent did not stop");
}

fn rule_subjects(api: u16) -> Option<Vec<String>> {
    let (status, body) = http(
        api,
        "GET",
        "/api/v1/events?type=io.opsloop.log.rule_matched&limit=1000",
        "",
        None,
    );
    let v: Value = serde_json::from_str(&body).ok()?;
    let mut s: Vec<String> = v["events"]
        .as_array()?
        .iter()
        .filter_map(|e| e["subject"].as_str().map(str::to_string))
        .collect();
    s.sort();
    (status == 200).then_some(s)
}

pub(crate) fn append(path: &std::path::Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn agent_tails_files_through_rotation_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("app.log");
    append(
        &log,
        "2026-11-20 10:00:00 ERROR Out of memory: Killed process 7 (java)\n",
    );
    let api = free_port();
    let config = dir.path().join("opsloop.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{api}\ndata_dir: {}\nsources:\n  - type: file\n    name: app\n    include: [\"{}/*.log\"]\n    start_at: beginning\n",
            dir.path().join("data").display(),
            logs.display()
        ),
    )
    .unwrap();
    let mut agent = start_agent(&config);
    wait_for("readiness", || {
        (http(api, "GET", "/readyz", "", None).0 == 200).then_some(())
    });
    append(
        &log,
        "2026-11-20 10:00:01 ERROR write /data/x: no space left on device\n",
    );
    wait_for("both lines read before the rotation", || {
        (metric(api, "opsloop_log_lines_read_total{source=\"app\"}")? >= 2).then_some(())
    });
    std::fs::rename(&log, logs.join("app.log.1")).unwrap();
    append(
        &log,
        "2026-11-20 10:00:02 ERROR accept4: too many open files\n",
    );
    let want = ["disk-full", "oom-kill", "too-many-open-files"];
    wait_for("three rule events from the file", || {
        rule_subjects(api).filter(|s| s == &want)
    });
    stop_agent(&mut agent);

    // Restart: positions come back from the store, nothing is read twice.
    append(
        &log,
        "2026-11-20 10:00:03 ERROR dial tcp 10.0.0.1:5432: connect: connection refused\n",
    );
    let mut agent = start_agent(&config);
    let want = [
        "connection-refused",
        "disk-full",
        "oom-kill",
        "too-many-open-files",
    ];
    wait_for("the line written while stopped, once", || {
        rule_subjects(api).filter(|s| s == &want)
    });
    // Settled: the one line read since the restart is processed and its event stored; a
    // line read again would show in the count and as a duplicate.
    wait_for("lines read are processed", || {
        let read = metric(api, "opsloop_log_lines_read_total{source=\"app\"}")?;
        let processed = metric(api, "opsloop_log_lines_processed_total{source=\"app\"}")?;
        (read == processed).then_some(())
    });
    assert_eq!(
        metric(api, "opsloop_log_lines_read_total{source=\"app\"}"),
        Some(1),
        "only the line written while stopped is read"
    );
    assert_eq!(
        rule_subjects(api).unwrap_or_default(),
        want,
        "no duplicates"
    );
    stop_agent(&mut agent);
}

pub(crate) fn metric(api: u16, name: &str) -> Option<u64> {
    let (_, text) = http(api, "GET", "/metrics", "", None);
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn reload_swaps_rules_and_keeps_the_last_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let (api, syslog) = (free_port(), free_port());
    let rules = dir.path().join("rules.yaml");
    let rule = |word: &str| {
        format!(
            "rules:\n  - id: custom-{word}\n    severity: warning\n    match: {{keywords: [{word}]}}\n"
        )
    };
    std::fs::write(&rules, rule("alpha")).unwrap();
    let config = dir.path().join("opsloop.yaml");
    let good = format!(
        "listen: 127.0.0.1:{api}\ndata_dir: {}\nrules:\n  builtin: false\n  paths: [\"{}\"]\nsources:\n  - type: syslog\n    name: syslog\n    udp: 127.0.0.1:{syslog}\n",
        dir.path().join("data").display(),
        rules.display()
    );
    std::fs::write(&config, &good).unwrap();
    let mut agent = start_agent(&config);
    wait_for("readiness", || {
        (http(api, "GET", "/readyz", "", None).0 == 200).then_some(())
    });
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |word: &str| {
        let line = format!("<14>Nov 20 10:00:00 web app: {word} happened");
        udp.send_to(line.as_bytes(), ("127.0.0.1", syslog)).unwrap();
    };
    send("alpha");
    wait_for("custom-alpha", || {
        rule_subjects(api).filter(|s| s == &["custom-alpha"])
    });

    // A good reload: the new rule applies, the old one is gone.
    std::fs::write(&rules, rule("beta")).unwrap();
    let pid = agent.0.id().to_string();
    let _ = Command::new("kill").args(["-HUP", &pid]).status();
    wait_for("one reload", || {
        (metric(api, "opsloop_config_reloads_total") == Some(1)).then_some(())
    });
    send("alpha");
    send("beta");
    wait_for("custom-beta", || {
        rule_subjects(api).filter(|s| s == &["custom-alpha", "custom-beta"])
    });

    // A bad reload: counted, reported as an event, the agent keeps its configuration.
    std::fs::write(&config, "listen: [not, an, address]\n").unwrap();
    let _ = Command::new("kill").args(["-HUP", &pid]).status();
    wait_for("a rejected reload", || {
        (metric(api, "opsloop_config_reload_failures_total") >= Some(1)).then_some(())
    });
    // The event reaches the store through the bus, after the counter moved.
    wait_for("the reload_failed event", || {
        let (_, body) = http(
            api,
            "GET",
            "/api/v1/events?type=io.opsloop.config.reload_failed",
            "",
            None,
        );
        body.contains("reload_failed").then_some(())
    });
    send("beta");
    wait_for("rules still in force", || {
        rule_subjects(api).filter(|s| s == &["custom-alpha", "custom-beta", "custom-beta"])
    });
    stop_agent(&mut agent);
}

#[test]
fn malformed_frames_and_bad_bytes_leave_the_agent_unharmed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, api, syslog) = syslog_agent(dir.path(), "");
    // An absurd octet count, garbage, invalid UTF-8 and NUL bytes, over TCP and UDP.
    for payload in [
        &b"999999999999 <13>x"[..],
        b"12 <13>short",
        b"\xff\xfe\x00\x01 garbage\n",
        b"<999>not a pri\n",
    ] {
        if let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", syslog)) {
            let _ = tcp.write_all(payload);
        }
    }
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"\xff\xfe\xfd\x00", ("127.0.0.1", syslog))
        .unwrap();
    udp.send_to(&vec![b'A'; 60_000], ("127.0.0.1", syslog))
        .unwrap();
    // Still serving, and still processing good input.
    let oom = b"<3>Nov 20 10:00:00 web kernel: Out of memory: Killed process 42 (java)";
    udp.send_to(oom, ("127.0.0.1", syslog)).unwrap();
    wait_for("the good line after the bad ones", || {
        rule_subjects(api).filter(|s| s.contains(&"oom-kill".to_string()))
    });
    assert!(
        metric(api, "opsloop_log_parse_errors_total").is_some(),
        "unparsable lines are counted"
    );
    // ... and reported as an event naming the source (one a minute, with a count).
    let problems = wait_for("an input problem event", || {
        let events = stored_events(api, "type=io.opsloop.log.input_problem");
        (!events.is_empty()).then_some(events)
    });
    assert_eq!(problems[0]["subject"], "syslog");
    assert!(problems[0]["data"]["count"].as_u64() >= Some(1));
    // The kernel dropped nothing, and says so; every line read went through the pipeline.
    assert_eq!(
        metric(api, "opsloop_syslog_udp_drops_total{source=\"syslog\"}"),
        Some(0)
    );
    wait_for("every line read processed", || {
        let read = metric(api, "opsloop_log_lines_read_total{source=\"syslog\"}")?;
        (metric(api, "opsloop_log_lines_processed_total{source=\"syslog\"}") == Some(read))
            .then_some(())
    });
    stop_agent(&mut agent);
}

/// Every stored event matching `query` (`type=...&...`), through the API's cursor pages.
pub(crate) fn stored_events(api: u16, query: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, body) = http(
            api,
            "GET",
            &format!("/api/v1/events?limit=1000&{query}{cursor}"),
            "",
            None,
        );
        assert_eq!(status, 200, "{body}");
        let mut v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        if let Some(page) = v["events"].as_array_mut() {
            events.append(page);
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    events
}

/// Every event id in the agent's store, sorted.
fn stored_event_ids(api: u16) -> Vec<String> {
    let mut ids: Vec<String> = stored_events(api, "")
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

fn send_tcp_lines(port: u16, lines: impl Iterator<Item = String>) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    for line in lines {
        tcp.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
}

fn oom_lines(from: usize, n: usize) -> impl Iterator<Item = String> {
    (from..from + n)
        .map(|i| format!("<3>Nov 20 10:00:00 web kernel: Out of memory: Killed process {i} (java)"))
}

#[test]
fn jetstream_bus_gets_every_event_across_nats_and_agent_restarts() {
    use opsloop_bus::jetstream::{JetStreamBus, JetStreamOptions};
    use opsloop_bus::{EventBus, Subscription};

    let dir = tempfile::tempdir().unwrap();
    let mut nats = opsloop_bus::testing::NatsServer::start(&dir.path().join("nats"));
    let bus_yaml = format!(
        "bus:\n  type: nats\n  nats:\n    url: {}\n    stream: AGENT_EVENTS\n",
        nats.url()
    );
    let (mut agent, api, syslog) = syslog_agent(dir.path(), &bus_yaml);
    let forwarded_all = |want: usize| {
        wait_for("all events stored and forwarded", || {
            let ids = stored_event_ids(api);
            (ids.len() >= want && metric(api, "opsloop_bus_lag_events") == Some(0)).then_some(ids)
        })
    };

    send_tcp_lines(syslog, oom_lines(0, 40));
    forwarded_all(40);

    // NATS goes away while logs keep coming: events wait in the outbox.
    nats.kill();
    send_tcp_lines(syslog, oom_lines(40, 40));
    wait_for("events stored while NATS is down", || {
        (stored_event_ids(api).len() >= 80).then_some(())
    });
    nats.restart();
    forwarded_all(80);

    // The agent restarts (same data directory, same config).
    stop_agent(&mut agent);
    let mut agent = start_agent(&dir.path().join("opsloop.yaml"));
    wait_for("readiness", || {
        (http(api, "GET", "/readyz", "", None).0 == 200).then_some(())
    });
    send_tcp_lines(syslog, oom_lines(80, 20));
    let stored = forwarded_all(100);
    stop_agent(&mut agent);

    // The stream holds exactly the agent's events, each once.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let streamed = runtime.block_on(async {
        let bus = JetStreamBus::connect(&JetStreamOptions::new(nats.url(), "AGENT_EVENTS"))
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let mut sub = bus.subscribe("check").await.unwrap();
        let mut ids = Vec::new();
        while ids.len() < stored.len() {
            let batch = tokio::time::timeout(Duration::from_secs(10), sub.next(1000))
                .await
                .unwrap_or_else(|_| panic!("stream has only {} events", ids.len()))
                .unwrap();
            for d in &batch {
                assert!(d.event.kind.starts_with("io.opsloop."));
                ids.push(d.event.id.clone());
            }
            if let Some(last) = batch.last() {
                sub.ack(last.seq).await.unwrap();
            }
        }
        // Nothing more than that.
        let more = tokio::time::timeout(Duration::from_millis(500), sub.next(10)).await;
        assert!(more.is_err(), "unexpected extra events: {more:?}");
        ids
    });
    let mut streamed = streamed;
    streamed.sort();
    assert_eq!(streamed, stored);
}
