//! The operations HTTP API (feature `ops`, docs/operations.md): liveness and readiness from
//! [`EventBus::health`], the `metrics`-facade metrics in the Prometheus text format, and the
//! outbox's dead letters (list, show, replay, discard into the audit table `{table}_discarded`),
//! and the dead-letter topics (`{topic}.dlq`: list, replay).
//!
//! [`router`] gives an [`axum::Router`] to mount into the application's own server; [`serve`] runs
//! it on a listener of its own (bind it to loopback unless the API is meant to be reachable).
//!
//! Mutating endpoints need `Authorization: Bearer <token>`, the token read by [`Ops::from_env`]
//! from `EVENTBUS_OPS_TOKEN` or from the file named by `EVENTBUS_OPS_TOKEN_FILE`. Without a
//! token the API is read-only: mutations answer 403.
//!
//! ```no_run
//! # use eventbus::{EventBus, Service};
//! # #[derive(Service)] #[service(name = "petstore")] struct Petstore;
//! # async fn run(bus: EventBus<Petstore>) -> Result<(), Box<dyn std::error::Error>> {
//! let router = eventbus::ops::router(bus, eventbus::ops::Ops::from_env()?);
//! eventbus::ops::serve("127.0.0.1:9464".parse()?, router).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use crate::EventBus;
use crate::error::ConfigError;
use crate::event::Service;
use crate::health::{Check, Health};
use crate::outbox::OutboxStore;

mod outbox_dead;
mod topics;

/// The environment variable holding the bearer token of the mutating endpoints.
pub const TOKEN_ENV: &str = "EVENTBUS_OPS_TOKEN";
/// The environment variable naming a file that holds the token (trailing whitespace trimmed).
pub const TOKEN_FILE_ENV: &str = "EVENTBUS_OPS_TOKEN_FILE";

/// A bearer token. Never printed: its `Debug` says only that there is one.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    /// A token (an empty one is refused by [`Ops::token`]).
    pub fn new(token: impl Into<String>) -> Self {
        Token(Arc::from(token.into()))
    }

    /// Compares in time independent of where the first difference is.
    fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// What the API is given besides the bus: the token, the Prometheus handle, the health timeout.
#[derive(Debug, Clone)]
pub struct Ops {
    token: Option<Token>,
    prometheus: Option<PrometheusHandle>,
    health_timeout: Duration,
}

impl Default for Ops {
    fn default() -> Self {
        Ops {
            token: None,
            prometheus: None,
            health_timeout: Duration::from_secs(2),
        }
    }
}

impl Ops {
    /// Read-only (no token), the global Prometheus recorder, health checks within 2 s.
    pub fn new() -> Self {
        Ops::default()
    }

    /// The token from `EVENTBUS_OPS_TOKEN`, or from the file named by `EVENTBUS_OPS_TOKEN_FILE`;
    /// neither set: read-only.
    pub fn from_env() -> Result<Self, ConfigError> {
        let token = match (std::env::var(TOKEN_ENV), std::env::var(TOKEN_FILE_ENV)) {
            (Ok(t), _) if !t.is_empty() => Some(t),
            (_, Ok(file)) if !file.is_empty() => {
                let t = std::fs::read_to_string(&file).map_err(|e| {
                    ConfigError::clause(TOKEN_FILE_ENV, format!("cannot read {file}: {e}"))
                })?;
                let t = t.trim_end().to_owned();
                if t.is_empty() {
                    return Err(ConfigError::clause(
                        TOKEN_FILE_ENV,
                        format!("the file {file} is empty"),
                    ));
                }
                Some(t)
            }
            _ => None,
        };
        Ok(Ops {
            token: token.map(Token::new),
            ..Ops::default()
        })
    }

    /// Enables the mutating endpoints with this bearer token (an empty one leaves them off).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.token = (!token.is_empty()).then(|| Token::new(token));
        self
    }

    /// Renders `/metrics` from this handle: for an application that installed the Prometheus
    /// recorder itself. Without one, the API installs it as the global `metrics` recorder on
    /// first use (and `/metrics` answers 503 when another recorder is already installed).
    pub fn prometheus(mut self, handle: PrometheusHandle) -> Self {
        self.prometheus = Some(handle);
        self
    }

    /// True without a token: the mutating endpoints answer 403.
    pub fn is_read_only(&self) -> bool {
        self.token.is_none()
    }

    /// How long `/health/ready` waits for each dependency (default 2 s).
    pub fn health_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = timeout;
        self
    }
}

type HealthFn = dyn Fn(Duration) -> Pin<Box<dyn Future<Output = Health> + Send>> + Send + Sync;

struct Shared {
    health: Box<HealthFn>,
    outbox: Option<OutboxStore>,
    kafka: Option<crate::config::KafkaConfig>,
    ops: Ops,
    /// The dead-letter topics' gauges: when they were last counted, and the classes set then per
    /// topic.
    topic_gauges: std::sync::Mutex<TopicGauges>,
}

/// The buckets of `eventbus_publish_duration_seconds` (seconds) in the recorder installed here.
pub const PUBLISH_SECONDS_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The state of the dead-letter topics' gauges.
#[derive(Default)]
struct TopicGauges {
    counted: Option<std::time::Instant>,
    classes: std::collections::HashMap<String, std::collections::BTreeSet<String>>,
}

/// How often `/metrics` counts the dead-letter topics (a scrape in between shows the last count).
pub const DEAD_TOPICS_INTERVAL: Duration = Duration::from_secs(30);
/// The records of one dead-letter topic `/metrics` reads at most to count them.
pub const DEAD_TOPICS_MAX_RECORDS: usize = 10_000;

/// The global Prometheus recorder this module installed, or why it could not.
fn global_prometheus() -> Result<PrometheusHandle, String> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                // A histogram (aggregatable across instances), not the default summary.
                .set_buckets_for_metric(
                    Matcher::Full("eventbus_publish_duration_seconds".to_owned()),
                    PUBLISH_SECONDS_BUCKETS,
                )
                .expect("the bucket list is not empty")
                .install_recorder()
                .map_err(|e| {
                    format!(
                        "cannot install the Prometheus recorder ({e}); an application with a \
                     `metrics` recorder of its own passes its PrometheusHandle with \
                     Ops::prometheus"
                    )
                })
        })
        .clone()
}

/// The operations API of `bus`, to mount (`Router::merge` or `nest`) into an axum server.
///
/// When `ops` has no Prometheus handle, the global recorder is installed now, so that the metrics
/// of buses and consumers built afterwards are recorded.
pub fn router<S: Service>(bus: EventBus<S>, ops: Ops) -> Router {
    let mut ops = ops;
    if ops.prometheus.is_none() {
        ops.prometheus = global_prometheus().ok();
    }
    let outbox = bus.outbox().cloned();
    let kafka = match bus.transport() {
        crate::bus::Transport::Kafka(kafka) => Some(kafka),
        _ => None,
    };
    let health: Box<HealthFn> = Box::new(move |timeout| {
        let bus = bus.clone();
        Box::pin(async move { bus.health(timeout).await })
    });
    let shared = Arc::new(Shared {
        health,
        outbox,
        kafka,
        ops,
        topic_gauges: std::sync::Mutex::default(),
    });
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/dead-letters/outbox", get(outbox_dead::list))
        .route("/dead-letters/outbox/replay", post(outbox_dead::replay_set))
        .route("/dead-letters/outbox/{id}", get(outbox_dead::show))
        .route(
            "/dead-letters/outbox/{id}/replay",
            post(outbox_dead::replay_one),
        )
        .route(
            "/dead-letters/outbox/{id}/discard",
            post(outbox_dead::discard),
        )
        .route("/dead-letters/topics/{topic}", get(topics::topic_list))
        .route(
            "/dead-letters/topics/{topic}/replay",
            post(topics::topic_replay),
        )
        .with_state(shared)
}

/// A listener bound for [`router`]'s API: its address, then [`Listening::run`].
#[derive(Debug)]
pub struct Listening {
    listener: tokio::net::TcpListener,
    router: Router,
}

/// Binds `addr` for `router`. Port 0 picks a free port ([`Listening::local_addr`]).
pub async fn bind(addr: SocketAddr, router: Router) -> std::io::Result<Listening> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the operations API listens beyond loopback");
    }
    Ok(Listening { listener, router })
}

impl Listening {
    /// The address bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the process ends (or the future is dropped).
    pub async fn run(self) -> std::io::Result<()> {
        tracing::info!(addr = ?self.listener.local_addr().ok(), "the operations API listens");
        axum::serve(self.listener, self.router).await
    }
}

/// Binds `addr` and serves `router` on it: the address is the caller's to choose, loopback
/// (`127.0.0.1:9464`) unless the API must be reachable from elsewhere.
pub async fn serve(addr: SocketAddr, router: Router) -> std::io::Result<()> {
    bind(addr, router).await?.run().await
}

type Shared_ = State<Arc<Shared>>;

/// An error answer: its status and `{"error": "..."}`.
struct Problem(StatusCode, String);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    Problem(status, message.into()).into_response()
}

/// Refuses a mutation without the configured token.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), Problem> {
    let Some(token) = &shared.ops.token else {
        return Err(Problem(
            StatusCode::FORBIDDEN,
            format!(
                "the operations API is read-only: set {TOKEN_ENV} (or {TOKEN_FILE_ENV}) to \
                 enable the mutating endpoints"
            ),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if token.matches(given.trim()) => Ok(()),
        Some(_) => Err(Problem(
            StatusCode::UNAUTHORIZED,
            "wrong bearer token".into(),
        )),
        None => Err(Problem(
            StatusCode::UNAUTHORIZED,
            "missing `Authorization: Bearer <token>`".into(),
        )),
    }
}

async fn live() -> Response {
    (StatusCode::OK, Json(json!({ "live": true }))).into_response()
}

fn check_json(check: &Option<Check>) -> serde_json::Value {
    match check {
        None => serde_json::Value::Null,
        Some(Check::Up { latency }) => {
            json!({ "up": true, "latency_ms": latency.as_secs_f64() * 1000.0 })
        }
        Some(Check::Down { error }) => json!({ "up": false, "error": error }),
    }
}

async fn ready(State(shared): Shared_) -> Response {
    let health = (shared.health)(shared.ops.health_timeout).await;
    let mut down = Vec::new();
    for (name, check) in [("kafka", &health.kafka), ("database", &health.database)] {
        if check.as_ref().is_some_and(|c| !c.is_up()) {
            down.push(name);
        }
    }
    let backlog = health.backlog.map(|b| {
        json!({
            "pending": b.pending,
            "oldest_pending_seconds": b.oldest_pending.map(|d| d.as_secs_f64()),
            "dead": b.dead,
        })
    });
    let body = json!({
        "ready": health.is_healthy(),
        "mode": format!("{:?}", health.mode),
        "down": down,
        "kafka": check_json(&health.kafka),
        "database": check_json(&health.database),
        "backlog": backlog,
    });
    let status = if health.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(shared): Shared_) -> Response {
    let handle = match &shared.ops.prometheus {
        Some(h) => h.clone(),
        None => match global_prometheus() {
            Ok(h) => h,
            Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, e),
        },
    };
    count_dead_topics(&shared).await;
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// Sets `eventbus_dead_letters{topic, class}` and `eventbus_dead_letter_oldest_age_seconds{topic,
/// class}` of every dead-letter topic: those this process writes to (its consumers' and relay's)
/// and every topic of the cluster named `*.dlq`, each read from its start (at most
/// [`DEAD_TOPICS_MAX_RECORDS`]), at most every [`DEAD_TOPICS_INTERVAL`], within 10 s in all.
async fn count_dead_topics(shared: &Arc<Shared>) {
    let Some(kafka) = shared.kafka.clone() else {
        return;
    };
    {
        let mut state = crate::lock(&shared.topic_gauges);
        if state
            .counted
            .is_some_and(|t| t.elapsed() < DEAD_TOPICS_INTERVAL)
        {
            return;
        }
        state.counted = Some(std::time::Instant::now());
    }
    let budget = Duration::from_secs(10);
    let counting = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let mut topics = crate::dlq::known_topics();
        for topic in crate::dlq::dlq_topics(&kafka) {
            if !topics.contains(&topic) {
                topics.push(topic);
            }
        }
        let mut out = Vec::new();
        for topic in topics {
            let left = budget.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            match crate::dlq::count(&kafka, &topic, DEAD_TOPICS_MAX_RECORDS, left) {
                Ok(counts) => out.push((topic, counts)),
                Err(e) => {
                    tracing::debug!(error = %e, "eventbus ops: cannot count a dead-letter topic")
                }
            }
        }
        out
    });
    let Ok(Ok(counted)) = tokio::time::timeout(budget + Duration::from_secs(2), counting).await
    else {
        return;
    };
    let mut state = crate::lock(&shared.topic_gauges);
    for (topic, counts) in counted {
        let before = state.classes.entry(topic.clone()).or_default();
        crate::metrics::set_dead_letters(("topic", &topic), &counts, before);
    }
}

/// A JSON request body, after the token check (`None` when empty).
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Option<T>, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| Problem(StatusCode::BAD_REQUEST, format!("the JSON body: {e}")))
}
