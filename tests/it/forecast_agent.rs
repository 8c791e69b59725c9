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

use crate::forecast::{on_path, start_prometheus};
use crate::run::{http, start_agent, stop_agent, stored_events, wait_for};

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
    if !on_path("prometheus") || !on_path("promtool") {
        println!("skipped: prometheus and promtool are not on PATH (Debian package `prometheus`)");
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
