//! The self-healing endpoints and roles, with a fake [`HealApi`].

use super::*;
use opsloop_store::{StoredIncident, TrailAppend};

/// Records what is published; hook `echo` maps any body, `broken` always fails.
#[derive(Default)]
struct FakeHeal {
    published: Mutex<Vec<Event>>,
    fail_publish: AtomicBool,
}

impl HealApi for FakeHeal {
    fn publish(&self, events: Vec<Event>) -> Result<(), String> {
        if self.fail_publish.load(Ordering::Acquire) {
            return Err("bus down".into());
        }
        self.published
            .lock()
            .map_err(|e| e.to_string())?
            .extend(events);
        Ok(())
    }

    fn map_hook(&self, name: &str, body: &serde_json::Value) -> Option<Result<Event, String>> {
        match name {
            "echo" => Some(Ok(Event::new(
                "io.opsloop.hook.echo",
                "/hooks/echo",
                None,
                0,
                body.clone(),
            ))),
            "broken" => Some(Err("no such key: data.host".into())),
            _ => None,
        }
    }
}

impl FakeHeal {
    fn taken(&self) -> Vec<Event> {
        std::mem::take(&mut *self.published.lock().unwrap())
    }
}

/// A state with the fake heal loop and three named tokens besides the legacy one.
fn heal_state() -> (ApiState, Arc<FakeHeal>, mpsc::Receiver<IngestedRecord>) {
    let (mut s, rx) = state(Some("admin-secret"));
    let heal = Arc::new(FakeHeal::default());
    s.heal = Some(heal.clone());
    s.tokens = Arc::from(vec![
        ApiToken::new("grafana", Role::Viewer, "view-secret"),
        ApiToken::new("alice", Role::Operator, "op-secret"),
        ApiToken::new("root", Role::Admin, "root-secret"),
    ]);
    s.max_body_bytes = 64 << 10;
    (s, heal, rx)
}

fn webhook(status: &str, extra: &str) -> String {
    format!(
        r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"DiskFull\"}}","truncatedAlerts":0,
        "status":"{status}","receiver":"opsloop","groupLabels":{{"alertname":"DiskFull"}},
        "commonLabels":{{"alertname":"DiskFull","instance":"db1"}},"commonAnnotations":{{}},
        "externalURL":"http://am:9093","alerts":[
          {{"status":"{status}","labels":{{"alertname":"DiskFull","instance":"db1"}},
            "annotations":{{}},"startsAt":"2026-11-29T06:00:00Z","endsAt":"0001-01-01T00:00:00Z",
            "generatorURL":"http://prom","fingerprint":"f1"}},
          {{"status":"{status}","labels":{{"alertname":"DiskFull","instance":"db2"}},
            "annotations":{{}},"startsAt":"2026-11-29T06:00:00Z","endsAt":"0001-01-01T00:00:00Z",
            "generatorURL":"http://prom","fingerprint":"f2"}}]{extra}}}"#
    )
}

fn incident(id: &str, state: &str, created_ms: i64) -> StoredIncident {
    StoredIncident {
        id: id.into(),
        playbook: "disk-full".into(),
        key: "db1".into(),
        target: Some("db1".into()),
        state: state.into(),
        mode: "approve".into(),
        created_ms,
        updated_ms: created_ms,
        data: json!({"id": id, "state": state, "steps": [{"name": "df"}]}),
    }
}

fn put(s: &ApiState, incidents: &[StoredIncident]) {
    let mut store = s.store.lock().unwrap();
    for i in incidents {
        store.put_incident(i).unwrap();
    }
}

#[tokio::test]
async fn alertmanager_notifications_become_one_event_each() {
    let (s, heal, _rx) = heal_state();
    let (status, body, text) = call(
        &s,
        post(
            "/api/v1/alertmanager",
            &webhook("firing", ""),
            Some("op-secret"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(body["accepted"], 1);
    let firing = heal.taken();
    assert_eq!(firing.len(), 1, "one event per notification, not per alert");
    let e = &firing[0];
    assert_eq!(e.kind, "io.opsloop.alert.firing");
    assert_eq!(e.source, "/alertmanager/opsloop");
    assert_eq!(e.subject.as_deref(), Some("{}:{alertname=\"DiskFull\"}"));
    assert_eq!(e.data["alerts"].as_array().map(Vec::len), Some(2));
    assert_eq!(e.data["labels"]["alertname"], "DiskFull");
    assert_eq!(body["event_ids"][0], e.id.as_str());

    // Resolved, with fields this receiver does not know: same group, same fingerprint.
    let resolved = webhook("resolved", r#","futureField":{"a":[1]},"another":null"#);
    let (status, body, text) = call(
        &s,
        post("/api/v1/alertmanager", &resolved, Some("op-secret")),
    )
    .await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{text}"
    );
    let r = heal.taken();
    assert_eq!(r[0].kind, "io.opsloop.alert.resolved");
    assert_eq!(r[0].fingerprint, e.fingerprint);
}

#[tokio::test]
async fn bad_alertmanager_payloads_are_400_and_publish_nothing() {
    let (s, heal, _rx) = heal_state();
    let v3 = webhook("firing", "").replace(r#""version":"4""#, r#""version":"3""#);
    let (status, body, _) = call(&s, post("/api/v1/alertmanager", &v3, Some("op-secret"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("version \"3\""), "{message}");
    for bad in ["", "{", "[]", r#"{"version":"4"}"#, "null"] {
        assert_json_error(
            &s,
            post("/api/v1/alertmanager", bad, Some("op-secret")),
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
    let huge = webhook("firing", &format!(r#","pad":"{}""#, "x".repeat(70 << 10)));
    assert_json_error(
        &s,
        post("/api/v1/alertmanager", &huge, Some("op-secret")),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    assert!(heal.taken().is_empty());

    // A bus that fails is a 503 (Alertmanager retries), not a lost notification.
    heal.fail_publish.store(true, Ordering::Release);
    assert_json_error(
        &s,
        post(
            "/api/v1/alertmanager",
            &webhook("firing", ""),
            Some("op-secret"),
        ),
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    )
    .await;
    // Without the heal loop: 503 too.
    let (plain, _rx) = state(None);
    assert_json_error(
        &plain,
        post("/api/v1/alertmanager", &webhook("firing", ""), None),
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    )
    .await;
}

#[tokio::test]
async fn generic_hooks_map_or_answer_404_and_422() {
    let (s, heal, _rx) = heal_state();
    let (status, body, text) = call(
        &s,
        post("/api/v1/hooks/echo", r#"{"host":"db1"}"#, Some("op-secret")),
    )
    .await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{text}"
    );
    assert_eq!(heal.taken()[0].data["host"], "db1");
    assert_json_error(
        &s,
        post("/api/v1/hooks/nope", "{}", Some("op-secret")),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_json_error(
        &s,
        post("/api/v1/hooks/broken", "{}", Some("op-secret")),
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable",
    )
    .await;
    assert_json_error(
        &s,
        post("/api/v1/hooks/echo", "{not json", Some("op-secret")),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    assert!(heal.taken().is_empty());
}

#[tokio::test]
async fn roles_gate_reads_inputs_and_decisions() {
    let (s, _heal, _rx) = heal_state();
    put(&s, &[incident("inc-1", "awaiting_approval", 1)]);
    // Readers: every GET for every role, nothing without a valid token.
    for token in ["view-secret", "op-secret", "root-secret", "admin-secret"] {
        for uri in [
            "/api/v1/events",
            "/api/v1/incidents",
            "/api/v1/incidents/inc-1",
            "/api/v1/audit-log",
        ] {
            let (status, _, text) = call(&s, get_with(uri, token)).await;
            assert_eq!(status, StatusCode::OK, "{uri} with {token}: {text}");
        }
    }
    for uri in ["/api/v1/incidents", "/api/v1/audit-log"] {
        assert_json_error(&s, get(uri), StatusCode::UNAUTHORIZED, "unauthorized").await;
        assert_json_error(
            &s,
            get_with(uri, "view-secreT"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    // A viewer may not send input or decide.
    for (uri, body) in [
        ("/api/v1/alertmanager", webhook("firing", "")),
        ("/api/v1/hooks/echo", "{}".to_string()),
        ("/api/v1/logs", "[{\"message\":\"x\"}]".to_string()),
        ("/api/v1/incidents/inc-1/approve", String::new()),
        ("/api/v1/incidents/inc-1/reject", String::new()),
    ] {
        let (status, resp, _) = call(&s, post(uri, &body, Some("view-secret"))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
        assert_eq!(resp["error"]["code"], "forbidden");
        let message = resp["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("operator") && message.contains("grafana"),
            "{message}"
        );
        assert!(!message.contains("view-secret"), "the secret never shows");
        assert_eq!(
            call(&s, post(uri, &body, None)).await.0,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
    }
    // Operators and admins may; the legacy token acts as admin.
    for token in ["op-secret", "root-secret", "admin-secret"] {
        let (status, _, text) = call(&s, post("/api/v1/hooks/echo", "{}", Some(token))).await;
        assert_eq!(status, StatusCode::OK, "{token}: {text}");
    }
    // Tokens never show in Debug output.
    let shown = format!("{:?}", s.tokens);
    assert!(
        shown.contains("alice") && !shown.contains("op-secret"),
        "{shown}"
    );
}

#[tokio::test]
async fn only_legacy_token_or_only_named_tokens_work_alone() {
    let (mut s, _rx) = state(None);
    s.tokens = Arc::from(vec![ApiToken::new("grafana", Role::Viewer, "v")]);
    assert_eq!(
        call(&s, get_with("/api/v1/events", "v")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&s, get("/api/v1/events")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&s, post("/api/v1/logs", "[]", Some("v"))).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn approve_and_reject_answer_404_409_and_202() {
    let (s, heal, _rx) = heal_state();
    put(
        &s,
        &[
            incident("waiting", "awaiting_approval", 1),
            incident("other", "awaiting_approval", 2),
            incident("done", "resolved", 3),
        ],
    );
    assert_json_error(
        &s,
        post("/api/v1/incidents/nope/approve", "", Some("op-secret")),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let (status, body, _) = call(
        &s,
        post("/api/v1/incidents/done/approve", "", Some("op-secret")),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "conflict");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("resolved")),
        "{body}"
    );
    assert_json_error(
        &s,
        post(
            "/api/v1/incidents/waiting/approve",
            "{\"comment\": 3}",
            Some("op-secret"),
        ),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    let long = format!("{{\"comment\": \"{}\"}}", "x".repeat(MAX_COMMENT_CHARS + 1));
    assert_json_error(
        &s,
        post(
            "/api/v1/incidents/waiting/approve",
            &long,
            Some("op-secret"),
        ),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    assert!(heal.taken().is_empty(), "nothing published for refusals");

    let (status, body, text) = call(
        &s,
        post(
            "/api/v1/incidents/waiting/approve",
            r#"{"comment": "disk is really full"}"#,
            Some("op-secret"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert_eq!(body["approver"], "alice");
    assert_eq!(body["decision"], "approved");
    let published = heal.taken();
    assert_eq!(published.len(), 1);
    let e = &published[0];
    assert_eq!(e.kind, INCIDENT_APPROVE);
    assert_eq!(e.subject.as_deref(), Some("waiting"));
    assert_eq!(
        e.data,
        json!({"incident_id": "waiting", "approver": "alice", "comment": "disk is really full"})
    );
    assert_eq!(body["event_id"], e.id.as_str());

    // The incident still reads awaiting_approval until the engine acts: a second approval
    // or a rejection meanwhile is refused, and nothing more is published or recorded.
    for path in [
        "/api/v1/incidents/waiting/approve",
        "/api/v1/incidents/waiting/reject",
    ] {
        let (status, body, _) = call(&s, post(path, "", Some("op-secret"))).await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("approved")),
            "{body}"
        );
    }
    assert!(heal.taken().is_empty(), "a second decision was published");

    // Rejected without a body, by the legacy admin token.
    let (status, body, text) = call(
        &s,
        post("/api/v1/incidents/other/reject", "", Some("admin-secret")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let e = heal.taken().remove(0);
    assert_eq!(e.kind, INCIDENT_REJECT);
    assert_eq!(e.data["approver"], LEGACY_TOKEN_NAME);
    assert_eq!(e.data["comment"], serde_json::Value::Null);
    assert_eq!(body["trail_seq"], 2);

    // Both decisions are in the trail with their approvers, and it verifies.
    {
        let store = s.store.lock().unwrap();
        let trail = store.trail(0, 10).unwrap();
        let kinds: Vec<_> = trail
            .iter()
            .map(|r| {
                (
                    r.kind.as_str(),
                    r.actor.as_deref(),
                    r.incident_id.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("approved", Some("alice"), Some("waiting")),
                ("rejected", Some(LEGACY_TOKEN_NAME), Some("other"))
            ]
        );
        assert_eq!(trail[0].data["comment"], "disk is really full");
        assert!(store.verify_trail().unwrap().ok);
    }

    // A failing bus: 503 and nothing recorded.
    heal.fail_publish.store(true, Ordering::Release);
    put(&s, &[incident("third", "awaiting_approval", 4)]);
    assert_json_error(
        &s,
        post("/api/v1/incidents/third/approve", "", Some("op-secret")),
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    )
    .await;
    assert_eq!(s.store.lock().unwrap().trail(0, 10).unwrap().len(), 2);
    // The decision that could not go out does not block the next attempt.
    heal.fail_publish.store(false, Ordering::Release);
    let (status, _, text) = call(
        &s,
        post("/api/v1/incidents/third/approve", "", Some("op-secret")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
}

#[test]
fn a_settled_decision_frees_the_incident_and_the_memory_stays_bounded() {
    let gate = SettlingDecisions::default();
    let t0 = std::time::Instant::now();
    assert!(gate.claim("a", "approved", t0).is_ok());
    assert_eq!(gate.claim("a", "rejected", t0), Err("approved"));
    // After the window (an approval the engine left waiting), it may be given again.
    let later = t0 + DECISION_SETTLE;
    assert!(gate.claim("a", "approved", later).is_ok());
    for i in 0..(crate::heal::MAX_SETTLING + 10) {
        assert!(gate.claim(&format!("i{i}"), "approved", later).is_ok());
    }
    assert!(gate.by_incident.lock().unwrap().len() <= crate::heal::MAX_SETTLING);
}

#[tokio::test]
async fn incidents_list_filter_and_page() {
    let (s, _heal, _rx) = heal_state();
    let all: Vec<_> = (0..7)
        .map(|i| {
            incident(
                &format!("inc-{i}"),
                if i % 2 == 0 {
                    "resolved"
                } else {
                    "awaiting_approval"
                },
                // 2026-11-29T00:00:00Z plus i hours.
                1_795_910_400_000 + i * 3_600_000,
            )
        })
        .collect();
    put(&s, &all);
    let (status, body, text) = call(&s, get_with("/api/v1/incidents?limit=3", "view-secret")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let ids: Vec<_> = body["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids, ["inc-6", "inc-5", "inc-4"], "newest first");
    let cursor = body["next_cursor"].as_str().unwrap().to_string();
    let (_, body, _) = call(
        &s,
        get_with(
            &format!("/api/v1/incidents?limit=3&cursor={cursor}"),
            "view-secret",
        ),
    )
    .await;
    assert_eq!(body["incidents"][0]["id"], "inc-3");
    let (_, body, _) = call(
        &s,
        get_with(
            "/api/v1/incidents?state=awaiting_approval&since=2026-11-29T02:00:00Z&until=2026-11-29T05:00:00Z",
            "view-secret",
        ),
    )
    .await;
    assert_eq!(body["incidents"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["incidents"][0]["id"], "inc-3");
    assert_eq!(body["next_cursor"], serde_json::Value::Null);
    let (_, body, _) = call(
        &s,
        get_with(
            "/api/v1/incidents?playbook=disk-full&key=db1",
            "view-secret",
        ),
    )
    .await;
    assert_eq!(body["incidents"].as_array().map(Vec::len), Some(7));

    let (status, body, _) = call(&s, get_with("/api/v1/incidents/inc-2", "view-secret")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["steps"][0]["name"], "df", "the stored JSON as is");
    for (uri, status, code) in [
        ("/api/v1/incidents/nope", StatusCode::NOT_FOUND, "not_found"),
        (
            "/api/v1/incidents?cursor=zzz",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v1/incidents?since=yesterday",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/api/v1/incidents?limit=-1",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ] {
        assert_json_error(&s, get_with(uri, "view-secret"), status, code).await;
    }
}

#[tokio::test]
async fn the_audit_log_pages_with_hashes() {
    let (s, _heal, _rx) = heal_state();
    {
        let mut store = s.store.lock().unwrap();
        for i in 0..5 {
            let data = json!({"i": i});
            store
                .append_trail(
                    &TrailAppend {
                        kind: "matched",
                        incident_id: Some("inc-1"),
                        actor: None,
                        data: &data,
                    },
                    1_795_910_400_000 + i,
                )
                .unwrap();
        }
    }
    let mut seqs = Vec::new();
    let mut prev = opsloop_store::GENESIS_HASH.to_string();
    let mut after = 0;
    loop {
        let (status, body, text) = call(
            &s,
            get_with(
                &format!("/api/v1/audit-log?after={after}&limit=2"),
                "view-secret",
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        for r in body["records"].as_array().unwrap() {
            seqs.push(r["seq"].as_i64().unwrap());
            assert_eq!(r["prev_hash"], prev.as_str());
            assert_eq!(r["kind"], "matched");
            assert!(
                r["time"]
                    .as_str()
                    .unwrap()
                    .starts_with("2026-11-29T00:00:00")
            );
            prev = r["hash"].as_str().unwrap().to_string();
        }
        match body["next_after"].as_i64() {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_json_error(
        &s,
        get_with("/api/v1/audit-log?after=-3", "view-secret"),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
}
