//! The manifest audit jobs inside `opsloop run`, end to end: a job on a directory with a bad
//! manifest, its finding event on the bus and in `GET /api/v1/audit/findings`, the file
//! fixed and the resolved event seen through the file watcher, and a restart that does not
//! report the open findings again. The agent's data directory lies inside the audited one
//! (as the default `data_dir` lies inside `paths: ["."]`): its files are not audited.

use serde_json::Value;

use crate::run::{http, metric, start_agent, stop_agent, stored_events, wait_for};
use opsloop_bus::testing::free_port;

const BAD_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
spec:
  hostNetwork: true
  containers:
    - name: app
      image: nginx:1.27
";

fn findings(api: u16, query: &str) -> Option<Value> {
    let (status, body) = http(
        api,
        "GET",
        &format!("/api/v1/audit/findings{query}"),
        "",
        None,
    );
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

fn runs(api: u16) -> u64 {
    findings(api, "")
        .and_then(|v| v["jobs"][0]["runs"].as_u64())
        .unwrap_or(0)
}

fn host_network(api: u16, kind: &str) -> Vec<Value> {
    stored_events(api, &format!("type={kind}"))
        .into_iter()
        .filter(|e| e["data"]["check"] == "host-network")
        .collect()
}

#[test]
fn an_agent_reports_a_finding_once_and_its_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let pod = manifests.join("pod.yaml");
    std::fs::write(&pod, BAD_POD).unwrap();
    let api = free_port();
    let data = manifests.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("leftover.yaml"), BAD_POD).unwrap();
    let config = dir.path().join("opsloop.yaml");
    // An hour's schedule: within the test only the start and the file change run it.
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{api}\ndata_dir: {}\naudits:\n  - name: site\n    paths: [{}]\n    every: 1h\n",
            data.display(),
            manifests.display()
        ),
    )
    .unwrap();
    let mut agent = start_agent(&config);
    wait_for("readiness", || {
        (http(api, "GET", "/readyz", "", None).0 == 200).then_some(())
    });

    let event = wait_for("the finding event", || {
        host_network(api, "io.opsloop.audit.finding")
            .into_iter()
            .next()
    });
    assert_eq!(event["data"]["job"], "site");
    assert_eq!(event["data"]["severity"], "error");
    assert_eq!(event["data"]["line"], 7);
    assert_eq!(event["data"]["field"], "spec.hostNetwork");
    assert_eq!(event["data"]["object"]["kind"], "Pod");
    assert_eq!(event["data"]["object"]["namespace"], "shop");
    assert_eq!(event["subject"], pod.display().to_string());

    let listed = findings(api, "?check=host-network").unwrap();
    let listed = listed["findings"].as_array().unwrap();
    assert_eq!(
        listed.len(),
        1,
        "the data directory is not audited: {listed:?}"
    );
    assert_eq!(listed[0]["file"], pod.display().to_string());
    assert_eq!(listed[0]["object"]["name"], "web");
    assert!(listed[0]["first_seen"].as_str().unwrap().ends_with('Z'));
    let errors = findings(api, "?severity=error").unwrap();
    let errors = errors["findings"].as_array().unwrap();
    assert!(!errors.is_empty() && errors.iter().all(|f| f["severity"] == "error"));
    let all = findings(api, "").unwrap();
    let open = all["findings"].as_array().unwrap().len();
    assert_eq!(all["jobs"][0]["errors"], 0, "{all}");
    assert_eq!(all["jobs"][0]["input_errors_total"], 0, "{all}");
    assert_eq!(
        stored_events(api, "type=io.opsloop.audit.finding").len(),
        open,
        "one event per open finding"
    );
    assert!(metric(api, "opsloop_audit_findings_reported_total").unwrap_or(0) >= 1);

    // Fixed: the watcher runs the job, the finding resolves with the same fingerprint.
    std::fs::write(&pod, BAD_POD.replace("  hostNetwork: true\n", "")).unwrap();
    let resolved = wait_for("the resolved event", || {
        host_network(api, "io.opsloop.audit.resolved")
            .into_iter()
            .next()
    });
    assert_eq!(resolved["fingerprint"], event["fingerprint"]);
    wait_for("the finding gone from the API", || {
        let v = findings(api, "?check=host-network")?;
        v["findings"].as_array()?.is_empty().then_some(())
    });
    assert_eq!(host_network(api, "io.opsloop.audit.finding").len(), 1);

    // A restart loads the job's state: nothing is reported again.
    let before = stored_events(api, "type=io.opsloop.audit.finding").len();
    stop_agent(&mut agent);
    assert!(data.join("audit/site.json").is_file());
    let mut agent = start_agent(&config);
    wait_for("readiness after the restart", || {
        (http(api, "GET", "/readyz", "", None).0 == 200).then_some(())
    });
    wait_for("a run after the restart", || (runs(api) >= 1).then_some(()));
    assert_eq!(
        stored_events(api, "type=io.opsloop.audit.finding").len(),
        before
    );
    assert_eq!(host_network(api, "io.opsloop.audit.resolved").len(), 1);
    stop_agent(&mut agent);
}
