//! `opsloop run` with the shipped `examples/log-oom-restart.yaml`: two OOM lines posted to
//! the log ingest endpoint match the built-in `oom-kill` rule, the playbook's threshold opens
//! one incident that waits for approval, and the approval (operator token) makes the agent
//! restart the deployment through the Kubernetes API: a stand-in API server on loopback
//! answers with a recorded API-server response and records the request it got.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use opsloop_bus::testing::free_port;
use serde_json::Value;

use crate::heal_run::start_example;
use crate::run::{http, stop_agent, wait_for};

const TOKEN: &str = "heal-oom-test-token";

/// One request the stand-in API server got: method, path and query, body.
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// Answers every request with `answer` (a recorded API-server response), one connection at a
/// time, and records it.
fn kube_api(answer: &'static str) -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut parts = first.split_whitespace();
            let method = parts.next().unwrap_or_default().to_string();
            let path = parts.next().unwrap_or_default().to_string();
            record.lock().unwrap().push((
                method,
                path,
                String::from_utf8_lossy(&body).into_owned(),
            ));
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (port, seen)
}

fn incidents(api: u16) -> Vec<Value> {
    let (_, body) = http(api, "GET", "/api/v1/incidents", "", Some(TOKEN));
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["incidents"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn the_oom_example_restarts_the_deployment_after_approval() {
    let answer = include_str!("../../crates/cluster/tests/fixtures/deployment_patched.json");
    let (kube_port, seen) = kube_api(answer);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: http://127.0.0.1:{kube_port}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\nusers:\n- name: test\n  user: {{}}\ncurrent-context: test\n"
        ),
    )
    .unwrap();

    let api = free_port();
    let mut agent = start_example(
        "log-oom-restart.yaml",
        api,
        &dir.path().join("data"),
        &[("KUBECONFIG", kubeconfig.as_os_str())],
        TOKEN,
    );

    // One OOM line is below the playbook's threshold (two within ten minutes).
    let line = |pod: &str| {
        format!(
            r#"{{"message": "Memory cgroup out of memory: Killed process 4242 (java)", "namespace": "shop", "deployment": "checkout", "pod": "{pod}"}}"#
        )
    };
    let (status, body) = http(
        api,
        "POST",
        "/api/v1/logs",
        &line("checkout-1"),
        Some(TOKEN),
    );
    assert_eq!(status, 202, "{body}");
    wait_for("the first rule match", || {
        let (_, body) = http(
            api,
            "GET",
            "/api/v1/events?type=io.opsloop.log.rule_matched",
            "",
            Some(TOKEN),
        );
        body.contains("oom-kill").then_some(())
    });
    assert!(incidents(api).is_empty());
    let (status, body) = http(
        api,
        "POST",
        "/api/v1/logs",
        &line("checkout-2"),
        Some(TOKEN),
    );
    assert_eq!(status, 202, "{body}");
    let id = wait_for("the incident awaiting approval", || {
        let list = incidents(api);
        let first = list.first()?;
        (first["state"] == "awaiting_approval").then(|| first["id"].as_str().map(str::to_string))?
    });
    assert!(seen.lock().unwrap().is_empty(), "acted before approval");

    // The approval needs an operator token; then the deployment is restarted, once.
    let path = format!("/api/v1/incidents/{id}/approve");
    assert_eq!(http(api, "POST", &path, "{}", None).0, 401);
    let (status, body) = http(api, "POST", &path, r#"{"comment": "go"}"#, Some(TOKEN));
    assert!((200..300).contains(&status), "{status} {body}");
    let incident = wait_for("the incident to resolve", || {
        let list = incidents(api);
        let first = list.first()?.clone();
        matches!(
            first["state"].as_str(),
            Some("resolved" | "failed" | "escalated")
        )
        .then_some(first)
    });
    assert_eq!(incident["state"], "resolved", "{incident}");
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let (method, path, body) = &requests[0];
    assert_eq!(method, "PATCH");
    assert!(
        path.starts_with("/apis/apps/v1/namespaces/shop/deployments/checkout"),
        "{path}"
    );
    assert!(body.contains("kubectl.kubernetes.io/restartedAt"), "{body}");
    stop_agent(&mut agent);
}
