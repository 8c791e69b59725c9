use super::*;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use opsloop_core::Event;
use tower::ServiceExt;

fn state(token: Option<&str>) -> (ApiState, mpsc::Receiver<IngestedRecord>) {
    let (tx, rx) = mpsc::channel(100);
    let store = Store::in_memory().unwrap_or_else(|e| panic!("{e}"));
    let s = ApiState {
        store: Arc::new(Mutex::new(store)),
        metrics: Arc::new(AgentMetrics::default()),
        ready: Arc::new(AtomicBool::new(false)),
        token: token.map(Arc::from),
        rules: Arc::new(|| {
            vec![RuleInfo {
                id: "oom-kill".into(),
                severity: "critical".into(),
                description: "d".into(),
                source: "builtin".into(),
                hits: 2,
            }]
        }),
        ingest: tx,
        max_body_bytes: 1024,
    };
    (s, rx)
}

async fn call(s: &ApiState, req: Request<Body>) -> (StatusCode, serde_json::Value, String) {
    let resp = router(s.clone())
        .oneshot(req)
        .await
        .unwrap_or_else(|e| match e {});
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).to_string();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        text,
    )
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap_or_default()
}

fn post(uri: &str, body: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::post(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::from(body.to_string())).unwrap_or_default()
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let (s, _rx) = state(None);
    assert_eq!(call(&s, get("/healthz")).await.0, StatusCode::OK);
    assert_eq!(
        call(&s, get("/readyz")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    s.ready.store(true, Ordering::Release);
    assert_eq!(call(&s, get("/readyz")).await.0, StatusCode::OK);
    s.metrics
        .lines_read
        .get_or_create(&SourceLabel {
            source: "syslog".into(),
        })
        .inc_by(3);
    let (status, _, text) = call(&s, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("opsloop_log_lines_read_total{source=\"syslog\"} 3"),
        "{text}"
    );
    assert!(text.contains("opsloop_config_reload_failures_total 0"));
    let (status, body, _) = call(&s, get("/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn events_filters_and_cursor() {
    let (s, _rx) = state(None);
    let events: Vec<Event> = (0..5)
        .map(|i| {
            Event::new(
                "io.opsloop.log.rule_matched",
                "/t",
                Some(if i < 3 { "a" } else { "b" }),
                i * 1000,
                json!({"i": i}),
            )
        })
        .collect();
    if let Ok(mut st) = s.store.lock() {
        st.append_events(&events).unwrap_or_else(|e| panic!("{e}"));
    }
    let (status, body, _) = call(&s, get("/api/v1/events?subject=a&limit=2")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["events"].as_array().map(Vec::len), Some(2));
    let cursor = body["next_cursor"].as_str().unwrap_or_default().to_string();
    let (_, body, _) = call(
        &s,
        get(&format!("/api/v1/events?subject=a&cursor={cursor}")),
    )
    .await;
    assert_eq!(body["events"].as_array().map(Vec::len), Some(1));
    assert!(body["next_cursor"].is_null());
    let (_, body, _) = call(&s, get("/api/v1/events?since=1970-01-01T00:00:03Z")).await;
    assert_eq!(body["events"].as_array().map(Vec::len), Some(2));
    let (status, body, _) = call(&s, get("/api/v1/events?since=yesterday")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("since"))
    );
    let (_, body, _) = call(&s, get("/api/v1/rules")).await;
    assert_eq!(body["rules"][0]["hits"], 2);
    let (_, body, _) = call(&s, get("/api/v1/templates")).await;
    assert_eq!(body["templates"], json!([]));
}

#[tokio::test]
async fn ingest_ndjson_and_arrays_with_token_and_limit() {
    let (s, mut rx) = state(Some("s3cret"));
    let ndjson =
        "{\"message\":\"a\"}\n{\"msg\":\"b\",\"level\":\"error\"}\n{\"nothing\":1}\nnot json\n";
    let (status, _, _) = call(&s, post("/api/v1/logs", ndjson, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call(&s, post("/api/v1/logs", ndjson, Some("wrong"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body, _) = call(&s, post("/api/v1/logs", ndjson, Some("s3cret"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["rejected"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["rejected"][0]["index"], 2);
    assert_eq!(rx.recv().await.map(|r| r.message), Some("a".into()));
    assert_eq!(
        rx.recv().await.map(|r| r.level),
        Some(Some(opsloop_core::Level::Error))
    );
    let (status, body, _) = call(
        &s,
        post("/api/v1/logs", "[{\"log\":\"c\"}]", Some("s3cret")),
    )
    .await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (StatusCode::ACCEPTED, Some(1))
    );
    let big = format!("{{\"message\":\"{}\"}}", "x".repeat(2000));
    let (status, body, _) = call(&s, post("/api/v1/logs", &big, Some("s3cret"))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "payload_too_large");
    let (status, _, _) = call(&s, post("/api/v1/logs", "[{\"x\":1}", Some("s3cret"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
