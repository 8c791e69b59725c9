//! The self-healing loop's endpoints: its inputs (Alertmanager notifications, generic
//! webhooks), its incidents, approvals and rejections, and the audit trail.
//!
//! The server knows nothing of the heal engine: inputs and decisions become CloudEvents that
//! go out through [`HealApi::publish`] (the bus), and the engine reacts to them like to any
//! other event; incidents and the trail are read from the store the engine writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use opsloop_core::Event;
use opsloop_store::{IncidentCursor, IncidentQuery, Store, TrailAppend};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Principal;
use crate::{ApiError, ApiState, bad_request, internal, query_error, time_param};

/// The event an approval becomes; data `{incident_id, approver, comment}`.
pub const INCIDENT_APPROVE: &str = "io.opsloop.incident.approve";
/// The event a rejection becomes; data `{incident_id, approver, comment}`.
pub const INCIDENT_REJECT: &str = "io.opsloop.incident.reject";
/// The incident state in which approve and reject are accepted (409 otherwise).
pub const AWAITING_APPROVAL: &str = "awaiting_approval";
/// The source of the events the API emits.
pub const API_EVENT_SOURCE: &str = "/opsloop/api";
/// Longest approval or rejection comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 4096;

/// How long a published decision blocks another one on the same incident. The engine takes
/// a decision within milliseconds and the incident then leaves `awaiting_approval`; the
/// window only covers that gap (a double click, two operators at once). An approval the
/// engine leaves waiting (no concurrency slot) may be given again after it.
pub const DECISION_SETTLE: Duration = Duration::from_secs(30);
/// Most decisions remembered at once; past it the oldest are forgotten (they are older than
/// any double click).
pub(crate) const MAX_SETTLING: usize = 4096;

/// Decisions published and not yet visible in the incident's state, by incident: a second
/// approve or reject of one incident within [`DECISION_SETTLE`] answers 409 instead of
/// reaching the engine and the trail twice.
#[derive(Debug, Default)]
pub struct SettlingDecisions {
    pub(crate) by_incident: Mutex<HashMap<String, (Instant, &'static str)>>,
}

impl SettlingDecisions {
    /// Claims `incident` for `decision` at `now`; the decision already settling otherwise.
    pub(crate) fn claim(
        &self,
        incident: &str,
        decision: &'static str,
        now: Instant,
    ) -> Result<(), &'static str> {
        let mut map = self
            .by_incident
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, earlier)) = map.get(incident)
            && now.saturating_duration_since(*at) < DECISION_SETTLE
        {
            return Err(earlier);
        }
        map.retain(|_, (at, _)| now.saturating_duration_since(*at) < DECISION_SETTLE);
        if map.len() >= MAX_SETTLING
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(incident.to_string(), (now, decision));
        Ok(())
    }

    /// Forgets a claim whose decision was not published (it may be given again).
    pub(crate) fn release(&self, incident: &str) {
        self.by_incident
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(incident);
    }
}

/// What the API needs from the self-healing loop (implemented over the heal engine and the
/// bus by the binary). Calls may block (the embedded bus writes the store): the server makes
/// them off the async workers, and never while it holds the store.
pub trait HealApi: Send + Sync {
    /// Publishes events on the bus, in order. An error is reported to the caller as 503.
    fn publish(&self, events: Vec<Event>) -> Result<(), String>;
    /// Maps a generic webhook body to an event with the hook's mapping; `None` when no hook
    /// is called `name`, `Some(Err(why))` when the mapping failed on this body.
    fn map_hook(&self, name: &str, body: &serde_json::Value) -> Option<Result<Event, String>>;
}

fn heal_of(s: &ApiState) -> Result<Arc<dyn HealApi>, ApiError> {
    s.heal.clone().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the self-healing loop is not running in this agent".into(),
        )
    })
}

/// Runs blocking work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal(e.to_string()))?
}

/// Runs `f` on the store, off the async workers.
async fn with_store<T: Send + 'static>(
    s: &ApiState,
    f: impl FnOnce(&mut Store) -> Result<T, opsloop_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = Arc::clone(&s.store);
    blocking(move || {
        let mut guard = store
            .lock()
            .map_err(|_| internal("store lock poisoned".into()))?;
        f(&mut guard).map_err(|e| internal(e.to_string()))
    })
    .await
}

async fn publish(heal: Arc<dyn HealApi>, events: Vec<Event>) -> Result<(), ApiError> {
    blocking(move || {
        heal.publish(events).map_err(|e| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("the event could not be published: {e}"),
            )
        })
    })
    .await
}

fn accepted(events: &[Event]) -> Response {
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    axum::Json(json!({"accepted": events.len(), "event_ids": ids})).into_response()
}

/// `POST /api/v1/alertmanager`: one event per notification.
pub(crate) async fn alertmanager(
    State(s): State<ApiState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let now = opsloop_core::time::now_ms();
    let events = opsloop_core::alertmanager::events_from_webhook(&body, now)
        .map_err(|e| bad_request(e.to_string()))?;
    let heal = heal_of(&s)?;
    publish(heal, events.clone()).await?;
    Ok(accepted(&events))
}

/// `POST /api/v1/hooks/{name}`: the hook's mapping turns the body into an event.
pub(crate) async fn hook(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("the body is not JSON: {e}")))?;
    let heal = heal_of(&s)?;
    let mapper = Arc::clone(&heal);
    let hook_name = name.clone();
    let mapped = blocking(move || Ok(mapper.map_hook(&hook_name, &value))).await?;
    let event = match mapped {
        None => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no webhook is called {name:?}"),
            ));
        }
        Some(Err(why)) => {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                format!("webhook {name:?}: {why}"),
            ));
        }
        Some(Ok(event)) => event,
    };
    let events = vec![event];
    publish(heal, events.clone()).await?;
    Ok(accepted(&events))
}

#[derive(Deserialize)]
pub(crate) struct IncidentParams {
    state: Option<String>,
    playbook: Option<String>,
    key: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/incidents`: newest first, filtered, one page at a time.
pub(crate) async fn incidents(
    State(s): State<ApiState>,
    query: Result<Query<IncidentParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let cursor = p
        .cursor
        .as_deref()
        .map(|c| {
            IncidentCursor::parse(c)
                .ok_or_else(|| bad_request(format!("cursor: {c:?} is not a cursor")))
        })
        .transpose()?;
    let q = IncidentQuery {
        state: p.state,
        playbook: p.playbook,
        key: p.key,
        since_ms: time_param("since", p.since.as_deref())?,
        until_ms: time_param("until", p.until.as_deref())?,
        cursor,
        limit: p.limit,
    };
    let page = with_store(&s, move |st| st.incidents(&q)).await?;
    let items: Vec<serde_json::Value> = page.items.into_iter().map(|i| i.data).collect();
    Ok(axum::Json(json!({
        "incidents": items,
        "next_cursor": page.next_cursor.map(|c| c.to_string()),
    }))
    .into_response())
}

fn no_incident(id: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no incident {id:?}"),
    )
}

/// `GET /api/v1/incidents/{id}`: the incident as the engine stored it.
pub(crate) async fn incident(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let wanted = id.clone();
    let found = with_store(&s, move |st| st.incident(&wanted)).await?;
    let incident = found.ok_or_else(|| no_incident(&id))?;
    Ok(axum::Json(incident.data).into_response())
}

#[derive(Deserialize)]
struct DecisionBody {
    #[serde(default)]
    comment: Option<String>,
}

/// An approval or a rejection.
#[derive(Clone, Copy)]
pub(crate) enum Decision {
    Approve,
    Reject,
}

impl Decision {
    fn event_type(self) -> &'static str {
        match self {
            Decision::Approve => INCIDENT_APPROVE,
            Decision::Reject => INCIDENT_REJECT,
        }
    }

    fn trail_kind(self) -> &'static str {
        match self {
            Decision::Approve => "approved",
            Decision::Reject => "rejected",
        }
    }
}

fn comment_of(body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let parsed: DecisionBody = serde_json::from_slice(body).map_err(|e| {
        bad_request(format!(
            "the body must be empty or {{\"comment\": \"...\"}}: {e}"
        ))
    })?;
    if let Some(c) = &parsed.comment
        && c.chars().count() > MAX_COMMENT_CHARS
    {
        return Err(bad_request(format!(
            "comment: longer than {MAX_COMMENT_CHARS} characters"
        )));
    }
    Ok(parsed.comment)
}

/// `POST /api/v1/incidents/{id}/approve|reject`: 404 for an unknown incident, 409 unless it
/// awaits approval; otherwise the decision is published as an event, recorded in the trail
/// with the approver (the token's name) and answered 202: the engine acts on the event.
pub(crate) async fn decide(
    s: ApiState,
    decision: Decision,
    principal: Principal,
    id: String,
    body: Bytes,
) -> Result<Response, ApiError> {
    let comment = comment_of(&body)?;
    let heal = heal_of(&s)?;
    let wanted = id.clone();
    let found = with_store(&s, move |st| st.incident(&wanted)).await?;
    let incident = found.ok_or_else(|| no_incident(&id))?;
    if incident.state != AWAITING_APPROVAL {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "incident {id:?} is {}, not awaiting approval",
                incident.state
            ),
        ));
    }
    // Claimed before publishing, so that of two decisions racing here only one goes out.
    let kind = decision.trail_kind();
    if let Err(earlier) = s.settling.claim(&id, kind, Instant::now()) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "conflict",
            format!("incident {id:?} was {earlier} moments ago; the decision is being acted on"),
        ));
    }
    let now = opsloop_core::time::now_ms();
    let data = json!({
        "incident_id": id,
        "approver": principal.name,
        "comment": comment,
    });
    let event = Event::new(
        decision.event_type(),
        API_EVENT_SOURCE,
        Some(&id),
        now,
        data,
    );
    let event_id = event.id.clone();
    // Published before it is recorded: the trail never shows a decision the engine did not
    // get. The store is not held meanwhile (the embedded bus writes it).
    if let Err(e) = publish(heal, vec![event]).await {
        s.settling.release(&id);
        return Err(e);
    }
    let trail_data = json!({"comment": comment, "event_id": event_id});
    let approver = principal.name.clone();
    let incident_id = id.clone();
    let record = with_store(&s, move |st| {
        st.append_trail(
            &TrailAppend {
                kind,
                incident_id: Some(&incident_id),
                actor: Some(&approver),
                data: &trail_data,
            },
            now,
        )
    })
    .await
    .map_err(|e| {
        internal(format!(
            "the decision was published (event {event_id}) but not recorded in the audit \
             trail: {}",
            e.2
        ))
    })?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "incident_id": id,
            "decision": kind,
            "approver": principal.name,
            "event_id": event_id,
            "trail_seq": record.seq,
        })),
    )
        .into_response())
}

/// `POST /api/v1/incidents/{id}/approve`.
pub(crate) async fn approve(
    State(s): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    decide(s, Decision::Approve, principal, id, body).await
}

/// `POST /api/v1/incidents/{id}/reject`.
pub(crate) async fn reject(
    State(s): State<ApiState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    decide(s, Decision::Reject, principal, id, body).await
}

#[derive(Deserialize)]
pub(crate) struct TrailParams {
    after: Option<i64>,
    limit: Option<usize>,
}

/// `GET /api/v1/audit-log`: trail records after `after`, oldest first, with their hashes.
pub(crate) async fn audit_log(
    State(s): State<ApiState>,
    query: Result<Query<TrailParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = query.map_err(query_error)?;
    let after = p.after.unwrap_or(0);
    if after < 0 {
        return Err(bad_request(format!("after: {after} is negative")));
    }
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    // One more than asked tells whether there is a next page.
    let mut records = with_store(&s, move |st| st.trail(after, limit + 1)).await?;
    let more = records.len() > limit;
    records.truncate(limit);
    let next_after = if more {
        records.last().map(|r| r.seq)
    } else {
        None
    };
    let records: Vec<serde_json::Value> = records
        .into_iter()
        .map(|r| {
            json!({
                "seq": r.seq,
                "time": opsloop_core::time::format_rfc3339(r.time_ms),
                "time_ms": r.time_ms,
                "kind": r.kind,
                "incident_id": r.incident_id,
                "actor": r.actor,
                "data": r.data,
                "prev_hash": r.prev_hash,
                "hash": r.hash,
            })
        })
        .collect();
    Ok(axum::Json(json!({"records": records, "next_after": next_after})).into_response())
}
