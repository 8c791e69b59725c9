//! `opsloop forecast` end to end: files, stdin, a Prometheus-shaped HTTP server, JSON fields,
//! horizons, capacity warnings, plots and exit codes.

use serde_json::Value;

use crate::{fixture, run, run_with_stdin};

fn json(args: &[&str]) -> (Value, i32, String) {
    let out = run(args);
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (
        doc,
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn table_names_model_and_next_values() {
    let out = run(&["forecast", "--input", "tests/fixtures/forecast/hourly.csv"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("series"), "{stdout}");
    assert!(
        stdout.contains("tests/fixtures/forecast/hourly.csv"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 outliers"),
        "the spike is reported: {stdout}"
    );
    assert!(
        stdout.contains("(24 points)"),
        "default horizon is a day: {stdout}"
    );
}

#[test]
fn json_carries_the_issue_fields() {
    let (doc, code, _) = json(&[
        "forecast",
        "--input",
        "tests/fixtures/forecast/hourly.csv",
        "--output",
        "json",
        "--horizon",
        "6",
    ]);
    assert_eq!(code, 0);
    let s = &doc["series"][0];
    assert!(s["model"].is_string());
    assert_eq!(s["backtest"]["candidates"].as_array().unwrap().len(), 5);
    assert_eq!(s["prepared"]["outliers"], 1);
    assert_eq!(s["prepared"]["filled"], 0);
    assert!(s["labels"].is_object());
    let forecast = s["forecast"].as_array().unwrap();
    assert_eq!(forecast.len(), 6);
    let p = &forecast[0];
    assert_eq!(p["timestamp"], "2023-11-25T00:00:00.000Z");
    let get = |k: &str| p[k].as_f64().unwrap();
    assert!(get("lower_95") <= get("lower_80") && get("lower_80") <= get("value"));
    assert!(get("value") <= get("upper_80") && get("upper_80") <= get("upper_95"));
}

#[test]
fn horizon_as_a_duration_and_stdin() {
    let text = std::fs::read(fixture("forecast/hourly.csv")).unwrap();
    let out = run_with_stdin(
        &[
            "forecast",
            "--input",
            "-",
            "--horizon",
            "2d",
            "--output",
            "json",
        ],
        &text,
    );
    assert_eq!(out.status.code(), Some(0));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["series"][0]["series"], "<stdin>");
    assert_eq!(doc["series"][0]["forecast"].as_array().unwrap().len(), 48);
}

#[test]
fn a_series_that_cannot_be_forecast_exits_3_and_the_rest_is_kept() {
    let (doc, code, stderr) = json(&[
        "forecast",
        "--input",
        "tests/fixtures/forecast/two_series.csv",
        "--output",
        "json",
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(doc["series"][0]["series"], "web");
    assert_eq!(doc["series"][0]["labels"]["series"], "web");
    assert_eq!(doc["failed"][0]["series"], "tiny");
    assert!(stderr.contains("cannot forecast tiny"), "{stderr}");
    assert!(
        stderr.contains("two_series.csv: line 11") && stderr.contains("not-a-time"),
        "{stderr}"
    );
}

#[test]
fn no_series_forecast_exits_2_and_unreadable_rows_are_named() {
    // Every series too short: nothing usable came out, exit 2 (3 is a partial run).
    let out = run_with_stdin(
        &["forecast", "--input", "-", "--output", "json"],
        b"timestamp,value,series\n1700000000,1,a\n1700000300,2,a\n1700000000,5,b\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot forecast a") && stderr.contains("cannot forecast b"),
        "{stderr}"
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["failed"].as_array().unwrap().len(), 2, "{doc}");
    // No row readable at all: the error names the first problems, line and reason.
    let out = run_with_stdin(
        &["forecast", "--input", "-"],
        b"timestamp,value\nyesterday,1\n1700000000,lots\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("2 row problem(s)")
            && stderr.contains("line 2: timestamp \"yesterday\"")
            && stderr.contains("line 3: value \"lots\" is not a number"),
        "{stderr}"
    );
}

#[test]
fn a_closed_stdout_is_a_clean_end() {
    // `opsloop forecast … | head -c 0`: the reader goes away before the output is written.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_opsloop"))
        .args([
            "forecast",
            "--input",
            "tests/fixtures/forecast/hourly.csv",
            "--output",
            "json",
            "--horizon",
            "500",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn threshold_warning_reads_the_bands() {
    let (doc, code, _) = json(&[
        "forecast",
        "--input",
        "tests/fixtures/forecast/hourly.csv",
        "--output",
        "json",
        "--threshold-above",
        "0.75",
    ]);
    assert_eq!(code, 0);
    let warning = &doc["series"][0]["warning"];
    let message = warning["message"].as_str().unwrap();
    assert!(
        message.starts_with("crosses 0.75 in") || message.starts_with("may cross 0.75"),
        "{message}"
    );
    assert!(warning["earliest_80"].is_string());
    let (doc, _, _) = json(&[
        "forecast",
        "--input",
        "tests/fixtures/forecast/hourly.csv",
        "--output",
        "json",
        "--threshold",
        "100",
    ]);
    assert!(doc["series"][0]["warning"].is_null());
}

#[test]
fn plot_is_an_svg_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cpu.svg");
    let out = run(&[
        "forecast",
        "--input",
        "tests/fixtures/forecast/hourly.csv",
        "--plot",
        path.to_str().unwrap(),
        "--threshold",
        "0.9",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("threshold"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["forecast"],
        vec![
            "forecast",
            "--input",
            "tests/fixtures/forecast/hourly.csv",
            "--horizon",
            "soon",
        ],
        vec![
            "forecast",
            "--input",
            "tests/fixtures/forecast/hourly.csv",
            "--outlier-z",
            "-1",
        ],
        vec!["forecast", "--input", "tests/fixtures/forecast/missing.csv"],
        vec!["forecast", "--prometheus", "http://127.0.0.1:9"],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    let out = run_with_stdin(&["forecast", "--input", "-", "--output", "json"], b"");
    assert_eq!(out.status.code(), Some(2));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no data")
    );
}

/// Serves the fixture answer at `/api/v1/query_range` on a loopback port.
fn serve_prometheus_answer() -> String {
    let body = std::fs::read_to_string(fixture("forecast/prometheus.json")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/api/v1/query_range",
                axum::routing::get(move || async move { body }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{addr}")
}

#[test]
fn prometheus_series_keep_their_labels() {
    let url = serve_prometheus_answer();
    let (doc, code, stderr) = json(&[
        "forecast",
        "--prometheus",
        &url,
        "--query",
        "rate(cpu_seconds_total[5m])",
        "--range",
        "10d",
        "--step",
        "1h",
        "--end",
        "2023-11-25T00:00:00Z",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let series = doc["series"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[0]["series"], "cpu{job=\"api\"}");
    assert_eq!(series[1]["labels"]["job"], "db");
}

#[test]
fn hpa_prints_a_validated_autoscaling_v2_hpa() {
    let out = run(&[
        "forecast",
        "hpa",
        "--demand",
        "tests/fixtures/forecast/hourly.csv",
        "--per-pod-capacity",
        "0.1",
        "--startup-delay",
        "2m",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("apiVersion: autoscaling/v2"), "{stdout}");
    assert!(stdout.contains("kind: HorizontalPodAutoscaler"));
    assert!(stdout.contains("stabilizationWindowSeconds: 300"));
    assert!(stdout.contains("# reactive") && stdout.contains("# proposal"));
    assert!(!stdout.contains("type: External"));

    let (doc, code, stderr) = json(&[
        "forecast",
        "hpa",
        "--demand",
        "tests/fixtures/forecast/hourly.csv",
        "--per-pod-capacity",
        "0.1",
        "--external",
        "--job",
        "api-demand",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let hpa = doc["hpa"].as_str().unwrap();
    assert!(hpa.contains("type: External"));
    assert!(
        hpa.contains("name: opsloop_forecast_api_demand_5m\n"),
        "{hpa}"
    );
    let rule = doc["adapter_rule"].as_str().unwrap();
    assert!(
        rule.contains("<<.Series>>{job=\"api-demand\",ahead=\"5m\"}")
            && rule.contains("<<.Series>>{exported_job=\"api-demand\",ahead=\"5m\"}"),
        "{rule}"
    );
    // `--ahead 60m` is the gauge's spelling of the lead, `1h`.
    let (doc, code, stderr) = json(&[
        "forecast",
        "hpa",
        "--demand",
        "tests/fixtures/forecast/hourly.csv",
        "--per-pod-capacity",
        "0.1",
        "--external",
        "--job",
        "api-demand",
        "--ahead",
        "60m",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(doc["spec"]["external"]["ahead"], "1h");
    assert!(
        doc["adapter_rule"]
            .as_str()
            .unwrap()
            .contains("seriesQuery: 'opsloop_forecast_value{ahead=\"1h\"}'")
    );
    for form in ["reactive", "proposal"] {
        let r = &doc["validation"][form];
        assert!(r["under_provisioned_minutes"].as_f64().unwrap() >= 0.0);
        assert!(r["replica_hours"].as_f64().unwrap() > 0.0);
        assert!(r["scale_events"].is_u64());
    }
    assert!(doc["spec"]["min_replicas"].as_u64().unwrap() >= 1);
}

#[test]
fn hpa_usage_errors_exit_2() {
    for args in [
        vec![
            "forecast",
            "hpa",
            "--demand",
            "tests/fixtures/forecast/hourly.csv",
        ],
        vec![
            "forecast",
            "hpa",
            "--demand",
            "tests/fixtures/forecast/hourly.csv",
            "--per-pod-capacity",
            "0",
        ],
        vec![
            "forecast",
            "hpa",
            "--demand",
            "tests/fixtures/forecast/two_series.csv",
            "--per-pod-capacity",
            "1",
        ],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}

/// A Prometheus server started for one test, killed when dropped (also when the test fails).
pub(crate) struct PrometheusServer {
    child: std::process::Child,
    pub(crate) url: String,
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Whether `prometheus` and `promtool` can run here. Without them a test is skipped, except
/// in CI (`CI` set), where scripts/test.sh installs them and skipping would hide a failure.
pub(crate) fn prometheus_available() -> bool {
    if on_path("prometheus") && on_path("promtool") {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "no prometheus/promtool in CI (scripts/test.sh installs the Debian package `prometheus`)"
    );
    println!("skipped: prometheus and promtool are not on PATH (Debian package `prometheus`)");
    false
}

/// Whether `GET /-/ready` answers 200.
fn ready(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    if stream
        .write_all(b"GET /-/ready HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

/// Loads `openmetrics` into a TSDB with promtool and starts Prometheus on it.
pub(crate) fn start_prometheus(dir: &std::path::Path, openmetrics: &str) -> PrometheusServer {
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
        "promtool: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    spawn_prometheus(dir, &data, "global:\n  scrape_interval: 1m\n")
}

/// Starts Prometheus on an empty TSDB with `config` (scrape jobs, say).
pub(crate) fn start_scraping_prometheus(dir: &std::path::Path, config: &str) -> PrometheusServer {
    spawn_prometheus(dir, &dir.join("data"), config)
}

/// Starts Prometheus on the TSDB `data` with the configuration `config`; ready when returned.
fn spawn_prometheus(
    dir: &std::path::Path,
    data: &std::path::Path,
    config_text: &str,
) -> PrometheusServer {
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, config_text).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = std::process::Command::new("prometheus")
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg(format!("--config.file={}", config.display()))
        .arg("--storage.tsdb.retention.time=100y")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut server = PrometheusServer {
        child,
        url: format!("http://{addr}"),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ready(&addr) {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("prometheus exited before it was ready: {status}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "prometheus not ready after 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    server.url = format!("http://{addr}");
    server
}

#[test]
fn forecast_from_a_real_prometheus() {
    if !prometheus_available() {
        return;
    }
    // Three days of a daily cycle at 5 min at a fixed time (the server keeps it: retention
    // is set far beyond it), so the test reads no clock.
    let step = 300i64;
    let end = 1_700_000_000 - 1_700_000_000 % step;
    let points = 3 * 288;
    let mut om = String::from("# HELP demand Requests per second.\n# TYPE demand gauge\n");
    for job in ["api", "db"] {
        for i in 0..points {
            let t = end - (points - 1 - i) * step;
            let phase = (t % 86_400) as f64 / 86_400.0 * std::f64::consts::TAU;
            let base = if job == "api" { 100.0 } else { 40.0 };
            let v = base + 30.0 * phase.sin() + (i % 7) as f64;
            om.push_str(&format!("demand{{job=\"{job}\"}} {v} {t}\n"));
        }
    }
    om.push_str("# EOF\n");
    let dir = tempfile::tempdir().unwrap();
    let server = start_prometheus(dir.path(), &om);
    let end_arg = end.to_string();
    let (doc, code, stderr) = json(&[
        "forecast",
        "--prometheus",
        &server.url,
        "--query",
        "demand",
        "--range",
        "3d",
        "--step",
        "5m",
        "--end",
        &end_arg,
        "--horizon",
        "2h",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let series = doc["series"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{doc}");
    let jobs: Vec<&str> = series
        .iter()
        .map(|s| s["labels"]["job"].as_str().unwrap())
        .collect();
    assert!(jobs.contains(&"api") && jobs.contains(&"db"), "{jobs:?}");
    for s in series {
        assert_eq!(s["labels"]["__name__"], "demand");
        assert!(s["prepared"]["grid_points"].as_u64().unwrap() >= 800, "{s}");
        let forecast = s["forecast"].as_array().unwrap();
        assert_eq!(forecast.len(), 24);
        let level = if s["labels"]["job"] == "api" {
            100.0
        } else {
            40.0
        };
        for p in forecast {
            let v = p["value"].as_f64().unwrap();
            assert!((v - level).abs() < 45.0, "{p}");
            assert!(p["lower_80"].as_f64().unwrap() <= v && v <= p["upper_80"].as_f64().unwrap());
        }
    }
    // A query Prometheus rejects is a clear error, exit 2.
    let out = run(&[
        "forecast",
        "--prometheus",
        &server.url,
        "--query",
        "rate(demand[",
        "--range",
        "1d",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!out.stderr.is_empty());
    drop(server);
}

#[test]
fn a_range_beyond_prometheus_resolution_limit_is_read_in_parts() {
    use opsloop_forecast::prometheus::{MAX_POINTS_PER_QUERY, PrometheusClient, RangeQuery};
    if !prometheus_available() {
        return;
    }
    // Three days at 5 min, read at a 20 s step: 12,961 points per series, over the 11,000
    // Prometheus answers in one request.
    let end = 1_700_000_000 - 1_700_000_000 % 300;
    let mut om = String::from("# HELP demand Requests per second.\n# TYPE demand gauge\n");
    for i in 0..3 * 288 {
        let t = end - (3 * 288 - 1 - i) * 300;
        om.push_str(&format!("demand{{job=\"api\"}} {} {t}\n", 100 + i % 13));
    }
    om.push_str("# EOF\n");
    let dir = tempfile::tempdir().unwrap();
    let server = start_prometheus(dir.path(), &om);
    let query = RangeQuery {
        query: "demand".into(),
        start_ms: (end - 3 * 86_400) * 1000,
        end_ms: end * 1000,
        step_ms: 20_000,
    };
    let expected = (query.end_ms - query.start_ms) / query.step_ms + 1;
    assert!(expected > MAX_POINTS_PER_QUERY);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Prometheus itself refuses the range in one request.
    let port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    let (status, body) = crate::run::http(
        port,
        "GET",
        &format!(
            "/api/v1/query_range?query=demand&start={}&end={}&step=20",
            end - 3 * 86_400,
            end
        ),
        "",
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("11,000") || body.contains("resolution"),
        "{body}"
    );
    let client =
        PrometheusClient::new(&server.url, std::time::Duration::from_secs(30), 64 << 20).unwrap();
    let read = runtime.block_on(client.query_range(&query)).unwrap();
    assert!(read.problems.is_empty(), "{:?}", read.problems);
    assert_eq!(read.series.len(), 1);
    let points = &read.series[0].points;
    // The first samples of the range lie before the loaded history (lookback of 5 min).
    assert!(points.len() as i64 >= expected - 20, "{}", points.len());
    assert!(
        points.windows(2).all(|w| w[1].0 - w[0].0 == 20_000),
        "gaps or repeats"
    );
    assert_eq!(points.last().unwrap().0, query.end_ms);
    // The CLI reads the same range (and forecasts it).
    let end_arg = end.to_string();
    let (doc, code, stderr) = json(&[
        "forecast",
        "--prometheus",
        &server.url,
        "--query",
        "demand",
        "--range",
        "3d",
        "--step",
        "20s",
        "--end",
        &end_arg,
        "--horizon",
        "10",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        doc["series"][0]["prepared"]["grid_points"]
            .as_u64()
            .unwrap() as i64
            >= expected - 20,
        "{}",
        doc["series"][0]["prepared"]
    );
    drop(server);
}
