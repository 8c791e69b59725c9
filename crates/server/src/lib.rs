//! The HTTP API: [`router`] builds it from an [`ApiState`].
//!
//! Endpoints, JSON under `/api/v1`:
//! - `GET /healthz`, `GET /readyz` (503 until the agent says it is ready), `GET /metrics`
//!   (OpenMetrics text from [`AgentMetrics`], which lives in `opsloop-metrics` and is
//!   re-exported here);
//! - `GET /api/v1/events` (filters `type`, `subject`; `since`, `until` RFC 3339 times in years
//!   0000..=9999 naming real calendar days, compared as instants; `cursor` ≥ 0; `limit`),
//!   `GET /api/v1/templates`, `GET /api/v1/rules`;
//! - the self-healing loop's (see the `heal` module): `POST /api/v1/alertmanager`
//!   (Alertmanager webhook, payload version 4: one event per notification, 200
//!   `{"accepted": n}`), `POST /api/v1/hooks/{name}` (a JSON body mapped to an event by the
//!   hook; 404 unknown hook, 422 mapping failed), `GET /api/v1/incidents` (filters `state`,
//!   `playbook`, `key`, `since`, `until` on the creation time; `cursor`; `limit`; newest
//!   first), `GET /api/v1/incidents/{id}`, `POST /api/v1/incidents/{id}/approve` and
//!   `/reject` (optional body `{"comment"}`; 404 unknown, 409 not awaiting approval, else 202
//!   after the decision is published and recorded in the audit trail with the approver), and
//!   `GET /api/v1/audit-log` (`after` a seq, `limit`; records with their hashes). Without
//!   [`ApiState::heal`], the inputs and decisions answer 503;
//! - `POST /api/v1/logs`: NDJSON (a leading UTF-8 BOM is skipped) or a JSON array of objects
//!   with `message` (or `msg`, `log`), see the `ingest` module. The answer is 202 (400 when
//!   every record was rejected) with `accepted`, `rejected` (counts) and `rejections` (index and
//!   reason of the first 10 rejected records).
//!
//! Authentication (the `auth` module): with [`ApiState::token`] or [`ApiState::tokens`] set,
//! every endpoint but `/healthz` and `/readyz` requires `Authorization: Bearer <token>`
//! (compared in constant time against every token), and so does `/metrics` when
//! [`ApiState::protect_metrics`] is set; without any token everything is open. Roles: every
//! `GET` needs `viewer`; sending input (`/logs`, `/alertmanager`, `/hooks/*`) and approving
//! or rejecting need `operator`; the legacy single token is `admin`. A missing or wrong
//! token gets 401 with `WWW-Authenticate: Bearer`, a role too low 403.
//!
//! Limits on `POST /api/v1/logs`: a body over [`ApiState::max_body_bytes`] gets 413 (at once
//! when `Content-Length` announces it); more than [`ApiState::max_records_per_request`]
//! records get 413 `too_many_records` and nothing is accepted, so the client can split and
//! resend; beyond [`ApiState::max_concurrent_ingest`] requests in flight, 503 with
//! `Retry-After: 1` (counted in `opsloop_ingest_throttled_requests_total`). Accepted records
//! go into [`ApiState::ingest`] as they are parsed, waiting when the pipeline is full.
//!
//! Errors: every error, including axum's own (bad query strings, unknown routes 404, wrong
//! methods 405, bodies too large 413), is `{"error": {"code", "message"}}` as
//! `application/json`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use opsloop_core::ingest::IngestedRecord;
pub use opsloop_metrics::{
    AgentMetrics, Counter, Registry, RuleLabel, SeriesGauges, SourceLabel, TaskLabel,
};
use opsloop_store::{EventQuery, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tracing::Instrument;

pub use auth::{ANONYMOUS, ApiToken, LEGACY_TOKEN_NAME, Principal, Role};
pub use heal::{
    API_EVENT_SOURCE, AWAITING_APPROVAL, DECISION_SETTLE, HealApi, INCIDENT_APPROVE,
    INCIDENT_REJECT, MAX_COMMENT_CHARS, SettlingDecisions,
};

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

/// What a loop shows at a read-only collection endpoint (`GET /api/v1/forecasts`, `GET
/// /api/v1/forecasts/{name}`): the loop owns the JSON, the server only routes and guards.
pub trait ReadModel: Send + Sync {
    /// The whole collection, filtered by the request's query parameters.
    fn list(&self, query: &BTreeMap<String, String>) -> serde_json::Value;
    /// One member by name, `None` when there is no such member (404).
    fn get(&self, name: &str) -> Option<serde_json::Value>;
}

/// The read models of the loops that run; a loop that does not run answers with an empty
/// collection.
#[derive(Clone, Default)]
pub struct ReadModels {
    /// `GET /api/v1/forecasts[/{job}]`.
    pub forecasts: Option<Arc<dyn ReadModel>>,
    /// `GET /api/v1/metric-anomalies`.
    pub metric_anomalies: Option<Arc<dyn ReadModel>>,
    /// `GET /api/v1/audit/findings`.
    pub audit_findings: Option<Arc<dyn ReadModel>>,
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
    /// The legacy single bearer token, with the admin role (named [`LEGACY_TOKEN_NAME`]).
    /// With neither it nor [`ApiState::tokens`], the API is open.
    pub token: Option<Arc<str>>,
    /// Named tokens with roles.
    pub tokens: Arc<[ApiToken]>,
    /// The self-healing loop, when it runs: where inputs and decisions are published.
    pub heal: Option<Arc<dyn HealApi>>,
    /// With a token set, whether `/metrics` requires it too.
    pub protect_metrics: bool,
    /// The read-only views of the forecast, metric-anomaly and audit loops.
    pub views: ReadModels,
    /// The rules and their hits, as of now.
    pub rules: Arc<dyn Fn() -> Vec<RuleInfo> + Send + Sync>,
    /// Where ingested records go (bounded: a full pipeline slows senders down).
    pub ingest: mpsc::Sender<IngestedRecord>,
    /// Largest accepted ingest body, in bytes.
    pub max_body_bytes: usize,
    /// Most records one ingest request may carry (0 counts as 1); a request with more is
    /// refused whole with 413, so that the client can split it and resend all of it.
    pub max_records_per_request: usize,
    /// Largest record of an ingest request, as JSON text; larger ones are rejected (and
    /// counted), the rest of the request is still taken.
    pub max_record_bytes: usize,
    /// Most ingest requests handled at once (0 counts as 1); more are refused with 503 and
    /// `Retry-After: 1` rather than queued.
    pub max_concurrent_ingest: usize,
    /// Approvals and rejections published and not yet acted on (a second one is refused).
    pub settling: Arc<heal::SettlingDecisions>,
}

/// An API error: status, code, message. Rendered as the documented JSON error.
#[derive(Debug)]
struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.1, "message": self.2}});
        let mut response = (self.0, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match self.0 {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // Every 503 of the API is transient (a full ingest or a restart).
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

fn bad_request(message: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn internal(message: String) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

/// The error code of a status, for errors axum raises itself (routing, extractors).
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

/// The API router.
pub fn router(state: ApiState) -> Router {
    let limit = state.max_body_bytes;
    // One semaphore per router: the limit holds across all connections it serves.
    let ingest_slots = Arc::new(Semaphore::new(
        state.max_concurrent_ingest.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let ingest = move |State(s): State<ApiState>, request: Request| {
        let slots = Arc::clone(&ingest_slots);
        async move { ingest_logs(s, slots, request).await }
    };
    let mut open = Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz));
    let mut read = Router::new()
        .route("/api/v1/events", get(events))
        .route("/api/v1/templates", get(templates))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/incidents", get(heal::incidents))
        .route("/api/v1/incidents/{id}", get(heal::incident))
        .route("/api/v1/audit-log", get(heal::audit_log))
        .route(
            "/api/v1/forecasts",
            get(|s: State<ApiState>, q| view_list(s.0.views.forecasts.clone(), "forecasts", q)),
        )
        .route(
            "/api/v1/forecasts/{name}",
            get(|s: State<ApiState>, n| view_get(s.0.views.forecasts.clone(), "forecast job", n)),
        )
        .route(
            "/api/v1/metric-anomalies",
            get(|s: State<ApiState>, q| {
                view_list(s.0.views.metric_anomalies.clone(), "episodes", q)
            }),
        )
        .route(
            "/api/v1/audit/findings",
            get(|s: State<ApiState>, q| view_list(s.0.views.audit_findings.clone(), "findings", q)),
        );
    if state.protect_metrics {
        read = read.route("/metrics", get(metrics));
    } else {
        open = open.route("/metrics", get(metrics));
    }
    // Decisions carry a comment at most: a small body is plenty.
    let decision_limit = DefaultBodyLimit::max(64 << 10);
    let operate = Router::new()
        .route(
            "/api/v1/logs",
            post(ingest).layer(DefaultBodyLimit::max(limit)),
        )
        .route(
            "/api/v1/alertmanager",
            post(heal::alertmanager).layer(DefaultBodyLimit::max(limit)),
        )
        .route(
            "/api/v1/hooks/{name}",
            post(heal::hook).layer(DefaultBodyLimit::max(limit)),
        )
        .route(
            "/api/v1/incidents/{id}/approve",
            post(heal::approve).layer(decision_limit),
        )
        .route(
            "/api/v1/incidents/{id}/reject",
            post(heal::reject).layer(decision_limit),
        );
    let guard = |role: Role| {
        axum::middleware::from_fn_with_state((state.clone(), role), auth::require_role)
    };
    let guarded = read
        .route_layer(guard(Role::Viewer))
        .merge(operate.route_layer(guard(Role::Operator)));
    open.merge(guarded)
        .route_layer(axum::middleware::from_fn(request_span))
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint".into(),
            )
        })
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(state)
}

/// One span per request, named after the route (`GET /api/v1/events`, never the raw path, so
/// that names stay few), with the OpenTelemetry HTTP attributes.
async fn request_span(request: Request, next: Next) -> Response {
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

/// Turns errors that axum answers itself in plain text (a wrong method, a rejected extractor)
/// into the documented JSON error, keeping their status and headers (`Allow`).
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Rejection texts are short; anything longer is not worth echoing.
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    } else {
        text
    };
    let (fresh, body) = ApiError(status, code_for(status), message)
        .into_response()
        .into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(fresh.headers);
    Response::from_parts(parts, body)
}

async fn readyz(State(s): State<ApiState>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        axum::Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            // Starting, stopping, or a task down (the agent's log says which).
            axum::Json(json!({"status": "not_ready"})),
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

/// A loop's collection; an empty one (under `empty_key`) when the loop does not run.
async fn view_list(
    view: Option<Arc<dyn ReadModel>>,
    empty_key: &'static str,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(query_error)?;
    let body = match view {
        Some(view) => tokio::task::spawn_blocking(move || view.list(&query))
            .await
            .map_err(|e| internal(e.to_string()))?,
        None => json!({ empty_key: [] }),
    };
    Ok(axum::Json(body).into_response())
}

/// One member of a loop's collection, 404 when unknown or when the loop does not run.
async fn view_get(
    view: Option<Arc<dyn ReadModel>>,
    what: &'static str,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let found = match view {
        Some(view) => {
            let key = name.clone();
            tokio::task::spawn_blocking(move || view.get(&key))
                .await
                .map_err(|e| internal(e.to_string()))?
        }
        None => None,
    };
    match found {
        Some(body) => Ok(axum::Json(body).into_response()),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} named {name:?}"),
        )),
    }
}

fn query_error(r: QueryRejection) -> ApiError {
    ApiError(r.status(), code_for(r.status()), r.body_text())
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

/// The first millisecond a time filter may name: 0000-01-01T00:00:00.000Z.
const MIN_QUERY_MS: i64 = -62_167_219_200_000;
/// The last millisecond a time filter may name: 9999-12-31T23:59:59.999Z.
const MAX_QUERY_MS: i64 = 253_402_300_799_999;

/// Reads an RFC 3339 time filter as Unix ms: the whole value must be the time, name a real
/// calendar day and fall in years 0000..=9999 (after its offset). Leap seconds are refused:
/// stored times never have one, and `:60` on the last day of 9999 would leave the range.
fn query_time(t: &str) -> Result<i64, &'static str> {
    const NOT_RFC3339: &str = "is not an RFC 3339 time (like 2026-01-31T12:00:00Z)";
    let b = t.as_bytes();
    let date = (
        opsloop_core::time::digits(b, 0, 4),
        opsloop_core::time::digits(b, 5, 2),
        opsloop_core::time::digits(b, 8, 2),
    );
    let (Some(y), Some(m), Some(d)) = date else {
        return Err(NOT_RFC3339);
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return Err(NOT_RFC3339);
    }
    // Checked here, not left to the parser, so that Feb 30 is refused rather than read as a
    // day of March whatever the parser does.
    let real_day = match (i16::try_from(y), i8::try_from(m), i8::try_from(d)) {
        (Ok(y), Ok(m), Ok(d)) => jiff::civil::Date::new(y, m, d).is_ok(),
        _ => false,
    };
    if !real_day {
        return Err("is not a calendar date");
    }
    if b.get(16) == Some(&b':') && opsloop_core::time::digits(b, 17, 2) == Some(60) {
        return Err("has a leap second (second 60)");
    }
    match opsloop_core::time::parse_iso8601(b) {
        Some((ms, used)) if used == b.len() => {
            if (MIN_QUERY_MS..=MAX_QUERY_MS).contains(&ms) {
                Ok(ms)
            } else {
                Err("is outside years 0000..=9999")
            }
        }
        _ => Err(NOT_RFC3339),
    }
}

fn time_param(name: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    v.map(|t| query_time(t).map_err(|why| bad_request(format!("{name}: {t:?} {why}"))))
        .transpose()
}

async fn events(
    State(s): State<ApiState>,
    query: Result<Query<EventParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let after = match &p.cursor {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .ok()
                .filter(|c| *c >= 0)
                .ok_or_else(|| bad_request(format!("cursor: {c:?} is not a cursor")))?,
        ),
    };
    // Filtering is numeric: the store compares `time_ms` integers, never RFC 3339 strings.
    let query = EventQuery {
        kind: p.kind,
        subject: p.subject,
        since_ms: time_param("since", p.since.as_deref())?,
        until_ms: time_param("until", p.until.as_deref())?,
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
    .map_err(|e| internal(e.to_string()))?
    .map_err(internal)?;
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
    query: Result<Query<TemplateParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let store = Arc::clone(&s.store);
    let limit = p.limit.unwrap_or(100).clamp(1, 10_000);
    let list = tokio::task::spawn_blocking(move || {
        let guard = store
            .lock()
            .map_err(|_| "store lock poisoned".to_string())?;
        guard.templates(limit).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| internal(e.to_string()))?
    .map_err(internal)?;
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

/// The length the request announces, when it announces one; `u64::MAX` for a number too large
/// to read (it is over any limit all the same).
fn announced_length(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse().unwrap_or(u64::MAX))
}

fn too_large(limit: usize) -> ApiError {
    ApiError(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body is over the limit of {limit} bytes"),
    )
}

async fn ingest_logs(
    s: ApiState,
    slots: Arc<Semaphore>,
    request: Request,
) -> Result<Response, ApiError> {
    // Refused before a byte of the body is read.
    if announced_length(request.headers()).is_some_and(|n| n > s.max_body_bytes as u64) {
        return Err(too_large(s.max_body_bytes));
    }
    let Ok(permit) = slots.try_acquire_owned() else {
        s.metrics.ingest_throttled.inc();
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many ingest requests in flight; retry shortly".into(),
        ));
    };
    let body = Bytes::from_request(request, &s).await.map_err(|r| {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(s.max_body_bytes)
        } else {
            ApiError(status, code_for(status), r.body_text())
        }
    })?;
    let max_records = s.max_records_per_request.max(1);
    let max_record_bytes = s.max_record_bytes.max(1);
    let now = opsloop_core::time::now_ms();
    let tx = s.ingest.clone();
    // Parsing is CPU work and forwarding blocks on a full pipeline: both stay off the async
    // workers. The permit goes along, so a client that hangs up frees no slot early.
    let outcome = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        ingest::forward(
            &body,
            ingest::Limits {
                max_records,
                max_record_bytes,
            },
            now,
            &tx,
        )
    })
    .await
    .map_err(|e| internal(e.to_string()))?;
    let summary = match outcome {
        Ok(summary) => summary,
        Err(ingest::Refused::TooMany) => {
            return Err(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_records",
                format!(
                    "more than {max_records} records in one request; nothing was accepted, \
                     split the request"
                ),
            ));
        }
        Err(ingest::Refused::Invalid(e)) => return Err(bad_request(e)),
        Err(ingest::Refused::Closed(partial)) => {
            s.metrics.ingested.inc_by(partial.accepted);
            s.metrics.ingest_rejected.inc_by(partial.rejected);
            return Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!(
                    "the pipeline is shutting down ({} records were accepted first)",
                    partial.accepted
                ),
            ));
        }
    };
    s.metrics.ingested.inc_by(summary.accepted);
    s.metrics.ingest_rejected.inc_by(summary.rejected);
    let status = if summary.accepted == 0 && summary.rejected > 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::ACCEPTED
    };
    let rejections: Vec<_> = summary
        .first_rejections
        .iter()
        .map(|(index, error)| json!({"index": index, "error": error}))
        .collect();
    Ok((
        status,
        axum::Json(json!({
            "accepted": summary.accepted,
            "rejected": summary.rejected,
            "rejections": rejections,
        })),
    )
        .into_response())
}

mod auth;
mod heal;
mod ingest;

#[cfg(test)]
mod tests;
