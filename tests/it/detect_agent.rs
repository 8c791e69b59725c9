//! The metric anomaly jobs inside `opsloop run`, end to end: a real Prometheus loaded with a
//! series that spikes, an agent following it, the anomaly and resolved events on the bus and
//! in the API, the score gauge in `/metrics`, and a restart that continues from the saved
//! state.

use serde_json::Value;

use crate::forecast::{prometheus_available, start_prometheus};
use crate::run::{http, start_agent, stop_agent, stored_events, wait_for};
use opsloop_bus::testing::free_port;

const STEP_S: i64 = 15;

/// 600 points every 15 s up to now (a gentle cycle), a spike 40 points before the end.
/// Returns the OpenMetrics text and the spike's time (Unix s).
fn history() -> (String, i64) {
    let now = opsloop_core::time::now_ms() / 1000;
    let end = now - now % STEP_S;
    let points = 600;
    let spike = points - 40;
    let mut om = String::from("# HELP demand Requests per second.\n# TYPE demand gauge\n");
    for i in 0..points {
        let t = end - (points - 1 - i) * STEP_S;
        let bump = if (spike..spike + 3).contains(&i) {
            60.0
        } else {
            0.0
        };
        let v = 20.0 + 3.0 * (i as f64 / 25.0).sin() + (i % 5) as f64 * 0.1 + bump;
        om.push_str(&format!("demand{{instance=\"a\"}} {v} {t}\n"));
    }
    om.push_str("# EOF\n");
    (om, end - (points - 1 - spike) * STEP_S)
}

fn episodes(api: u16) -> Option<Value> {
    let (status, body) = http(api, "GET", "/api/v1/metric-anomalies", "", None);
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

/// Runs of the job so far, from the API.
fn runs(api: u16) -> u64 {
    episodes(api)
        .and_then(|v| v["jobs"][0]["runs"].as_u64())
        .unwrap_or(0)
}

#[test]
fn an_agent_following_a_real_prometheus_reports_the_spike_once() {
    // Skipped without prometheus, except in CI (`CI` set), where that fails.
    if !prometheus_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (om, spike_s) = history();
    let prom = dir.path().join("prom");
    std::fs::create_dir_all(&prom).unwrap();
    let server = start_prometheus(&prom, &om);
    let api = free_port();
    let data = dir.path().join("data");
    let config = dir.path().join("opsloop.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{api}\ndata_dir: {}\nmetric_anomalies:\n  - name: demand\n    prometheus: {}\n    query: demand\n    step: 15s\n    every: 1s\n    lookback: 3h\n    forget_after: 1d\n",
            data.display(),
            server.url
        ),
    )
    .unwrap();
    let mut agent = start_agent(&config);
    wait_for("readiness", || {
        (http(api, "GET", "/readyz", "", None).0 == 200).then_some(())
    });

    let key = "demand{instance=\"a\"}";
    let event = wait_for("the anomaly event", || {
        stored_events(api, "type=io.opsloop.metric.anomaly")
            .into_iter()
            .next()
    });
    assert_eq!(event["subject"], key);
    assert_eq!(event["data"]["job"], "demand");
    assert_eq!(event["data"]["labels"]["instance"], "a");
    assert_eq!(
        event["data"]["start"],
        opsloop_core::time::format_rfc3339(spike_s * 1000)
    );
    assert!(event["data"]["score"].as_f64().unwrap() >= 0.35, "{event}");
    assert!(event["data"]["value"].as_f64().unwrap() > 70.0, "{event}");

    let listed = wait_for("the episode in the API", || {
        let v = episodes(api)?;
        (v["episodes"][0]["id"] == event["id"]).then_some(v)
    });
    assert_eq!(listed["episodes"][0]["series"], key);
    assert_eq!(listed["jobs"][0]["name"], "demand");
    assert_eq!(listed["jobs"][0]["failures"], 0);
    let (_, metrics) = http(api, "GET", "/metrics", "", None);
    assert!(
        metrics.contains(
            "opsloop_metric_anomaly_score{job=\"demand\",metric_name=\"demand\",instance=\"a\"}"
        ),
        "{metrics}"
    );

    // The episode ends once the scores stay below the threshold: one resolved event for it.
    let resolved = wait_for("the resolved event", || {
        stored_events(api, "type=io.opsloop.metric.anomaly_resolved")
            .into_iter()
            .next()
    });
    assert_eq!(resolved["subject"], key);
    assert_eq!(resolved["data"]["episode"], event["id"]);
    assert_eq!(resolved["data"]["reason"], "scores_below_threshold");
    assert_eq!(resolved["data"]["start"], event["data"]["start"]);

    // Later runs add nothing for the same episode.
    let before = runs(api);
    wait_for("more runs", || (runs(api) >= before + 3).then_some(()));
    assert_eq!(
        stored_events(api, "type=io.opsloop.metric.anomaly").len(),
        1
    );

    // A restart continues from the saved state: the spike is not reported again.
    stop_agent(&mut agent);
    assert!(data.join("metric-anomalies/demand.json").is_file());
    let mut agent = start_agent(&config);
    wait_for("readiness after the restart", || {
        (http(api, "GET", "/readyz", "", None).0 == 200).then_some(())
    });
    wait_for("runs after the restart", || (runs(api) >= 3).then_some(()));
    let listed = episodes(api).unwrap();
    assert_eq!(listed["jobs"][0]["state_error"], Value::Null, "{listed}");
    assert_eq!(
        listed["episodes"][0]["id"], event["id"],
        "episodes come back"
    );
    assert_eq!(
        stored_events(api, "type=io.opsloop.metric.anomaly").len(),
        1
    );
    stop_agent(&mut agent);
}
