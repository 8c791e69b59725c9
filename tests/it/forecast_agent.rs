//! Forecast jobs in `opsloop run` end to end, against a real Prometheus: a predicted breach is
//! one event for its whole window, and when the model goes wrong the job says so once and its
//! exported gauge falls back to the latest observation; results through the API, state on
//! disk.
//!
//! Prometheus is loaded with promtool before it starts, with samples reaching into the next
//! minutes: they become visible to queries as the wall clock (the agent's) passes them, which
//! is how "observations arrive" here.

use serde_json::Value;

use opsloop_bus::testing::free_port;

use crate::forecast::{prometheus_available, start_prometheus, start_scraping_prometheus};
use crate::run::{http, start_agent, stop_agent, stored_events, wait_for};

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The single-quoted YAML value of `key:` in `rule`.
fn yaml_quoted(rule: &str, key: &str) -> String {
    let line = rule
        .lines()
        .find_map(|l| l.trim_start_matches(['-', ' ']).strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {rule}"));
    line.trim()
        .trim_start_matches('\'')
        .trim_end_matches('\'')
        .replace("''", "'")
}

/// Scrapes the agent's `/metrics` with a real Prometheus twice, with the default
/// `honor_labels: false` (the gauge's `job` becomes `exported_job`) and with `honor_labels:
/// true`, and checks that the adapter rule printed by `forecast hpa --external` finds the
/// forecast job's gauge under both: its seriesQuery lists the series, its metricsQuery (as
/// the adapter runs it) returns a value.
fn adapter_rule_serves_the_gauge(dir: &std::path::Path, api: u16) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_opsloop"))
        .args([
            "forecast",
            "hpa",
            "--demand",
            "tests/fixtures/forecast/hourly.csv",
            "--per-pod-capacity",
            "0.1",
            "--external",
            "--job",
            "demand",
            "--ahead",
            "5000ms",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rule = doc["adapter_rule"].as_str().unwrap();
    let hpa = doc["hpa"].as_str().unwrap();
    let name = yaml_quoted(rule, "as:");
    assert!(hpa.contains(&format!("name: {name}\n")), "{hpa}\n{rule}");
    let series_query = yaml_quoted(rule, "seriesQuery:");
    let metrics_query = yaml_quoted(rule, "metricsQuery:");
    // `5000ms` is spelled as the agent's label (`ahead: [5s]`).
    assert!(series_query.contains("ahead=\"5s\""), "{rule}");

    let scrape_dir = dir.join("scraper");
    std::fs::create_dir(&scrape_dir).unwrap();
    let scraper = start_scraping_prometheus(
        &scrape_dir,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n\
             - job_name: opsloop-agent\n  static_configs:\n  - targets: ['127.0.0.1:{api}']\n    labels: {{via: plain}}\n\
             - job_name: opsloop-agent-honoured\n  honor_labels: true\n  static_configs:\n  - targets: ['127.0.0.1:{api}']\n    labels: {{via: honoured}}\n"
        ),
    );
    let port: u16 = scraper.url.rsplit(':').next().unwrap().parse().unwrap();
    let get = |path: String| -> Value {
        let (status, body) = http(port, "GET", &path, "", None);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    for via in ["plain", "honoured"] {
        // The rule's queries, restricted to one scrape job (as if it were the only one).
        let series = series_query.replace('{', &format!("{{via=\"{via}\","));
        let metrics = metrics_query.replace(
            "<<.Series>>{",
            &format!("opsloop_forecast_value{{via=\"{via}\","),
        );
        let (listed, value) = wait_for(&format!("the {via} scrape through the rule"), || {
            let listed = get(format!("/api/v1/series?match[]={}", encode(&series)));
            let listed = listed["data"].as_array().filter(|a| !a.is_empty())?.clone();
            let result = get(format!("/api/v1/query?query={}", encode(&metrics)));
            let value = result["data"]["result"][0]["value"][1]
                .as_str()?
                .parse::<f64>()
                .ok()?;
            Some((listed, value))
        });
        assert!(value.is_finite(), "{via}: {value}");
        let labels = &listed[0];
        if via == "plain" {
            assert_eq!(labels["exported_job"], "demand", "{labels}");
            assert_eq!(labels["job"], "opsloop-agent", "{labels}");
        } else {
            assert_eq!(labels["job"], "demand", "{labels}");
        }
    }
    drop(scraper);
}

/// The value of the first exported sample of `family` (`opsloop_forecast_value`).
fn gauge(api: u16, family: &str) -> Option<f64> {
    let (_, text) = http(api, "GET", "/metrics", "", None);
    text.lines()
        .find(|l| l.starts_with(&format!("{family}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn job_view(api: u16) -> Option<Value> {
    let (status, body) = http(api, "GET", "/api/v1/forecasts/demand", "", None);
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

#[test]
fn agent_predicts_a_breach_once_and_falls_back_when_its_model_goes_wrong() {
    if !prometheus_available() {
        return;
    }
    // Ten minutes of a ramp up to now (0.1 per second: the threshold 175 is crossed within
    // the two-minute horizon), then, from half a minute on, a series that swings between 200 and
    // 600 every second: no forecast of it comes near, and both sides are above the threshold.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let breaks = now + 30;
    let mut om = String::from("# HELP demand Requests per second.\n# TYPE demand gauge\n");
    for t in now - 600..now + 400 {
        let v = if t < breaks {
            100.0 + 0.1 * (t - (now - 600)) as f64 + (t % 3) as f64 * 0.01
        } else if t % 2 == 0 {
            200.0
        } else {
            600.0
        };
        om.push_str(&format!("demand{{instance=\"a\"}} {v} {t}\n"));
    }
    om.push_str("# EOF\n");
    let dir = tempfile::tempdir().unwrap();
    let prometheus_dir = dir.path().join("prometheus");
    std::fs::create_dir(&prometheus_dir).unwrap();
    let prometheus = start_prometheus(&prometheus_dir, &om);

    let api = free_port();
    let config = dir.path().join("opsloop.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{api}\ndata_dir: {}\nforecasts:\n  - name: demand\n    prometheus: {}\n    query: demand\n    range: 10m\n    step: 1s\n    every: 2s\n    horizon: 2m\n    threshold: 175\n    ahead: [5s]\n    check_window: 30s\n",
            dir.path().join("data").display(),
            prometheus.url,
        ),
    )
    .unwrap();
    let mut agent = start_agent(&config);
    wait_for("readiness", || {
        (http(api, "GET", "/readyz", "", None).0 == 200).then_some(())
    });

    // The ramp: one breach event, the gauge follows the forecast.
    let breach = wait_for("a breach event", || {
        stored_events(api, "type=io.opsloop.forecast.breach_predicted")
            .into_iter()
            .next()
    });
    assert_eq!(breach["subject"], "demand{instance=\"a\"}");
    assert_eq!(breach["data"]["job"], "demand");
    assert_eq!(breach["data"]["labels"]["instance"], "a");
    assert!(breach["data"]["model"].is_string(), "{breach}");
    assert!(breach["data"]["earliest_80"].is_string(), "{breach}");
    assert_eq!(breach["data"]["threshold"]["value"], 175.0);
    let view = job_view(api).unwrap();
    let series = &view["series"][0];
    assert_eq!(series["labels"]["instance"], "a", "{view}");
    assert!(!series["points"].as_array().unwrap().is_empty(), "{view}");
    assert!(series["breach"]["open_since"].is_string(), "{view}");
    let seconds_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if seconds_now + 5 < breaks {
        // Still on the ramp, where the model is right: the gauge is the forecast.
        assert_eq!(series["gauges"][0]["source"], "forecast", "{view}");
        assert_eq!(series["degraded"], false, "{view}");
    }
    let (status, list) = http(api, "GET", "/api/v1/forecasts", "", None);
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["forecasts"][0]["job"], "demand");
    assert_eq!(http(api, "GET", "/api/v1/forecasts/nope", "", None).0, 404);

    // The adapter rule `forecast hpa --external` prints serves the gauge whichever way
    // Prometheus scrapes the agent.
    adapter_rule_serves_the_gauge(dir.path(), api);

    // The swings: degraded, and the gauge shows the latest observation, not the forecast.
    let (observed, view) = wait_for("the gauge to fall back to the observation", || {
        let view = job_view(api)?;
        let s = &view["series"][0];
        if s["degraded"] != true || s["gauges"][0]["source"] != "observation" {
            return None;
        }
        let observed = s["last_observation"]["value"].as_f64()?;
        // The view and /metrics are read apart: a run may fall between them.
        (gauge(api, "opsloop_forecast_value") == Some(observed)).then_some((observed, view))
    });
    assert!(observed == 200.0 || observed == 600.0, "{view}");
    assert!(view["series"][0]["mape"].as_f64().unwrap() > 0.15, "{view}");
    assert_eq!(gauge(api, "opsloop_forecast_degraded"), Some(1.0));
    let degraded = stored_events(api, "type=io.opsloop.forecast.degraded");
    assert_eq!(degraded.len(), 1, "{degraded:?}");
    assert_eq!(degraded[0]["subject"], "demand{instance=\"a\"}");
    assert!(degraded[0]["data"]["mape"].as_f64().unwrap() > 0.15);
    // Both sides of the swing are above the threshold: still the one breach window.
    let breaches = stored_events(api, "type=io.opsloop.forecast.breach_predicted");
    assert_eq!(breaches.len(), 1, "{breaches:?}");

    // The state is on disk for the next start.
    stop_agent(&mut agent);
    let state: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("data/forecasts/demand.json")).unwrap(),
    )
    .unwrap();
    let saved = &state["series"]["demand{instance=\"a\"}"];
    assert_eq!(saved["degraded"], true, "{state}");
    assert!(saved["breach"].is_object(), "{state}");
    drop(prometheus);
}
