//! The dead-letter topics (`{topic}.dlq`) over HTTP: list a page, replay.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{Problem, Shared, Shared_, authorize, json_body, problem};

fn kafka(shared: &Shared) -> Result<crate::config::KafkaConfig, Problem> {
    shared.kafka.clone().ok_or_else(|| {
        Problem(
            StatusCode::NOT_FOUND,
            "this bus has no Kafka (Testing mode): no dead-letter topics".into(),
        )
    })
}

/// The paging and filter of a dead-letter topic's listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TopicPage {
    limit: Option<usize>,
    /// Only records of this error class (`unknown`: records without the header).
    class: Option<String>,
}

pub(super) async fn topic_list(
    State(shared): Shared_,
    Path(topic): Path<String>,
    Query(page): Query<TopicPage>,
) -> Response {
    let kafka = match kafka(&shared) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let read = {
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || crate::dlq::read(&kafka, &topic, limit)).await
    };
    let records = match read {
        Ok(Ok(records)) => records,
        Ok(Err(e)) => return problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let letters: Vec<serde_json::Value> = records
        .iter()
        .filter(|r| {
            page.class.as_ref().is_none_or(|c| {
                *c == r
                    .header(crate::dlq::CLASS)
                    .unwrap_or_else(|| "unknown".into())
            })
        })
        .map(|r| {
            json!({
                "partition": r.partition,
                "offset": r.offset,
                "id": r.header(crate::envelope::headers::ID),
                "event_type": r.header("ce_type"),
                "key": r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
                "original_topic": r.header(crate::dlq::ORIGINAL_TOPIC),
                "error": r.header(crate::dlq::ERROR),
                "attempts": r.header(crate::dlq::ATTEMPTS).and_then(|a| a.parse::<u64>().ok()),
                "failed_in": r.header(crate::dlq::FAILED_IN),
                "group": r.header(crate::dlq::GROUP),
                "class": r.header(crate::dlq::CLASS),
            })
        })
        .collect();
    Json(json!({ "topic": topic, "dead_letters": letters })).into_response()
}

/// Which records of a dead-letter topic to replay.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicReplay {
    ids: Option<Vec<Uuid>>,
    all: Option<bool>,
}

pub(super) async fn topic_replay(
    State(shared): Shared_,
    headers: HeaderMap,
    Path(topic): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(r) = authorize(&shared, &headers) {
        return r.into_response();
    }
    let which = match json_body::<TopicReplay>(&body) {
        Ok(Some(TopicReplay {
            ids: Some(ids),
            all: None,
        })) if !ids.is_empty() => crate::dlq::Which::Events(ids),
        Ok(Some(TopicReplay {
            ids: None,
            all: Some(true),
        })) => crate::dlq::Which::All,
        Ok(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "name the records: {\"ids\": [\"<ce_id>\", ...]} or {\"all\": true}",
            );
        }
        Err(r) => return r.into_response(),
    };
    let kafka = match kafka(&shared) {
        Ok(k) => k,
        Err(r) => return r.into_response(),
    };
    match crate::dlq::replay(&kafka, &topic, which).await {
        Ok(n) => {
            tracing::info!(topic, replayed = n, "dead letters replayed");
            Json(json!({ "replayed": n })).into_response()
        }
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
