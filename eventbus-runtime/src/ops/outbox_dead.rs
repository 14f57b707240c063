//! The outbox's dead letters over HTTP: list, show, replay, discard into the audit table
//! `{table}_discarded`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::{Problem, Shared, Shared_, authorize, json_body, problem};
use crate::outbox::{DeadEvent, OutboxStore, Replay};

/// A dead row as the API shows it.
#[derive(Debug, Serialize)]
struct DeadLetter {
    id: Uuid,
    topic: String,
    event_type: String,
    key: Option<String>,
    attempts: i32,
    error: String,
    /// The error's class (`null` for a row dead-lettered before classes were kept).
    class: Option<&'static str>,
    dead_for_secs: f64,
}

impl From<DeadEvent> for DeadLetter {
    fn from(d: DeadEvent) -> Self {
        DeadLetter {
            id: d.event_id,
            topic: d.topic,
            event_type: d.event_type,
            key: d.key,
            attempts: d.attempts,
            error: d.error,
            class: d.class.map(crate::dlq::ErrorClass::as_str),
            dead_for_secs: d.dead_for.as_secs_f64(),
        }
    }
}

/// The filters of a listing and of a set replay.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Filter {
    event_type: Option<String>,
    topic: Option<String>,
    /// Only rows of this error class (`broker_refused`, ...; `unknown`: rows without one).
    class: Option<String>,
    /// Only rows dead for at least this many seconds.
    older_than_secs: Option<f64>,
    /// Paging: at most this many (listing only; default 100, at most 1000).
    limit: Option<usize>,
    /// Paging: those after this event id (the previous page's `next`).
    after: Option<Uuid>,
    /// A set replay without `event_type` or `topic` replays every dead row only with `all`.
    all: Option<bool>,
}

impl Filter {
    fn keeps(&self, d: &DeadEvent) -> bool {
        self.event_type.as_ref().is_none_or(|t| *t == d.event_type)
            && self.topic.as_ref().is_none_or(|t| *t == d.topic)
            && self
                .class
                .as_ref()
                .is_none_or(|c| *c == d.class.map_or("unknown", crate::dlq::ErrorClass::as_str))
            && self
                .older_than_secs
                .is_none_or(|secs| d.dead_for.as_secs_f64() >= secs)
    }
}

fn store(shared: &Shared) -> Result<&OutboxStore, Problem> {
    shared.outbox.as_ref().ok_or_else(|| {
        Problem(
            StatusCode::NOT_FOUND,
            "this bus has no outbox (it is not in the Transactional mode)".into(),
        )
    })
}

async fn dead(shared: &Shared) -> Result<Vec<DeadEvent>, Problem> {
    store(shared)?.dead().await.map_err(|e| {
        Problem(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("reading the dead table: {e}"),
        )
    })
}

pub(super) async fn list(State(shared): Shared_, Query(filter): Query<Filter>) -> Response {
    let rows = match dead(&shared).await {
        Ok(rows) => rows,
        Err(r) => return r.into_response(),
    };
    let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
    // Rows come in the dead table's order; `after` resumes behind the previous page's last.
    let mut rows = rows.into_iter().filter(|d| filter.keeps(d));
    if let Some(after) = filter.after {
        rows.by_ref().find(|d| d.event_id == after);
    }
    let mut page: Vec<DeadLetter> = rows.by_ref().take(limit).map(DeadLetter::from).collect();
    let more = rows.next().is_some();
    let next = more.then(|| page.last().map(|d| d.id)).flatten();
    page.shrink_to_fit();
    Json(json!({ "dead_letters": page, "next": next })).into_response()
}

pub(super) async fn show(State(shared): Shared_, Path(id): Path<Uuid>) -> Response {
    let store = match store(&shared) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    match store.dead_record(id).await {
        Ok(Some(record)) => {
            let mut body = json!(DeadLetter::from(record.event));
            body["headers"] = serde_json::from_str(&record.headers)
                .unwrap_or(serde_json::Value::String(record.headers));
            // The payload as JSON when it is JSON, else base64.
            match serde_json::from_slice::<serde_json::Value>(&record.payload) {
                Ok(payload) => body["payload"] = payload,
                Err(_) => {
                    use base64::Engine as _;
                    body["payload_base64"] = base64::engine::general_purpose::STANDARD
                        .encode(&record.payload)
                        .into();
                }
            }
            Json(body).into_response()
        }
        Ok(None) => problem(StatusCode::NOT_FOUND, format!("no dead letter {id}")),
        Err(e) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("reading the dead table: {e}"),
        ),
    }
}

async fn replay(shared: &Shared, ids: Vec<Uuid>) -> Response {
    let store = match store(shared) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    match store.replay(Replay::Events(ids)).await {
        Ok(n) => Json(json!({ "replayed": n })).into_response(),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, format!("replaying: {e}")),
    }
}

pub(super) async fn replay_one(
    State(shared): Shared_,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Response {
    if let Err(r) = authorize(&shared, &headers) {
        return r.into_response();
    }
    match dead(&shared).await {
        Ok(rows) if rows.iter().any(|d| d.event_id == id) => replay(&shared, vec![id]).await,
        Ok(_) => problem(StatusCode::NOT_FOUND, format!("no dead letter {id}")),
        Err(r) => r.into_response(),
    }
}

pub(super) async fn replay_set(
    State(shared): Shared_,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&shared, &headers) {
        return r.into_response();
    }
    let filter: Filter = match json_body(&body) {
        Ok(f) => f.unwrap_or_default(),
        Err(r) => return r.into_response(),
    };
    if filter.event_type.is_none()
        && filter.topic.is_none()
        && filter.class.is_none()
        && filter.all != Some(true)
    {
        return problem(
            StatusCode::BAD_REQUEST,
            "name `event_type`, `topic` and/or `class`, or `\"all\": true` to replay every dead letter",
        );
    }
    let ids = match dead(&shared).await {
        Ok(rows) => rows
            .into_iter()
            .filter(|d| filter.keeps(d))
            .map(|d| d.event_id)
            .collect(),
        Err(r) => return r.into_response(),
    };
    replay(&shared, ids).await
}

/// Why a dead letter is discarded.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Discard {
    reason: String,
}

pub(super) async fn discard(
    State(shared): Shared_,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&shared, &headers) {
        return r.into_response();
    }
    let reason = match json_body::<Discard>(&body) {
        Ok(Some(Discard { reason })) if !reason.trim().is_empty() => reason,
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "give the reason: {\"reason\": \"...\"} (it is kept in the audit table)",
            );
        }
    };
    let store = match store(&shared) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    match store.discard(id, &reason).await {
        Ok(true) => {
            tracing::info!(event_id = %id, reason, "a dead letter was discarded");
            Json(json!({ "discarded": id, "audit_table": format!("{}_discarded", store.table()) }))
                .into_response()
        }
        Ok(false) => problem(StatusCode::NOT_FOUND, format!("no dead letter {id}")),
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, format!("discarding: {e}")),
    }
}
