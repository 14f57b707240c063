//! A declarative event bus for Rust services.
//!
//! Declare an event once, with a derive; the expansion gives it a name, a version, a category, a
//! topic computed at compile time, a partition key, CloudEvents (de)serialization, the outbox
//! statements, and typed publish functions. Routing lives in the type system: a misrouted event is
//! a compile error, not a 3 a.m. incident.
//!
//! ```
//! use eventbus::{DomainEvent, EventBus, Service};
//! use serde::{Deserialize, Serialize};
//!
//! /// The petstore: it owns the events below (`default`: every event of this crate that names no
//! /// other service).
//! #[derive(Service)]
//! #[service(name = "petstore", default)]
//! pub struct Petstore;
//!
//! /// An order was placed.
//! #[derive(DomainEvent, Serialize, Deserialize, Debug, PartialEq)]
//! #[event(aggregate = "order", version = 1)]
//! pub struct OrderPlaced {
//!     #[event(aggregate_id)]
//!     pub order_id: uuid::Uuid,
//!     pub total_cents: u64,
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let bus = EventBus::testing(Petstore);
//!     let placed = OrderPlaced { order_id: uuid::Uuid::now_v7(), total_cents: 4_200 };
//!
//!     bus.publish_domain(&placed).await?;
//!
//!     assert_eq!(bus.recorded().published::<OrderPlaced>(), vec![placed]);
//!     assert_eq!(OrderPlaced::TOPIC, "domain.petstore.order.order_placed");
//!     assert_eq!(OrderPlaced::EVENT_TYPE, "petstore.order.order_placed");
//!     Ok(())
//! }
//! ```
//!
//! A domain event is not an audit event, and the compiler says so, naming the event, its
//! category and topic, and the method to use instead:
//!
//! ```compile_fail
//! # use eventbus::{DomainEvent, EventBus, Service};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Service)]
//! # #[service(name = "petstore", default)]
//! # pub struct Petstore;
//! /// An order was placed.
//! #[derive(DomainEvent, Serialize, Deserialize)]
//! #[event(aggregate = "order")]
//! pub struct OrderPlaced {
//!     #[event(aggregate_id)]
//!     pub order_id: uuid::Uuid,
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = EventBus::testing(Petstore);
//! // error[E0277]: `OrderPlaced` (category `eventbus::event::category::Domain`, topic
//! // `OrderPlacedTopic`) cannot go through `publish_audit`
//! bus.publish_audit(&OrderPlaced { order_id: uuid::Uuid::now_v7() }).await?;
//! # Ok(()) }
//! # fn main() {}
//! ```
//!
//! # Categories and topics (AD-004)
//!
//! | derive | topic | partition key |
//! |---|---|---|
//! | `DomainEvent` | `domain.{service}.{aggregate}.{event}` | `#[event(aggregate_id)]` |
//! | `IntegrationEvent` | `integration.{source}.{target}.{event}` | `#[event(key)]` |
//! | `AuditEvent` | `audit.{service}.{audit_category}` | `#[event(key)]` or `#[event(actor)]` |
//! | `SystemEvent` | `system.{service}.{event}` | `#[event(key)]` or none |
//! | `NotificationEvent` | `notifications.{channel}.{kind}` | `#[event(key)]` or `#[event(recipient)]` |
//!
//! A domain topic per event type loses the order between two events of one aggregate (Kafka
//! orders records within one partition of one topic). Route an aggregate's events to one topic
//! with a shared topic type — `#[derive(Topic)] #[topic(aggregate = "order")] struct OrderTopic;`
//! and `#[event(topic = OrderTopic)]` on each event — and they keep their order per aggregate id.
//!
//! # Modes (AD-003)
//!
//! [`EventBus::testing`] records in memory and delivers to local consumers. The Transactional
//! (outbox) and Direct (Kafka) modes share the same typed API.
//!
//! # Features
//!
//! | feature | enables | pulls in |
//! |---|---|---|
//! | `derive` | `#[derive(DomainEvent)]` and its siblings, `#[derive(Service)]`, `#[derive(Topic)]` | `eventbus-derive` |
//! | `kafka` | the Direct mode, the relay, Kafka consumers, dead-letter topics, the embedded broker | `rdkafka` (librdkafka, built from source) |
//! | `postgres` | the Transactional mode's outbox and the inbox on PostgreSQL | `sqlx` (postgres) |
//! | `sqlite` | the same on SQLite, and the embedded default database | `sqlx` (sqlite) |
//! | `cli` | the `eventbus-relay` binary and [`logging`] (log lines to stderr, text or JSON); implies the three above | `tracing-subscriber` |
//! | `ops` | `ops`: the operations HTTP API (health, Prometheus metrics, dead letters); implies `kafka`, `postgres`, `sqlite` | `axum`, `metrics-exporter-prometheus` |
//! | `opentelemetry` | the W3C trace context in `ce_traceparent`/`ce_tracestate`: the consumer's span continues the publisher's trace, the relay's links to it | `opentelemetry`, `opentelemetry_sdk` (its propagator), `tracing-opentelemetry` |
//!
//! All but `opentelemetry` are on by default. The Testing mode needs none of them; a library that
//! logs through its own `tracing` subscriber needs no `cli`.
//!
//! # Traces
//!
//! Publishing, the relay's batches and sends, and each delivery to a consumer are `tracing` spans
//! named and attributed after OpenTelemetry's messaging conventions (`create {topic}`,
//! `send {topic}`, `process {topic}`; `messaging.system = "kafka"`, the topic, the message id,
//! the group, partition and offset), with or without the feature `opentelemetry`; see
//! `docs/operations.md`, "Traces".
//!
//! # Where things are
//!
//! The root holds what a service writes; the rest lives in its module: [`bus`] (the modes, the
//! builder, the Testing recorder), [`config`], [`consumer`], [`envelope`], [`event`], [`error`],
//! [`outbox`], [`relay`], [`dlq`], [`inbox`], [`health`], [`kafka`], [`types`], `logging`, and
//! [`store`]: event sourcing on the same domain events (`#[derive(Aggregate)]`, an event store whose
//! appends publish through the outbox in the same transaction).

// A build without every backend leaves parts unused that the others share (the engine's Kafka
// half, the relay's row operations): allowed there, denied in the default build by clippy.
#![cfg_attr(
    not(all(feature = "kafka", feature = "postgres", feature = "sqlite")),
    allow(dead_code, unused_imports, unused_variables, unreachable_code)
)]

pub mod bus;
pub mod config;
pub mod consumer;
pub mod dlq;
pub mod envelope;
pub mod error;
pub mod event;
mod filter;
pub mod health;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub mod inbox;
mod include;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "cli")]
pub mod logging;
mod metrics;
#[cfg(feature = "ops")]
pub mod ops;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub mod outbox;
#[cfg(all(feature = "kafka", any(feature = "postgres", feature = "sqlite")))]
pub mod relay;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub mod store;
mod trace;
pub mod types;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use bus::{EventBus, Receipt};
pub use config::{Database, KafkaConfig, Mode, OutboxConfig};
pub use consumer::RetryPolicy;
pub use envelope::{Envelope, EventContext};
pub use error::{HandlerError, PublishError, StartError};
pub use event::{
    AuditEvent, Category, DomainEvent, Event, IntegrationEvent, NotificationEvent, Service,
    SystemEvent, Topic,
};
pub use filter::EventFilter;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use inbox::{Inbox, InboxTx};

/// The derives: `#[derive(DomainEvent)]` and its siblings, `#[derive(Service)]`,
/// `#[derive(Topic)]`.
#[cfg(feature = "derive")]
pub use eventbus_derive::{
    AuditEvent, DomainEvent, IntegrationEvent, NotificationEvent, Service, SystemEvent, Topic,
};

/// A boxed, sendable future: what the publish methods return.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Locks `m`, through a poisoned lock: the state behind each of the crate's locks stays valid when
/// a holder panics (they hold no invariant across a panic point).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
