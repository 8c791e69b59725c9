//! Tests of the jobs: configuration checks, episodes and their events, state across restarts,
//! bounds, reloads, scheduling on a manual clock, and runs against a real Prometheus.

use std::time::Duration;

use opsloop_core::time::{ManualClock, civil_to_millis};

use super::*;

const MINUTE: i64 = 60_000;

fn job_json(name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut v = json!({
        "name": name,
        // Nothing listens on port 9 of loopback: runs fail at once.
        "prometheus": "http://127.0.0.1:9",
        "query": "load",
        "step": "1m",
    });
    if let (Some(o), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(extra.clone());
    }
    v
}

fn job(name: &str, extra: serde_json::Value) -> AnomalyJob {
    check(&[job_json(name, extra)]).unwrap().remove(0)
}

fn options(clock: &Arc<ManualClock>, dir: Option<&Path>) -> Options {
    Options {
        state_dir: dir.map(Path::to_path_buf),
        clock: Arc::clone(clock) as Arc<dyn Clock>,
        source: "/opsloop/agent/test".into(),
        metrics: JobMetrics::default(),
        view: AnomalyView::default(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A gentle cycle with a little deterministic noise, spikes of `+height` for 3 points.
fn series(n: usize, start_ms: i64, spikes: &[(usize, f64)]) -> Vec<(i64, f64)> {
    let mut seed = 3u64;
    (0..n)
        .map(|i| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let noise = (seed >> 33) as f64 / f64::from(1u32 << 31) - 0.5;
            let spike: f64 = spikes
                .iter()
                .filter(|(at, _)| (*at..*at + 3).contains(&i))
                .map(|(_, h)| *h)
                .sum();
            let t = start_ms + i as i64 * MINUTE;
            (
                t,
                10.0 + 2.0 * (i as f64 / 20.0).sin() + 0.2 * noise + spike,
            )
        })
        .collect()
}

/// Hands `points` of the series `labels` to job `index` as one answer would.
fn ingest(
    set: &mut JobSet,
    index: usize,
    labels: &BTreeMap<String, String>,
    points: &[(i64, f64)],
) {
    let raw = Series {
        name: series_key(labels),
        labels: labels.clone(),
        points: points.to_vec(),
    };
    set.runners[index].ingest(vec![raw], &set.ctx);
    set.runners[index].publish_stats(&set.ctx);
}

fn of_type<'a>(events: &'a [Event], kind: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.kind == kind).collect()
}

fn seen(set: &JobSet, index: usize, key: &str) -> u64 {
    set.runners[index].state.series[key].detector.seen()
}

fn encode(metrics: &JobMetrics) -> String {
    let mut registry = Registry::with_prefix("opsloop");
    metrics.register(&mut registry);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    out
}

#[test]
fn check_names_the_job_and_field_and_fills_defaults() {
    let jobs = check(&[job_json("a", json!({}))]).unwrap();
    let a = &jobs[0];
    assert_eq!(a.every_ms(), MINUTE);
    assert_eq!(a.threshold, crate::default_threshold());
    assert_eq!(a.lookback_ms(), 600 * MINUTE);
    assert_eq!(a.forget_after_ms(), 60 * MINUTE);
    assert_eq!(a.timeout(), Duration::from_secs(10));
    assert_eq!(a.delay_ms(), MINUTE, "one step");
    assert_eq!(
        job("b", json!({"step": "15s"})).delay_ms(),
        30_000,
        "at least 30s"
    );
    assert_eq!(job("c", json!({"delay": "0s"})).delay_ms(), 0);

    let cases = [
        (
            json!({"stepp": "1m"}),
            "metric_anomalies[1]",
            "unknown field",
        ),
        (json!({"step": "soon"}), "metric_anomalies[1].step", ""),
        (
            json!({"threshold": 1.5}),
            "metric_anomalies[1].threshold",
            "outside",
        ),
        (
            json!({"prometheus": "ftp://x"}),
            "metric_anomalies[1].prometheus",
            "http",
        ),
        (json!({"query": " "}), "metric_anomalies[1].query", "empty"),
        (
            json!({"step": "100ms"}),
            "metric_anomalies[1].step",
            "under 1s",
        ),
        (
            json!({"lookback": "10s"}),
            "metric_anomalies[1].lookback",
            "steps",
        ),
        (
            json!({"delay": "2d"}),
            "metric_anomalies[1].delay",
            "outside",
        ),
        (
            json!({"max_series": 0}),
            "metric_anomalies[1].max_series",
            "outside",
        ),
    ];
    for (extra, path, message) in cases {
        let err = check(&[job_json("ok", json!({})), job_json("b", extra.clone())]).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with(path), "{extra}: {text}");
        assert!(text.contains(message), "{extra}: {text}");
    }
    let err = check(&[job_json("a", json!({})), job_json("a", json!({}))]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("metric_anomalies[1].name: \"a\" is used twice"),
        "{err}"
    );
    let err = check(&[job_json("../x", json!({}))]).unwrap_err();
    assert!(
        err.to_string().starts_with("metric_anomalies[0].name"),
        "{err}"
    );
}

#[test]
fn one_event_per_episode_and_a_resolved_event_when_it_ends() {
    let clock = Arc::new(ManualClock::new(0));
    let opts = options(&clock, None);
    let metrics = opts.metrics.clone();
    let mut set = JobSet::new(vec![job("load", json!({}))], opts);
    let l = labels(&[("__name__", "load"), ("instance", "a"), ("job", "node")]);
    let start = 1_700_000_000_000 - 1_700_000_000_000 % MINUTE;
    let points = series(700, start, &[(400, 50.0), (560, 120.0)]);
    // As runs would hand them over: a few points at a time.
    for chunk in points.chunks(7) {
        ingest(&mut set, 0, &l, chunk);
    }
    let events = set.take_events();
    let anomalies = of_type(&events, ANOMALY);
    let resolved = of_type(&events, ANOMALY_RESOLVED);
    assert_eq!(anomalies.len(), 2, "{anomalies:#?}");
    assert_eq!(resolved.len(), 2, "{resolved:#?}");
    let key = "load{instance=\"a\",job=\"node\"}";
    let first = anomalies[0];
    assert_eq!(first.subject.as_deref(), Some(key));
    assert_eq!(first.source, "/opsloop/agent/test/metric-anomalies/load");
    assert_eq!(first.data["start_ms"], points[400].0);
    assert_eq!(first.data["start"], format_rfc3339(points[400].0));
    assert_eq!(first.data["value"], points[400].1);
    assert_eq!(first.data["labels"]["instance"], "a");
    assert!(first.data["score"].as_f64().unwrap() >= crate::default_threshold());
    assert_eq!(anomalies[1].data["start_ms"], points[560].0);
    // Each end follows its start and names the same episode.
    assert_eq!(resolved[0].data["episode"], first.id.as_str());
    assert_eq!(resolved[0].fingerprint, {
        let again = Event::new(ANOMALY_RESOLVED, &first.source, Some(key), 0, json!({}))
            .with_fingerprint_key(&format!("load/{}", points[400].0));
        again.fingerprint
    });
    assert_eq!(resolved[0].data["reason"], "scores_below_threshold");
    let end = resolved[0].time.as_str();
    assert!(end > first.time.as_str() && end < anomalies[1].time.as_str());

    let episodes = set.view().episodes();
    assert_eq!(episodes.len(), 2);
    assert_eq!(episodes[0].start_ms, points[560].0, "most recent first");
    assert!(episodes.iter().all(|e| !e.open));
    let listed = set.view().list(&BTreeMap::new());
    assert_eq!(listed["episodes"][1]["id"], first.id.as_str());
    assert_eq!(listed["jobs"][0]["series"], 1);
    assert_eq!(set.view().get(&first.id).unwrap()["series"], key);
    // The gauge carries the job and the series' labels (its `job` renamed).
    let text = encode(&metrics);
    assert!(
        text.contains("opsloop_metric_anomaly_score{job=\"load\",metric_name=\"load\",instance=\"a\",exported_job=\"node\"}"),
        "{text}"
    );
}

#[test]
fn a_restart_continues_scoring_from_the_saved_state() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(0));
    let l = labels(&[("__name__", "load"), ("instance", "a")]);
    let key = series_key(&l);
    let points = series(700, 0, &[(400, 50.0), (560, 120.0)]);

    let mut whole = JobSet::new(vec![job("load", json!({}))], options(&clock, None));
    ingest(&mut whole, 0, &l, &points);
    let expected: Vec<serde_json::Value> = whole
        .take_events()
        .iter()
        .map(|e| json!([e.kind, e.data["start_ms"], e.data["score"]]))
        .collect();

    let mut before = JobSet::new(
        vec![job("load", json!({}))],
        options(&clock, Some(dir.path())),
    );
    ingest(&mut before, 0, &l, &points[..450]);
    let mut events = before.take_events();
    assert!(before.save().is_empty());
    drop(before);

    let mut after = JobSet::new(
        vec![job("load", json!({}))],
        options(&clock, Some(dir.path())),
    );
    // No new probation: the detector goes on where it was.
    assert_eq!(seen(&after, 0, &key), 450);
    assert_eq!(
        after.view().episodes().len(),
        1,
        "episodes come back with the state"
    );
    // Points already fed are not fed again.
    ingest(&mut after, 0, &l, &points[300..]);
    assert_eq!(seen(&after, 0, &key), 700);
    events.extend(after.take_events());
    let got: Vec<serde_json::Value> = events
        .iter()
        .map(|e| json!([e.kind, e.data["start_ms"], e.data["score"]]))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn unpublished_events_are_saved_with_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(0));
    let l = labels(&[("__name__", "load")]);
    let mut set = JobSet::new(
        vec![job("load", json!({}))],
        options(&clock, Some(dir.path())),
    );
    ingest(&mut set, 0, &l, &series(420, 0, &[(400, 50.0)]));
    let events = set.take_events();
    assert_eq!(events.len(), 1);
    // The bus refused them: back they go, and into the state file.
    set.return_events(events.clone());
    assert!(set.save().is_empty());
    let restored = JobSet::new(
        vec![job("load", json!({}))],
        options(&clock, Some(dir.path())),
    );
    let mut restored = restored;
    assert!(restored.has_events());
    assert_eq!(restored.take_events(), events);
}

#[test]
fn a_corrupt_state_file_is_reported_set_aside_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("load.json"),
        b"{\"version\": 1, \"state\": [",
    )
    .unwrap();
    let clock = Arc::new(ManualClock::new(0));
    let mut set = JobSet::new(
        vec![job("load", json!({}))],
        options(&clock, Some(dir.path())),
    );
    let stats = set.view().job("load").unwrap();
    let problem = stats.state_error.unwrap();
    assert!(problem.contains("unreadable state"), "{problem}");
    assert!(dir.path().join("load.json.corrupt").is_file());
    assert!(set.runners[0].state.series.is_empty());
    // It runs afresh and saves a good file.
    ingest(
        &mut set,
        0,
        &labels(&[("__name__", "load")]),
        &series(10, 0, &[]),
    );
    assert!(set.save().is_empty());
    let again = JobSet::new(
        vec![job("load", json!({}))],
        options(&clock, Some(dir.path())),
    );
    assert_eq!(again.view().job("load").unwrap().state_error, None);
    assert_eq!(again.runners[0].state.series.len(), 1);
}

#[test]
fn memory_per_followed_series_stays_under_64_kib() {
    let clock = Arc::new(ManualClock::new(0));
    let mut set = JobSet::new(vec![job("load", json!({}))], options(&clock, None));
    // Labels as a Kubernetes series has them.
    let l: BTreeMap<String, String> = (0..12)
        .map(|i| {
            (
                format!("label_{i}_name"),
                format!("value-{i}-of-a-kubernetes-pod-7d9f8c6b5-x2x9q"),
            )
        })
        .chain([(
            "__name__".to_string(),
            "container_cpu_usage_seconds_total".to_string(),
        )])
        .collect();
    // Long enough for every buffer to be full, with an episode going on at the end.
    let mut points = series(6000, 0, &[]);
    let last = points.len() - 2;
    points[last].1 = 1000.0;
    ingest(&mut set, 0, &l, &points);
    let runner = &set.runners[0];
    let state = &runner.state.series[&series_key(&l)];
    assert!(state.open.is_some());
    assert!(state.detector.memory_bytes() < 64 * 1024);
    let stats = set.view().job("load").unwrap();
    assert!(
        stats.memory_bytes < 64 * 1024,
        "{} bytes",
        stats.memory_bytes
    );
    let saved = serde_json::to_vec(state).unwrap();
    assert!(saved.len() < 64 * 1024, "state of {} bytes", saved.len());
}

#[test]
fn series_over_the_cap_are_refused_and_gone_ones_dropped_with_their_episode() {
    let clock = Arc::new(ManualClock::new(0));
    let opts = options(&clock, None);
    let metrics = opts.metrics.clone();
    let mut set = JobSet::new(
        vec![job("load", json!({"max_series": 2, "forget_after": "30m"}))],
        opts,
    );
    let [a, b, c] = ["a", "b", "c"].map(|i| labels(&[("__name__", "load"), ("instance", i)]));
    ingest(&mut set, 0, &a, &series(300, 0, &[]));
    // b ends in an episode going on, then goes quiet.
    ingest(&mut set, 0, &b, &series(300, 0, &[(298, 80.0)]));
    ingest(&mut set, 0, &c, &series(300, 0, &[]));
    assert_eq!(set.view().job("load").unwrap().series_refused, 1);
    assert!(
        encode(&metrics).contains("opsloop_metric_anomaly_series_refused_total{job=\"load\"} 1")
    );
    assert_eq!(of_type(&set.take_events(), ANOMALY).len(), 1);

    // a goes on for an hour, b has nothing: b is dropped, its episode ends.
    let later: Vec<(i64, f64)> = series(360, 0, &[])[300..].to_vec();
    ingest(&mut set, 0, &a, &later);
    let through = later.last().unwrap().0;
    clock.set(through);
    set.runners[0].forget(through, clock.now_ms(), &set.ctx);
    set.runners[0].publish_stats(&set.ctx);
    let stats = set.view().job("load").unwrap();
    assert_eq!((stats.series, stats.series_dropped), (1, 1));
    let events = set.take_events();
    let resolved = of_type(&events, ANOMALY_RESOLVED);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].data["reason"], "series_gone");
    assert_eq!(
        resolved[0].subject.as_deref(),
        Some(series_key(&b).as_str())
    );
    let text = encode(&metrics);
    assert!(!text.contains("instance=\"b\""), "{text}");
    assert!(text.contains("instance=\"a\""), "{text}");
    // Now there is room for c.
    ingest(&mut set, 0, &c, &series(10, through, &[]));
    assert_eq!(set.view().job("load").unwrap().series, 2);
}

#[test]
fn a_reload_keeps_the_state_of_jobs_that_keep_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(0));
    let opts = options(&clock, Some(dir.path()));
    let metrics = opts.metrics.clone();
    let mut set = JobSet::new(vec![job("a", json!({})), job("b", json!({}))], opts);
    let l = labels(&[("__name__", "load")]);
    let key = series_key(&l);
    ingest(&mut set, 0, &l, &series(300, 0, &[(298, 80.0)]));
    ingest(&mut set, 1, &l, &series(300, 0, &[(298, 80.0)]));
    assert_eq!(of_type(&set.take_events(), ANOMALY).len(), 2);
    assert!(set.save().is_empty());
    assert!(dir.path().join("b.json").is_file());

    // a: a new threshold, same series: kept. b: removed. c: new.
    set.replace(vec![
        job("c", json!({})),
        job("a", json!({"threshold": 0.9})),
    ]);
    assert_eq!(set.runners.len(), 2);
    assert_eq!(set.runners[1].job.name, "a");
    assert_eq!(seen(&set, 1, &key), 300);
    let tracker = &set.runners[1].state.series[&key].tracker;
    assert_eq!(tracker.threshold(), 0.9);
    let events = set.take_events();
    let resolved = of_type(&events, ANOMALY_RESOLVED);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].data["job"], "b");
    assert_eq!(resolved[0].data["reason"], "job_removed");
    assert!(set.view().job("b").is_none());
    assert!(!dir.path().join("b.json").exists());
    assert!(!encode(&metrics).contains("job=\"b\""));

    // a now follows another query: its series end and it starts afresh.
    set.replace(vec![job("a", json!({"query": "other"}))]);
    assert!(set.runners[0].state.series.is_empty());
    let events = set.take_events();
    assert_eq!(
        of_type(&events, ANOMALY_RESOLVED)[0].data["reason"],
        "job_changed"
    );
}

#[test]
fn pending_events_are_bounded_and_returned_in_order() {
    let clock = Arc::new(ManualClock::new(0));
    let mut set = JobSet::new(vec![job("a", json!({}))], options(&clock, None));
    let event = |i: i64| Event::new(ANOMALY, "/s", Some("x"), i, json!({"job": "a"}));
    let first: Vec<Event> = (0..10).map(event).collect();
    set.return_events(first.clone());
    // Returned events were taken before the pending ones: they go ahead of them, and the
    // oldest are dropped over the cap.
    let more: Vec<Event> = (10..(MAX_PENDING_EVENTS as i64 + 15)).map(event).collect();
    set.return_events(more.clone());
    let all = set.take_events();
    assert_eq!(all.len(), MAX_PENDING_EVENTS);
    assert_eq!(all[0].id, more[15].id);
    assert_eq!(all[MAX_PENDING_EVENTS - 1].id, first[9].id);
    assert_eq!(set.runners[0].stats.events_dropped, 15);
    assert!(!set.has_events());
}

#[tokio::test]
async fn runs_follow_the_clock_across_new_year_long_uptime_and_a_stepped_clock() {
    // Year 2255: far from the epoch, milliseconds beyond 32 bits of seconds.
    let eve = civil_to_millis(2255, 12, 31, 23, 58, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::new(eve));
    let opts = options(&clock, None);
    let metrics = opts.metrics.clone();
    let mut set = JobSet::new(vec![job("a", json!({}))], opts);
    assert_eq!(set.run_due().await, 1);
    assert_eq!(set.run_due().await, 0, "not due again before a minute");
    clock.advance(Duration::from_secs(30));
    assert_eq!(set.run_due().await, 0);
    clock.advance(Duration::from_secs(30));
    assert_eq!(set.run_due().await, 1, "at New Year");
    clock.advance(Duration::from_secs(60));
    assert_eq!(set.run_due().await, 1, "in the new year");
    // A year of uptime in one jump: one run, not one per missed minute.
    clock.advance(Duration::from_secs(366 * 86_400));
    assert_eq!(set.run_due().await, 1);
    assert_eq!(set.run_due().await, 0);
    // The wall clock stepped back a day: the job runs, it does not wait a day.
    clock.advance(Duration::from_secs(0));
    clock.set(clock.now_ms() - 86_400_000);
    assert_eq!(set.run_due().await, 1);
    let stats = set.view().job("a").unwrap();
    // Nothing listens: every run failed, was counted, and was tried again.
    assert_eq!(
        (stats.runs, stats.failures, stats.consecutive_failures),
        (5, 5, 5)
    );
    assert!(stats.last_error.unwrap().contains("127.0.0.1:9"));
    assert_eq!(stats.cursor, None);
    assert!(encode(&metrics).contains("opsloop_metric_anomaly_job_errors_total{job=\"a\"} 5"));
}

/// A Prometheus server for one test, killed when dropped.
struct Prometheus(std::process::Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Whether prometheus and promtool are installed; in CI (`CI` set) their absence fails the
/// test instead of skipping it.
fn prometheus_installed() -> bool {
    let found = on_path("prometheus") && on_path("promtool");
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "no prometheus/promtool in CI (Debian package `prometheus`)"
        );
        println!("skipped: prometheus and promtool are not on PATH");
    }
    found
}

fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /-/ready HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

/// Loads `openmetrics` with promtool and starts Prometheus on `port`, waiting until ready.
fn start_prometheus(dir: &Path, openmetrics: &str, port: u16) -> Prometheus {
    let input = dir.join("history.om");
    std::fs::write(&input, openmetrics).unwrap();
    let data = dir.join("data");
    let created = std::process::Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let child = std::process::Command::new("prometheus")
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--config.file={}", config.display()))
        .arg("--storage.tsdb.retention.time=100y")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Prometheus(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ready(port) {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("prometheus exited: {status}");
        }
        assert!(std::time::Instant::now() < deadline, "prometheus not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

#[tokio::test]
async fn a_real_prometheus_down_then_up_across_new_year_feeds_every_point_once() {
    if !prometheus_installed() {
        return;
    }
    // A day of `load` every minute around New Year 2024, a spike at 00:30 on New Year's Day.
    let t0 = civil_to_millis(2023, 12, 31, 12, 0, 0, 0).unwrap();
    let spike_at = civil_to_millis(2024, 1, 1, 0, 30, 0, 0).unwrap();
    let points = series(
        24 * 60 + 1,
        t0,
        &[(((spike_at - t0) / MINUTE) as usize, 50.0)],
    );
    let mut om = String::from("# HELP load Load.\n# TYPE load gauge\n");
    for (t, v) in &points {
        om.push_str(&format!("load{{instance=\"a\"}} {v} {}\n", t / 1000));
    }
    om.push_str("# EOF\n");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let jobs = check(&[
        job_json(
            "ny",
            json!({"prometheus": url, "every": "10m", "lookback": "1d", "delay": "0s"}),
        ),
        job_json(
            "bad",
            json!({"prometheus": url, "query": "load{", "every": "10m"}),
        ),
        job_json(
            "delayed",
            json!({"prometheus": url, "every": "10m", "lookback": "1d", "delay": "5m"}),
        ),
    ])
    .unwrap();
    let clock = Arc::new(ManualClock::new(
        civil_to_millis(2023, 12, 31, 20, 0, 0, 0).unwrap(),
    ));
    let opts = options(&clock, None);
    let metrics = opts.metrics.clone();
    let mut set = JobSet::new(jobs, opts);
    // Prometheus is down for the first three runs.
    for _ in 0..3 {
        assert_eq!(set.run_due().await, 3);
        clock.advance(Duration::from_secs(600));
    }
    let down = set.view().job("ny").unwrap();
    assert_eq!((down.failures, down.consecutive_failures), (3, 3));
    assert_eq!(down.cursor, None);
    let dir = tempfile::tempdir().unwrap();
    let _server = start_prometheus(dir.path(), &om, port);
    // As if an answer had been too large before: the chunk grows back with each success.
    set.runners[0].chunk_limit = 300;
    let end = civil_to_millis(2024, 1, 1, 6, 0, 0, 0).unwrap();
    let mut events = Vec::new();
    while clock.now_ms() <= end {
        set.run_due().await;
        events.extend(set.take_events());
        clock.advance(Duration::from_secs(600));
    }
    assert_eq!(set.runners[0].chunk_limit, MAX_STEPS_PER_QUERY);
    let stats = set.view().job("ny").unwrap();
    assert_eq!((stats.failures, stats.consecutive_failures), (3, 0));
    assert_eq!(stats.cursor.as_deref(), Some("2024-01-01T06:00:00.000Z"));
    // `delay` holds the query end back: the grid point 06:00 waits for its scrape.
    let delayed = set.view().job("delayed").unwrap();
    assert_eq!(
        delayed.cursor.as_deref(),
        Some("2024-01-01T05:55:00.000Z"),
        "{delayed:?}"
    );
    // Every grid point from the first sample to the last run's end, each once.
    let key = "load{instance=\"a\"}";
    assert_eq!(seen(&set, 0, key), ((end - t0) / MINUTE + 1) as u64);
    let anomalies = of_type(&events, ANOMALY);
    let anomalies: Vec<_> = anomalies
        .into_iter()
        .filter(|e| e.data["job"] == "ny")
        .collect();
    assert_eq!(anomalies.len(), 1, "{anomalies:#?}");
    assert_eq!(anomalies[0].data["start"], "2024-01-01T00:30:00.000Z");
    assert_eq!(anomalies[0].subject.as_deref(), Some(key));
    assert_eq!(
        of_type(&events, ANOMALY_RESOLVED)
            .iter()
            .filter(|e| e.data["job"] == "ny")
            .count(),
        1
    );
    // A query Prometheus refuses is counted at every run, with its reason.
    let bad = set.view().job("bad").unwrap();
    assert_eq!(bad.failures, bad.runs);
    assert!(bad.last_error.unwrap().contains("bad_data"));
    let text = encode(&metrics);
    assert!(
        text.contains("opsloop_metric_anomaly_job_errors_total{job=\"ny\"} 3"),
        "{text}"
    );
}

#[tokio::test]
async fn a_clock_stepped_back_below_the_cursor_resets_it_and_points_are_fed_again() {
    let now = civil_to_millis(2026, 1, 1, 0, 0, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::new(now));
    let mut set = JobSet::new(
        vec![job("a", json!({"delay": "0s"}))],
        options(&clock, None),
    );
    let l = labels(&[("__name__", "load")]);
    let key = series_key(&l);
    // A year ahead (the clock ran ahead, then was corrected): cursor and series are there.
    let ahead = now + 365 * 86_400_000;
    ingest(&mut set, 0, &l, &series(100, ahead, &[]));
    set.runners[0].state.cursor_ms = Some(ahead + 99 * MINUTE);
    assert_eq!(set.run_due().await, 1);
    let runner = &set.runners[0];
    assert_eq!(runner.state.cursor_ms, Some(now));
    assert_eq!(runner.state.series[&key].last_ms, now);
    let stats = set.view().job("a").unwrap();
    assert!(stats.state_error.unwrap().contains("before the cursor"));
    // The answer for the next minutes is fed, not dropped as already seen.
    ingest(&mut set, 0, &l, &series(5, now + MINUTE, &[]));
    assert_eq!(seen(&set, 0, &key), 105);
}

#[test]
fn renamed_gauge_labels_never_collide_with_the_series_own() {
    let l = labels(&[
        ("__name__", "up"),
        ("job", "a"),
        ("exported_job", "b"),
        ("exported_exported_job", "c"),
        ("metric_name", "d"),
        ("exported_metric_name", "e"),
    ]);
    let out = gauge_labels("load", &l);
    let names: std::collections::BTreeSet<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names.len(), out.len(), "{out:?}");
    let value = |name: &str| out.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(value("job"), Some("load"));
    assert_eq!(value("metric_name"), Some("up"));
    assert_eq!(value("exported_job"), Some("b"));
    assert_eq!(value("exported_exported_exported_job"), Some("a"));
    assert_eq!(value("exported_exported_metric_name"), Some("d"));
    // And the scrape stays valid.
    let metrics = JobMetrics::default();
    metrics.scores.get_or_create(&out).set(0.5);
    assert!(encode(&metrics).contains("exported_exported_exported_job=\"a\""));
}

#[test]
fn non_finite_numbers_in_the_state_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(0));
    let l = labels(&[("__name__", "load")]);
    let key = series_key(&l);
    let mut set = JobSet::new(
        vec![job("load", json!({}))],
        options(&clock, Some(dir.path())),
    );
    ingest(&mut set, 0, &l, &series(300, 0, &[(298, 80.0)]));
    {
        let series = set.runners[0].state.series.get_mut(&key).unwrap();
        series.score = f64::NAN;
        let open = series.open.as_mut().unwrap();
        open.value = f64::INFINITY;
        open.peak = f64::NEG_INFINITY;
    }
    let events = set.take_events();
    set.return_events(events.clone());
    assert!(set.save().is_empty());
    let restored = JobSet::new(
        vec![job("load", json!({}))],
        options(&clock, Some(dir.path())),
    );
    assert_eq!(restored.view().job("load").unwrap().state_error, None);
    let series = &restored.runners[0].state.series[&key];
    assert!(series.score.is_nan());
    let open = series.open.as_ref().unwrap();
    assert_eq!((open.value, open.peak), (f64::INFINITY, f64::NEG_INFINITY));
    assert_eq!(series.detector.seen(), 300);
    let mut restored = restored;
    assert_eq!(restored.take_events(), events, "pending events kept");
}

#[test]
fn a_state_of_another_query_keeps_its_events_and_ends_its_episodes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(0));
    let l = labels(&[("__name__", "load")]);
    let mut set = JobSet::new(
        vec![job("load", json!({}))],
        options(&clock, Some(dir.path())),
    );
    ingest(&mut set, 0, &l, &series(300, 0, &[(298, 80.0)]));
    let events = set.take_events();
    assert_eq!(of_type(&events, ANOMALY).len(), 1);
    set.return_events(events.clone());
    assert!(set.save().is_empty());
    drop(set);

    // Restarted with another query: the pending start goes out, then its end.
    let mut changed = JobSet::new(
        vec![job("load", json!({"query": "other"}))],
        options(&clock, Some(dir.path())),
    );
    assert!(changed.runners[0].state.series.is_empty());
    assert_eq!(changed.runners[0].state.cursor_ms, None);
    let out = changed.take_events();
    assert_eq!(out[0], events[0]);
    let resolved = of_type(&out, ANOMALY_RESOLVED);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].data["reason"], "job_changed");
    assert_eq!(resolved[0].data["episode"], events[0].id.as_str());
    assert!(changed.view().episodes().iter().all(|e| !e.open));
}

#[test]
fn the_state_is_saved_when_events_were_made_else_every_five_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(
        civil_to_millis(2026, 12, 31, 23, 58, 0, 0).unwrap(),
    ));
    let path = dir.path().join("load.json");
    let mut set = JobSet::new(
        vec![job("load", json!({}))],
        options(&clock, Some(dir.path())),
    );
    let l = labels(&[("__name__", "load")]);
    assert!(set.save().is_empty());
    assert!(path.is_file(), "the first save writes");
    std::fs::remove_file(&path).unwrap();
    clock.advance(Duration::from_secs(60));
    assert!(set.save().is_empty());
    assert!(
        !path.exists(),
        "nothing new: not rewritten within five minutes"
    );
    // Events handed back (the bus refused them) are saved at once.
    set.return_events(vec![Event::new(
        ANOMALY,
        "/s",
        Some("x"),
        0,
        json!({"job": "load"}),
    )]);
    assert!(set.save().is_empty());
    assert!(path.is_file());
    std::fs::remove_file(&path).unwrap();
    ingest(&mut set, 0, &l, &series(10, 0, &[]));
    clock.advance(Duration::from_secs(299));
    assert!(set.save().is_empty());
    assert!(!path.exists());
    // Across New Year, five minutes after the last save.
    clock.advance(Duration::from_secs(1));
    assert!(set.save().is_empty());
    assert!(path.is_file());
    std::fs::remove_file(&path).unwrap();
    // At shutdown, always.
    assert!(set.save_now().is_empty());
    assert!(path.is_file());
    assert!(check(&[job_json("x", json!({"max_series": MAX_SERIES + 1}))]).is_err());
}

#[test]
fn the_first_query_is_sized_for_max_series_and_the_chunk_grows_back() {
    let clock = Arc::new(ManualClock::new(0));
    let set = JobSet::new(
        vec![job("a", json!({"max_series": 500}))],
        options(&clock, None),
    );
    let mut runner = set.runners.into_iter().next().unwrap();
    // No series followed yet: 500 series × steps within the points per query.
    assert_eq!(runner.chunk_steps(), MAX_POINTS_PER_QUERY / 500);
    runner.answer_series = Some(2);
    assert_eq!(runner.chunk_steps(), MAX_STEPS_PER_QUERY);
    runner.chunk_limit = 100;
    assert_eq!(runner.chunk_steps(), 100);
}

#[tokio::test]
async fn a_hanging_prometheus_does_not_hold_back_another_jobs_events() {
    if !prometheus_installed() {
        return;
    }
    let now = civil_to_millis(2024, 3, 1, 0, 0, 0, 0).unwrap();
    let t0 = now - 600 * MINUTE;
    let points = series(601, t0, &[(560, 50.0)]);
    let mut om = String::from("# HELP load Load.\n# TYPE load gauge\n");
    for (t, v) in &points {
        om.push_str(&format!("load{{instance=\"a\"}} {v} {}\n", t / 1000));
    }
    om.push_str("# EOF\n");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let _server = start_prometheus(dir.path(), &om, port);
    // Accepts connections (the kernel does) and never answers.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hanging_url = format!("http://{}", hanging.local_addr().unwrap());
    let jobs = check(&[
        // First, so one after another it would hold the other back for its 10 minutes.
        job_json("hangs", json!({"prometheus": hanging_url, "timeout": "10m"})),
        job_json(
            "good",
            // One series: the whole lookback comes in one query.
            json!({"prometheus": format!("http://127.0.0.1:{port}"), "delay": "0s", "max_series": 1}),
        ),
    ])
    .unwrap();
    let clock = Arc::new(ManualClock::new(now));
    let mut set = JobSet::new(jobs, options(&clock, None));
    let view = set.view().clone();
    {
        let run = set.run_due();
        tokio::pin!(run);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            tokio::select! {
                _ = &mut run => panic!("the hanging job's run ended"),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            if view
                .job("good")
                .is_some_and(|s| s.last_success_at.is_some())
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the good job did not run while the other hung"
            );
        }
        // Dropping the run abandons the hanging query; its job's state is unchanged.
    }
    let events = set.take_events();
    let anomalies = of_type(&events, ANOMALY);
    assert_eq!(
        anomalies.len(),
        1,
        "{anomalies:#?} {:?}",
        set.view().job("good")
    );
    assert_eq!(anomalies[0].data["job"], "good");
    let hangs = set.view().job("hangs").unwrap();
    assert_eq!((hangs.failures, hangs.cursor), (0, None));
}
