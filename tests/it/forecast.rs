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
