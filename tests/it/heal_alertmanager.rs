//! The self-healing loop fed by a real Alertmanager (Debian `prometheus-alertmanager`): alerts
//! posted to Alertmanager's API reach `opsloop run` through its webhook receiver, and the
//! shipped `examples/alert-exec.yaml` acts once per alert group, never on the resolved
//! notification, and leaves a trail that verifies.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opsloop_bus::testing::free_port;
use serde_json::Value;

use crate::heal_run::start_example;
use crate::run::{http, stop_agent, wait_for};

const TOKEN: &str = "alertmanager-test-token";

/// Stops Alertmanager when the test ends, however it ends.
struct Alertmanager(Child);

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Alertmanager on loopback, gossip off, sending every group to opsloop at once and the
/// same notification again every second (so opsloop sees repeats of one group).
fn start_alertmanager(dir: &Path, opsloop_port: u16) -> (Alertmanager, u16) {
    let port = free_port();
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: opsloop\n  group_by: [alertname, instance]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1s\nreceivers:\n  - name: opsloop\n    webhook_configs:\n      - url: http://127.0.0.1:{opsloop_port}/api/v1/alertmanager\n        send_resolved: true\n        http_config:\n          authorization:\n            credentials: {TOKEN}\n"
        ),
    )
    .unwrap();
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut am = Alertmanager(child);
    wait_for("alertmanager readiness", || {
        if let Ok(Some(status)) = am.0.try_wait() {
            panic!("alertmanager exited before it was ready: {status}");
        }
        (http(port, "GET", "/-/ready", "", None).0 == 200).then_some(())
    });
    (am, port)
}

/// `t` as RFC 3339 UTC (the civil-from-days conversion; the test crate has no date library).
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[test]
fn rfc3339_is_right_across_new_year_and_leap_days() {
    let at = |s: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
    assert_eq!(at(0), "1970-01-01T00:00:00Z");
    assert_eq!(at(1_704_067_199), "2023-12-31T23:59:59Z");
    assert_eq!(at(1_704_067_200), "2024-01-01T00:00:00Z");
    assert_eq!(at(1_709_164_800), "2024-02-29T00:00:00Z");
}

/// Posts one alert to Alertmanager's API (`ends_at` in the past resolves it).
fn post_alert(am_port: u16, ends_at: Option<SystemTime>) {
    let mut alert = serde_json::json!({
        "labels": {"alertname": "DiskFull", "instance": "db-1:9100", "severity": "critical"},
        "annotations": {"summary": "disk almost full"},
    });
    if let Some(t) = ends_at {
        alert["endsAt"] = Value::String(rfc3339(t));
    }
    let body = serde_json::json!([alert]).to_string();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", am_port)).unwrap();
    let request = format!(
        "POST /api/v2/alerts HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "alertmanager refused the alert: {answer}"
    );
}

fn count_events(api: u16, kind: &str) -> usize {
    let (status, body) = http(
        api,
        "GET",
        &format!("/api/v1/events?type={kind}&limit=1000"),
        "",
        Some(TOKEN),
    );
    if status != 200 {
        return 0;
    }
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["events"].as_array().map(Vec::len))
        .unwrap_or(0)
}

fn remediated_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("remediated.log"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn a_real_alertmanager_triggers_the_example_once_per_group() {
    if !on_path("prometheus-alertmanager") {
        println!("skipped: prometheus-alertmanager is not on PATH (Debian package)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // The sandboxed command runs as `nobody`: it must be able to write there.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let api = free_port();
    let data = dir.path().join("data");
    let mut agent = start_example(
        "alert-exec.yaml",
        api,
        &data,
        &[("OPSLOOP_EXAMPLE_DIR", out.as_os_str())],
        TOKEN,
    );

    let (_am, am_port) = start_alertmanager(dir.path(), api);
    post_alert(am_port, None);
    // Alertmanager repeats the group's firing notification every second: wait for a repeat.
    wait_for("two firing notifications of the group", || {
        (count_events(api, "io.opsloop.alert.firing") >= 2).then_some(())
    });
    wait_for("the remediation", || {
        (remediated_lines(&out) >= 1).then_some(())
    });
    // A third notification has come in after the step ran: still one line.
    let seen = count_events(api, "io.opsloop.alert.firing");
    wait_for("another firing notification", || {
        (count_events(api, "io.opsloop.alert.firing") > seen).then_some(())
    });
    assert_eq!(
        remediated_lines(&out),
        1,
        "acted more than once for one group"
    );

    // Resolved: Alertmanager sends the resolved notification; nothing acts on it.
    post_alert(am_port, Some(SystemTime::now() - Duration::from_secs(1)));
    wait_for("the resolved notification", || {
        (count_events(api, "io.opsloop.alert.resolved") >= 1).then_some(())
    });
    let (status, body) = http(api, "GET", "/api/v1/incidents", "", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let incidents: Value = serde_json::from_str(&body).unwrap();
    let list = incidents["incidents"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{incidents}");
    assert_eq!(list[0]["playbook"], "disk-full-exec", "{incidents}");
    stop_agent(&mut agent);
    assert_eq!(remediated_lines(&out), 1, "acted on the resolved alert");

    let verify = Command::new(env!("CARGO_BIN_EXE_opsloop"))
        .args(["audit-log", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "audit-log verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}
