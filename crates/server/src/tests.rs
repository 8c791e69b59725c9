use super::*;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use opsloop_core::Event;
use tower::ServiceExt;

fn state(token: Option<&str>) -> (ApiState, mpsc::Receiver<IngestedRecord>) {
    let (tx, rx) = mpsc::channel(100);
    let store = Store::in_memory().unwrap();
    let s = ApiState {
        store: Arc::new(Mutex::new(store)),
        metrics: Arc::new(AgentMetrics::default()),
        ready: Arc::new(AtomicBool::new(false)),
        token: token.map(Arc::from),
        tokens: Arc::from([]),
        heal: None,
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
        protect_metrics: false,
        views: crate::ReadModels::default(),
        max_records_per_request: 1000,
        max_record_bytes: 1 << 20,
        max_concurrent_ingest: 4,
        settling: Default::default(),
    };
    (s, rx)
}

async fn call(s: &ApiState, req: Request<Body>) -> (StatusCode, serde_json::Value, String) {
    let (status, _, body, text) = call_on(router(s.clone()), req).await;
    (status, body, text)
}

/// Status, headers, body as JSON (Null if it is not) and as text.
async fn call_on(
    app: Router,
    req: Request<Body>,
) -> (StatusCode, HeaderMap, serde_json::Value, String) {
    let resp = app.oneshot(req).await.unwrap_or_else(|e| match e {});
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).to_string();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        text,
    )
}

/// Asserts the documented JSON error with this status and code.
async fn assert_json_error(s: &ApiState, req: Request<Body>, status: StatusCode, code: &str) {
    let what = format!("{} {}", req.method(), req.uri());
    let (got, headers, body, text) = call_on(router(s.clone()), req).await;
    assert_eq!(got, status, "{what}: {text}");
    assert_eq!(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{what}: {text}"
    );
    assert_eq!(body["error"]["code"], code, "{what}: {text}");
    assert!(body["error"]["message"].is_string(), "{what}: {text}");
}

fn get_with(uri: &str, token: &str) -> Request<Body> {
    Request::get(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap_or_default()
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
        st.append_events(&events, 0).unwrap();
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
    assert_eq!(body["rejected"], 2);
    assert_eq!(body["rejections"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["rejections"][0]["index"], 2);
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

#[tokio::test]
async fn a_token_guards_every_endpoint_but_health_and_readiness() {
    let (mut s, _rx) = state(Some("s3cret"));
    for uri in ["/api/v1/events", "/api/v1/templates", "/api/v1/rules"] {
        let (status, headers, body, _) = call_on(router(s.clone()), get(uri)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(
            headers.get(header::WWW_AUTHENTICATE).map(|v| v.as_bytes()),
            Some(&b"Bearer"[..]),
            "{uri}"
        );
        assert_eq!(body["error"]["code"], "unauthorized");
        assert_json_error(&s, get(uri), StatusCode::UNAUTHORIZED, "unauthorized").await;
        for wrong in ["s3cre", "s3cret!", "S3CRET", ""] {
            let (status, _, _) = call(&s, get_with(uri, wrong)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} with {wrong:?}");
        }
        let (status, _, text) = call(&s, get_with(uri, "s3cret")).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {text}");
        let lower = Request::get(uri)
            .header("authorization", "bearer s3cret")
            .body(Body::empty())
            .unwrap_or_default();
        assert_eq!(call(&s, lower).await.0, StatusCode::OK, "{uri}");
    }
    assert_eq!(call(&s, get("/healthz")).await.0, StatusCode::OK);
    assert_eq!(
        call(&s, get("/readyz")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(call(&s, get("/metrics")).await.0, StatusCode::OK);
    s.protect_metrics = true;
    assert_json_error(
        &s,
        get("/metrics"),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(
        call(&s, get_with("/metrics", "s3cret")).await.0,
        StatusCode::OK
    );
    // Without a token, protect_metrics changes nothing: everything stays open.
    let (mut open, _rx) = state(None);
    open.protect_metrics = true;
    for uri in ["/metrics", "/api/v1/events", "/api/v1/rules"] {
        assert_eq!(call(&open, get(uri)).await.0, StatusCode::OK, "{uri}");
    }
}

#[test]
fn secrets_compare_equal_only_when_equal() {
    assert!(auth::same_secret(b"abc", b"abc"));
    assert!(auth::same_secret(b"", b""));
    assert!(!auth::same_secret(b"abd", b"abc"));
    assert!(!auth::same_secret(b"ab", b"abc"));
    assert!(!auth::same_secret(b"abcd", b"abc"));
    assert!(!auth::same_secret(b"ab", b"ab\0"));
    assert!(!auth::same_secret(b"", b"abc"));
}

#[tokio::test]
async fn every_error_is_the_json_error() {
    let (s, _rx) = state(None);
    for uri in [
        "/api/v1/events?limit=abc",
        "/api/v1/events?limit=-1",
        "/api/v1/events?limit=1e3",
        "/api/v1/templates?limit=abc",
        "/api/v1/templates?limit=-1",
    ] {
        assert_json_error(&s, get(uri), StatusCode::BAD_REQUEST, "bad_request").await;
        let (_, body, _) = call(&s, get(uri)).await;
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("limit")),
            "{uri}: {body}"
        );
    }
    assert_json_error(&s, get("/nope"), StatusCode::NOT_FOUND, "not_found").await;
    assert_json_error(
        &s,
        get("/api/v1/logs"),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    let delete = Request::delete("/api/v1/events")
        .body(Body::empty())
        .unwrap_or_default();
    let (status, headers, body, _) = call_on(router(s.clone()), delete).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert!(headers.contains_key(header::ALLOW), "Allow is kept");
    let big = format!("{{\"message\":\"{}\"}}", "x".repeat(2000));
    assert_json_error(
        &s,
        post("/api/v1/logs", &big, None),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
}

#[tokio::test]
async fn impossible_times_and_negative_cursors_are_refused() {
    let (s, _rx) = state(None);
    for (query, name) in [
        ("cursor=-1", "cursor"),
        ("cursor=x", "cursor"),
        ("since=2026-02-30T00:00:00Z", "since"),
        ("until=2026-04-31T00:00:00Z", "until"),
        ("since=2025-02-29T00:00:00Z", "since"),
        ("until=9999-12-31T23:59:60Z", "until"),
        ("since=10000-01-01T00:00:00Z", "since"),
        ("since=0000-01-01T00:00:00%2B01:00", "since"),
        ("until=9999-12-31T23:59:59-01:00", "until"),
        ("since=2026-01-01T00:00:00Zjunk", "since"),
        ("since=2026-13-01T00:00:00Z", "since"),
        ("since=2026-01-01T24:00:00Z", "since"),
    ] {
        let uri = format!("/api/v1/events?{query}");
        assert_json_error(&s, get(&uri), StatusCode::BAD_REQUEST, "bad_request").await;
        let (_, body, _) = call(&s, get(&uri)).await;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(name), "{query}: {message}");
    }
    for query in [
        "cursor=0",
        "since=2024-02-29T00:00:00Z",
        "since=0000-01-01T00:00:00Z",
        "until=9999-12-31T23:59:59.999Z",
    ] {
        let (status, _, text) = call(&s, get(&format!("/api/v1/events?{query}"))).await;
        assert_eq!(status, StatusCode::OK, "{query}: {text}");
    }
}

#[tokio::test]
async fn time_filters_compare_instants_not_strings() {
    let (s, _rx) = state(None);
    let events: Vec<Event> = (0..5)
        .map(|i| Event::new("t", "/t", None, i * 1000, json!({"i": i})))
        .collect();
    if let Ok(mut st) = s.store.lock() {
        st.append_events(&events, 0).unwrap();
    }
    // As strings, "1970-01-01T01:00:02+01:00" sorts after every stored
    // "1970-01-01T00:00:0N.000Z"; as instants it is 00:00:02Z.
    let (status, body, text) = call(
        &s,
        get("/api/v1/events?since=1970-01-01T01:00:02%2B01:00&until=1970-01-01T00:00:04Z"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let seen: Vec<_> = body["events"]
        .as_array()
        .map(|a| a.iter().map(|e| e["data"]["i"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(seen, [json!(2), json!(3)]);
}

#[tokio::test]
async fn ndjson_with_a_bom_and_oversized_announcements() {
    let (s, mut rx) = state(None);
    let body = "\u{feff}{\"message\":\"first\"}\n{\"message\":\"second\"}\n";
    let (status, body, text) = call(&s, post("/api/v1/logs", body, None)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(rx.recv().await.map(|r| r.message), Some("first".into()));
    assert_eq!(rx.recv().await.map(|r| r.message), Some("second".into()));
    // A small body that announces a huge one: refused on the header alone.
    let req = Request::post("/api/v1/logs")
        .header(header::CONTENT_LENGTH, "99999999999")
        .body(Body::from("{\"message\":\"x\"}"))
        .unwrap_or_default();
    assert_json_error(&s, req, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let req = Request::post("/api/v1/logs")
        .header(header::CONTENT_LENGTH, "999999999999999999999999999")
        .body(Body::from("{\"message\":\"x\"}"))
        .unwrap_or_default();
    assert_json_error(&s, req, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert!(rx.try_recv().is_err(), "nothing was forwarded");
}

#[tokio::test]
async fn floods_of_bad_records_get_a_short_answer() {
    let (mut s, _rx) = state(None);
    s.max_body_bytes = 4 << 20;
    s.max_records_per_request = 1_000_000;
    let n = 300_000;
    let array = format!("[{}{{}}]", "{},".repeat(n - 1));
    let ndjson = "{}\n".repeat(n);
    for body in [array, ndjson] {
        let (status, json, text) = call(&s, post("/api/v1/logs", &body, None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "nothing accepted");
        assert_eq!(json["accepted"], 0);
        assert_eq!(json["rejected"], n);
        let listed = json["rejections"].as_array().map(Vec::len);
        assert_eq!(listed, Some(10));
        assert_eq!(json["rejections"][9]["index"], 9);
        assert!(text.len() < 2_000, "{} bytes", text.len());
    }
    assert_eq!(s.metrics.ingest_rejected.get(), 2 * n as u64);
}

#[tokio::test]
async fn requests_over_the_record_limit_are_refused_whole() {
    let (mut s, mut rx) = state(None);
    s.max_records_per_request = 3;
    let four = "{\"msg\":\"a\"}\n{\"msg\":\"b\"}\n{\"msg\":\"c\"}\n{\"msg\":\"d\"}\n";
    let four_array = "[{\"msg\":\"a\"},{\"msg\":\"b\"},{\"msg\":\"c\"},{\"msg\":\"d\"}]";
    for body in [four, four_array] {
        assert_json_error(
            &s,
            post("/api/v1/logs", body, None),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_records",
        )
        .await;
        let (_, json, _) = call(&s, post("/api/v1/logs", body, None)).await;
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains('3')),
            "{json}"
        );
    }
    assert!(rx.try_recv().is_err(), "nothing was accepted");
    let three = "[{\"msg\":\"a\"},{\"msg\":\"b\"},{\"msg\":\"c\"}]";
    let (status, json, _) = call(&s, post("/api/v1/logs", three, None)).await;
    assert_eq!(
        (status, json["accepted"].as_u64()),
        (StatusCode::ACCEPTED, Some(3))
    );
}

#[tokio::test]
async fn ingest_beyond_the_concurrency_limit_is_refused_not_queued() {
    let (mut s, _unused) = state(None);
    let (tx, mut rx) = mpsc::channel(1);
    s.ingest = tx;
    s.max_concurrent_ingest = 1;
    let app = router(s.clone());
    let three = "{\"msg\":\"a\"}\n{\"msg\":\"b\"}\n{\"msg\":\"c\"}\n";
    let first = tokio::spawn(call_on(app.clone(), post("/api/v1/logs", three, None)));
    // The first request holds its slot while it waits on the full pipeline.
    let mut waited = 0;
    while s.ingest.capacity() > 0 {
        assert!(
            waited < 2_000,
            "the first request never filled the pipeline"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        waited += 1;
    }
    let (status, headers, body, text) =
        call_on(app.clone(), post("/api/v1/logs", three, None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert_eq!(
        headers.get(header::RETRY_AFTER).map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert_eq!(body["error"]["code"], "busy");
    assert_eq!(s.metrics.ingest_throttled.get(), 1);
    assert!(
        s.metrics
            .encode()
            .contains("opsloop_ingest_throttled_requests_total 1")
    );
    for want in ["a", "b", "c"] {
        assert_eq!(rx.recv().await.map(|r| r.message), Some(want.into()));
    }
    let (status, _, body, _) = first.await.unwrap();
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (StatusCode::ACCEPTED, Some(3))
    );
    // The slot is free again.
    let (status, _, _, _) = call_on(app, post("/api/v1/logs", "{\"msg\":\"d\"}", None)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

mod heal;

struct Jobs;

impl ReadModel for Jobs {
    fn list(&self, query: &BTreeMap<String, String>) -> serde_json::Value {
        serde_json::json!({"forecasts": [{"job": "cpu", "filter": query.get("job")}]})
    }
    fn get(&self, name: &str) -> Option<serde_json::Value> {
        (name == "cpu").then(|| serde_json::json!({"job": "cpu"}))
    }
}

#[tokio::test]
async fn loop_views_list_get_and_guard() {
    let (mut s, _rx) = state(Some("t"));
    // A loop that does not run: an empty collection, and no member.
    let (status, body, _) = call(&s, get_with("/api/v1/metric-anomalies", "t")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({"episodes": []}));
    let (_, body, _) = call(&s, get_with("/api/v1/audit/findings", "t")).await;
    assert_eq!(body, serde_json::json!({"findings": []}));
    assert_json_error(
        &s,
        get_with("/api/v1/forecasts/cpu", "t"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    s.views.forecasts = Some(Arc::new(Jobs));
    let (status, body, _) = call(&s, get_with("/api/v1/forecasts?job=cpu", "t")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["forecasts"][0]["filter"], "cpu");
    let (_, body, _) = call(&s, get_with("/api/v1/forecasts/cpu", "t")).await;
    assert_eq!(body["job"], "cpu");
    assert_json_error(
        &s,
        get_with("/api/v1/forecasts/nope", "t"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // Read-only, but behind the viewer role like every other read.
    assert_json_error(
        &s,
        get("/api/v1/forecasts"),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}
