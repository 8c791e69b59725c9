//! The HTTP API: [`router`] builds it from an [`ApiState`].
//!
//! Versioned JSON under `/api/v1`, errors as `{"error": {"code", "message"}}`:
//! - `GET /healthz`, `GET /readyz` (503 until the agent says it is ready), `GET /metrics`
//!   (Prometheus/OpenMetrics text from [`AgentMetrics`]);
//! - `GET /api/v1/events` (filters `type`, `subject`, `since`, `until` RFC 3339; `cursor`,
//!   `limit`), `GET /api/v1/templates`, `GET /api/v1/rules`;
//! - `POST /api/v1/logs`: NDJSON or a JSON array of objects with `message` (or `msg`, `log`);
//!   bodies over the limit get 413; with a token set, `Authorization: Bearer` is required.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use opsloop_core::ingest::IngestedRecord;
use opsloop_store::{EventQuery, Store};
use prometheus_client::encoding::EncodeLabelSet;
/// The counter type of [`AgentMetrics`], for callers that keep a labelled child.
pub use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::Instrument;

/// Labels naming a source.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// Source name.
    pub source: String,
}

/// Labels naming a rule.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    /// Rule id.
    pub rule: String,
}

/// The agent's own metrics, all in one registry, named after Prometheus conventions.
pub struct AgentMetrics {
    registry: Registry,
    /// Lines read per source.
    pub lines_read: Family<SourceLabel, Counter>,
    /// Bytes read per source.
    pub bytes_read: Family<SourceLabel, Counter>,
    /// Lines through the pipeline per source (behind `lines_read` by what is queued).
    pub lines_processed: Family<SourceLabel, Counter>,
    /// Datagrams the kernel dropped on a syslog UDP socket, per source.
    pub udp_drops: Family<SourceLabel, Counter>,
    /// Lines that did not parse, per source.
    pub parse_errors: Family<SourceLabel, Counter>,
    /// Live templates.
    pub templates: Gauge,
    /// Rule hits per rule.
    pub rule_hits: Family<RuleLabel, Counter>,
    /// Events published on the bus.
    pub events_published: Counter,
    /// Events published but not yet acknowledged by the slowest consumer.
    pub bus_lag: Gauge,
    /// Events the JetStream relay forwarded (duplicates not counted).
    pub bus_forwarded: Counter,
    /// Failed attempts to reach or publish to JetStream.
    pub bus_forward_failures: Counter,
    /// Configuration reloads applied.
    pub config_reloads: Counter,
    /// Configuration reloads rejected.
    pub config_reload_failures: Counter,
    /// Records accepted by `POST /api/v1/logs`.
    pub ingested: Counter,
    /// Records rejected by `POST /api/v1/logs`.
    pub ingest_rejected: Counter,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("opsloop");
        let m = AgentMetrics {
            lines_read: Family::default(),
            bytes_read: Family::default(),
            parse_errors: Family::default(),
            templates: Gauge::default(),
            rule_hits: Family::default(),
            lines_processed: Family::default(),
            udp_drops: Family::default(),
            events_published: Counter::default(),
            bus_lag: Gauge::default(),
            bus_forwarded: Counter::default(),
            bus_forward_failures: Counter::default(),
            config_reloads: Counter::default(),
            config_reload_failures: Counter::default(),
            ingested: Counter::default(),
            ingest_rejected: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "log_lines_read",
            "Log lines read, per source",
            m.lines_read.clone(),
        );
        registry.register(
            "log_bytes_read",
            "Log bytes read, per source",
            m.bytes_read.clone(),
        );
        registry.register(
            "log_lines_processed",
            "Log lines through parsing, mining and rules, per source",
            m.lines_processed.clone(),
        );
        registry.register(
            "syslog_udp_drops",
            "Syslog datagrams the kernel dropped because the socket buffer was full, per source",
            m.udp_drops.clone(),
        );
        registry.register(
            "log_parse_errors",
            "Log lines that did not parse, per source",
            m.parse_errors.clone(),
        );
        registry.register("log_templates", "Live log templates", m.templates.clone());
        registry.register(
            "log_rule_hits",
            "Log rule hits, per rule",
            m.rule_hits.clone(),
        );
        registry.register(
            "events_published",
            "Events published on the bus",
            m.events_published.clone(),
        );
        registry.register(
            "bus_lag_events",
            "Events not yet acknowledged by the slowest consumer",
            m.bus_lag.clone(),
        );
        registry.register(
            "bus_forwarded_events",
            "Events forwarded from the outbox to NATS JetStream",
            m.bus_forwarded.clone(),
        );
        registry.register(
            "bus_forward_failures",
            "Failed attempts to reach or publish to NATS JetStream",
            m.bus_forward_failures.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads applied",
            m.config_reloads.clone(),
        );
        registry.register(
            "config_reload_failures",
            "Configuration reloads rejected",
            m.config_reload_failures.clone(),
        );
        registry.register(
            "ingest_records",
            "Records accepted by the log ingest API",
            m.ingested.clone(),
        );
        registry.register(
            "ingest_rejected_records",
            "Records rejected by the log ingest API",
            m.ingest_rejected.clone(),
        );
        AgentMetrics { registry, ..m }
    }
}

impl AgentMetrics {
    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// A rule as the API lists it.
#[derive(Clone, Debug, Serialize)]
pub struct RuleInfo {
    /// Id.
    pub id: String,
    /// Severity.
    pub severity: String,
    /// Description.
    pub description: String,
    /// Where it was defined.
    pub source: String,
    /// Hits so far.
    pub hits: u64,
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The store.
    pub store: Arc<Mutex<Store>>,
    /// Metrics.
    pub metrics: Arc<AgentMetrics>,
    /// Set once store and sources are up.
    pub ready: Arc<AtomicBool>,
    /// Bearer token for ingest and mutating endpoints.
    pub token: Option<Arc<str>>,
    /// The rules and their hits, as of now.
    pub rules: Arc<dyn Fn() -> Vec<RuleInfo> + Send + Sync>,
    /// Where ingested records go (bounded: a full pipeline slows senders down).
    pub ingest: mpsc::Sender<IngestedRecord>,
    /// Largest accepted body.
    pub max_body_bytes: usize,
}

/// An API error: status, code, message.
struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.1, "message": self.2}});
        (self.0, axum::Json(body)).into_response()
    }
}

/// The API router.
pub fn router(state: ApiState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/events", get(events))
        .route("/api/v1/templates", get(templates))
        .route("/api/v1/rules", get(rules))
        .route(
            "/api/v1/logs",
            post(ingest_logs).layer(DefaultBodyLimit::max(limit)),
        )
        .route_layer(axum::middleware::from_fn(request_span))
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint".into(),
            )
        })
        .with_state(state)
}

/// One span per request, named after the route (`GET /api/v1/events`, never the raw path, so
/// that names stay few), with the OpenTelemetry HTTP attributes.
async fn request_span(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("", |p| p.as_str())
        .to_string();
    let method = request.method().as_str().to_string();
    let span = tracing::info_span!(
        "http.request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

async fn readyz(State(s): State<ApiState>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        axum::Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "starting"})),
        )
            .into_response()
    }
}

async fn metrics(State(s): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct EventParams {
    #[serde(rename = "type")]
    kind: Option<String>,
    subject: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

fn time_param(name: &str, v: &Option<String>) -> Result<Option<i64>, ApiError> {
    match v {
        None => Ok(None),
        Some(t) => opsloop_core::time::parse_iso8601(t.as_bytes())
            .map(|x| Some(x.0))
            .ok_or_else(|| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("{name}: {t:?} is not an RFC 3339 time"),
                )
            }),
    }
}

async fn events(
    State(s): State<ApiState>,
    Query(p): Query<EventParams>,
) -> Result<Response, ApiError> {
    let after = match &p.cursor {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("cursor: {c:?} is not a cursor"),
            )
        })?),
    };
    let query = EventQuery {
        kind: p.kind,
        subject: p.subject,
        since_ms: time_param("since", &p.since)?,
        until_ms: time_param("until", &p.until)?,
        after,
        limit: p.limit,
    };
    let store = Arc::clone(&s.store);
    let page = tokio::task::spawn_blocking(move || {
        let guard = store
            .lock()
            .map_err(|_| "store lock poisoned".to_string())?;
        guard.events(&query).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
    Ok(axum::Json(json!({
        "events": page.events,
        "next_cursor": page.next.map(|n| n.to_string()),
    }))
    .into_response())
}

#[derive(Deserialize)]
struct TemplateParams {
    limit: Option<usize>,
}

async fn templates(
    State(s): State<ApiState>,
    Query(p): Query<TemplateParams>,
) -> Result<Response, ApiError> {
    let store = Arc::clone(&s.store);
    let limit = p.limit.unwrap_or(100).clamp(1, 10_000);
    let list = tokio::task::spawn_blocking(move || {
        let guard = store
            .lock()
            .map_err(|_| "store lock poisoned".to_string())?;
        guard.templates(limit).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
    let list: Vec<_> = list
        .into_iter()
        .map(|t| {
            json!({
                "id": t.id,
                "template": t.template,
                "count": t.count,
                "first_seen": t.first_seen_ms.map(opsloop_core::time::format_rfc3339),
                "last_seen": t.last_seen_ms.map(opsloop_core::time::format_rfc3339),
            })
        })
        .collect();
    Ok(axum::Json(json!({"templates": list})).into_response())
}

async fn rules(State(s): State<ApiState>) -> Response {
    axum::Json(json!({"rules": (s.rules)()})).into_response()
}

/// Compares in time independent of where the strings differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorize(s: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &s.token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if same_secret(g.as_bytes(), token.as_bytes()) => Ok(()),
        _ => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required".into(),
        )),
    }
}

async fn ingest_logs(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let body = body.map_err(|r| {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        ApiError(status, code, r.body_text())
    })?;
    let now = opsloop_core::time::now_ms();
    let trimmed = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&body[..0], |i| &body[i..]);
    let values: Vec<Result<serde_json::Value, String>> = if trimmed.starts_with(b"[") {
        match serde_json::from_slice::<Vec<serde_json::Value>>(trimmed) {
            Ok(v) => v.into_iter().map(Ok).collect(),
            Err(e) => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("invalid JSON array: {e}"),
                ));
            }
        }
    } else {
        trimmed
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .map(|l| serde_json::from_slice(l).map_err(|e| e.to_string()))
            .collect()
    };
    let mut accepted = 0u64;
    let mut rejected = Vec::new();
    for (index, v) in values.into_iter().enumerate() {
        let rec = v.and_then(|v| IngestedRecord::from_json(v, now).map_err(|e| e.to_string()));
        match rec {
            Ok(rec) => {
                if s.ingest.send(rec).await.is_err() {
                    return Err(ApiError(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "the pipeline is shutting down".into(),
                    ));
                }
                accepted += 1;
            }
            Err(error) => rejected.push(json!({"index": index, "error": error})),
        }
    }
    s.metrics.ingested.inc_by(accepted);
    s.metrics.ingest_rejected.inc_by(rejected.len() as u64);
    let status = if accepted == 0 && !rejected.is_empty() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        axum::Json(json!({"accepted": accepted, "rejected": rejected})),
    )
        .into_response())
}

#[cfg(test)]
mod tests;
