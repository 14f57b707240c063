//! [`EventBus`]: the typed front door, bound to one service, over one of three modes, each in a
//! file of its own: `direct.rs` (Kafka, feature `kafka`), `transactional.rs` (the outbox,
//! features `postgres`/`sqlite`) and `testing.rs` (the in-memory transport). `builder.rs` builds
//! the first two; `raw.rs` is the object-safe publisher for events known only at run time.

use std::marker::PhantomData;
use std::sync::Arc;

use uuid::Uuid;

pub(crate) mod builder;
pub(crate) mod conform;
#[cfg(feature = "kafka")]
mod direct;
mod publish;
pub(crate) mod raw;
pub(crate) mod testing;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod transactional;

pub use builder::{Builder, DEFAULT_KAFKA_CHECK};
pub use publish::TopicPublisher;
pub use raw::{EventPublisher, RawEvent};
pub use testing::{HandlerFailure, Recorder};

use crate::BoxFuture;
pub use crate::config::Mode;
use crate::envelope::{Envelope, EventContext};
use crate::error::PublishError;
use crate::event::{Event, OwnedBy, Service};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
use crate::outbox::{Generated, OutboxStore, OutboxTransaction};
use testing::MemoryBroker;

/// What a successful publish returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Receipt {
    /// The event's `ce_id`.
    pub event_id: Uuid,
    /// The topic it went to.
    pub topic: std::borrow::Cow<'static, str>,
    /// The partition, once the broker has acknowledged it.
    pub partition: Option<i32>,
    /// The offset, once the broker has acknowledged it.
    pub offset: Option<i64>,
}

impl Receipt {
    pub(crate) fn recorded(envelope: &Envelope) -> Self {
        Receipt {
            event_id: envelope.id,
            topic: envelope.topic.clone(),
            partition: None,
            offset: None,
        }
    }
}

/// The event bus of service `S`.
///
/// Cheap to clone. A bus publishes any event through [`EventBus::publish`] or the category methods
/// of the seed's unified interface (AD-002), but only the domain events `S` owns; publishers and
/// subscriptions bound to a topic type accept only the events routed to that topic.
///
/// ```
/// use eventbus::{EventBus, Service};
///
/// #[derive(Service)]
/// #[service(name = "petstore")]
/// struct Petstore;
///
/// let bus = EventBus::testing(Petstore);
/// assert_eq!(bus.service(), "petstore");
/// ```
///
/// # Metrics
///
/// Through the [`metrics`](https://docs.rs/metrics) facade (install any exporter before building
/// buses; with none installed they cost an atomic add), labelled `service` and `mode`:
///
/// | metric | kind | what |
/// |---|---|---|
/// | `eventbus_published_total` | counter | events accepted: acknowledged by Kafka (Direct), written to the outbox (Transactional), recorded (Testing) |
/// | `eventbus_publish_failures_total` | counter | publishes that returned an error |
/// | `eventbus_publish_duration_seconds` | histogram | one `publish`, to the broker's acknowledgement in the Direct mode |
///
/// The relay's, the outbox's and the consumers' metrics are listed on [`crate::relay::RelayStats`],
/// [`crate::outbox::Backlog`] and [`crate::consumer::ConsumerStats`].
pub struct EventBus<S: Service> {
    core: Arc<Core>,
    context: EventContext,
    _service: PhantomData<fn() -> S>,
}

impl<S: Service> Clone for EventBus<S> {
    fn clone(&self) -> Self {
        EventBus {
            core: Arc::clone(&self.core),
            context: self.context.clone(),
            _service: PhantomData,
        }
    }
}

impl<S: Service> std::fmt::Debug for EventBus<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("service", &S::NAME)
            .field("mode", &self.mode())
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// The state every handle of one bus shares.
struct Core {
    backend: Backend,
    /// The client health checks of a Transactional bus ask the brokers with, made on the first
    /// check (a Direct bus asks with its producer).
    #[cfg(feature = "kafka")]
    health_client: std::sync::OnceLock<Result<rdkafka::producer::FutureProducer, String>>,
    /// `eventbus_published_total`, `eventbus_publish_failures_total` and
    /// `eventbus_publish_duration_seconds` of this bus, registered once.
    published: metrics::Counter,
    publish_failures: metrics::Counter,
    publish_duration: metrics::Histogram,
}

/// A bus's mode and its state.
pub(crate) enum Backend {
    Testing(Arc<MemoryBroker>),
    #[cfg(feature = "kafka")]
    Direct(direct::DirectBackend),
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    Transactional(transactional::TransactionalBackend),
}

/// Where the consumers of a bus read from.
pub(crate) enum Transport {
    /// The Testing mode's in-memory transport.
    Memory(Arc<MemoryBroker>),
    /// Kafka.
    #[cfg(feature = "kafka")]
    Kafka(crate::config::KafkaConfig),
    /// Nothing this build can read (a Transactional bus built without the `kafka` feature).
    #[allow(dead_code)]
    Unavailable(Mode),
}

impl<S: Service> EventBus<S> {
    /// A bus in the Testing mode: events are recorded in memory ([`EventBus::recorded`]) and
    /// delivered to this bus's consumers; nothing leaves the process.
    pub fn testing(service: S) -> Self {
        let _ = service;
        Self::with_backend(Backend::Testing(Arc::default()))
    }

    pub(crate) fn with_backend(backend: Backend) -> Self {
        let mode = match backend {
            Backend::Testing(_) => "testing",
            #[cfg(feature = "kafka")]
            Backend::Direct(_) => "direct",
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            Backend::Transactional(_) => "transactional",
        };
        let labels = [("service", S::NAME), ("mode", mode)];
        EventBus {
            core: Arc::new(Core {
                backend,
                #[cfg(feature = "kafka")]
                health_client: std::sync::OnceLock::new(),
                published: metrics::counter!("eventbus_published_total", &labels),
                publish_failures: metrics::counter!("eventbus_publish_failures_total", &labels),
                publish_duration: metrics::histogram!("eventbus_publish_duration_seconds", &labels),
            }),
            context: EventContext::default(),
            _service: PhantomData,
        }
    }

    /// A builder for a Transactional or Direct bus; see [`Builder`].
    pub fn builder(service: S) -> Builder<S> {
        Builder::new(service)
    }

    /// The bus the environment describes (AD-008): `EVENTBUS_DATABASE_URL` (PostgreSQL or
    /// SQLite) and `EVENTBUS_KAFKA_BROKERS`; without them, the embedded defaults: a SQLite file
    /// and librdkafka's in-process mock cluster. Transactional, with an in-process relay.
    pub async fn from_env(service: S) -> Result<Self, crate::StartError> {
        Builder::new(service).from_env()?.build().await
    }

    /// A handle of the same bus (same mode, same recorder or broker) for another service, as when
    /// several services run in one process.
    pub fn for_service<S2: Service>(&self, service: S2) -> EventBus<S2> {
        let _ = service;
        EventBus {
            core: Arc::clone(&self.core),
            context: self.context.clone(),
            _service: PhantomData,
        }
    }

    /// A handle that stamps `context` (correlation, causation, trace) on what it publishes.
    pub fn with_context(&self, context: EventContext) -> Self {
        EventBus {
            core: Arc::clone(&self.core),
            context,
            _service: PhantomData,
        }
    }

    /// The service this bus publishes for.
    pub fn service(&self) -> &'static str {
        S::NAME
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        match self.core.backend {
            Backend::Testing(_) => Mode::Testing,
            #[cfg(feature = "kafka")]
            Backend::Direct(_) => Mode::Direct,
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            Backend::Transactional(_) => Mode::Transactional,
        }
    }

    /// What a Testing bus recorded.
    ///
    /// # Panics
    /// When the bus is not in the Testing mode: recording is a testing facility.
    pub fn recorded(&self) -> &Recorder {
        match &self.core.backend {
            Backend::Testing(memory) => memory.recorder(),
            #[allow(unreachable_patterns)]
            _ => panic!(
                "EventBus::recorded is for the Testing mode; this bus is in the {:?} mode",
                self.mode()
            ),
        }
    }

    /// The outbox of a Transactional bus: its pool (to begin transactions), dead rows, replay.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub fn outbox(&self) -> Option<&OutboxStore> {
        match &self.core.backend {
            Backend::Transactional(t) => Some(&t.store),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Checks what the bus depends on, each within `timeout` (the seed's AD-007): the brokers
    /// (a metadata request), and in the Transactional mode the outbox database and what waits in
    /// it. Never fails: what is down is reported, with the address and the error.
    ///
    /// ```
    /// # use eventbus::{EventBus, Service};
    /// # #[derive(Service)] #[service(name = "petstore")] struct Petstore;
    /// # async fn run() {
    /// let bus = EventBus::testing(Petstore);
    /// let health = bus.health(std::time::Duration::from_secs(2)).await;
    /// assert!(health.is_healthy());
    /// println!("{health}");          // "Testing mode"
    /// # }
    /// ```
    pub async fn health(&self, timeout: std::time::Duration) -> crate::health::Health {
        let mut health = crate::health::Health::of(self.mode());
        #[cfg(feature = "kafka")]
        let kafka_check = match self.transport() {
            Transport::Kafka(kafka) => Some(async move {
                crate::health::kafka(self.health_client(&kafka), &kafka, timeout).await
            }),
            _ => None,
        };
        #[cfg(not(feature = "kafka"))]
        let kafka_check: Option<std::future::Ready<crate::health::Check>> = None;
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        if let Some(store) = self.outbox() {
            let outbox = crate::health::outbox(store, timeout);
            let (kafka, (database, backlog)) = match kafka_check {
                Some(check) => {
                    let (k, o) = tokio::join!(check, outbox);
                    (Some(k), o)
                }
                None => (None, outbox.await),
            };
            if let Some(b) = &backlog {
                crate::metrics::set_backlog(store.table(), b);
            }
            health.kafka = kafka;
            health.database = Some(database);
            health.backlog = backlog;
            return health;
        }
        if let Some(check) = kafka_check {
            health.kafka = Some(check.await);
        }
        health
    }

    /// The client a health check asks the brokers with: the Direct mode's own producer, else one
    /// made on the first check.
    #[cfg(feature = "kafka")]
    fn health_client(
        &self,
        kafka: &crate::config::KafkaConfig,
    ) -> Result<rdkafka::producer::FutureProducer, String> {
        match &self.core.backend {
            Backend::Direct(d) => Ok(d.producer.clone()),
            _ => {
                self.core
                    .health_client
                    .get_or_init(|| {
                        kafka.client_config().create().map_err(|e| {
                            crate::config::redact::kafka_error(e, Some(kafka)).to_string()
                        })
                    })
                    .clone()
            }
        }
    }

    /// The counters of the relay this bus runs in process, if it runs one.
    #[cfg(all(feature = "kafka", any(feature = "postgres", feature = "sqlite")))]
    pub fn relay_stats(&self) -> Option<Arc<crate::relay::RelayStats>> {
        match &self.core.backend {
            Backend::Transactional(t) => t.relay_stats.clone(),
            _ => None,
        }
    }

    /// Writes `event` to the outbox inside the caller's transaction (Transactional mode): it is
    /// published if and only if the transaction commits. Returns the event id.
    ///
    /// In the Testing mode the event is recorded (and delivered) at once; the Direct mode has no
    /// outbox and returns [`PublishError::WrongMode`].
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub async fn enqueue<E, T>(&self, tx: &mut T, event: &E) -> Result<Uuid, PublishError>
    where
        E: Event + OwnedBy<S>,
        T: OutboxTransaction,
    {
        let mut envelope = Envelope::new(event, &self.context).and_then(conform::typed::<E>)?;
        let id = envelope.id;
        let span = self.publish_span(E::TOPIC, std::slice::from_mut(&mut envelope));
        traced(span, async move {
            match &self.core.backend {
                Backend::Transactional(t) => {
                    let written = t.enqueue::<E, T>(tx, &envelope).await;
                    self.count_published(1, written.is_ok());
                    written.map(|()| id)
                }
                Backend::Testing(_) => self.send(envelope, None).await.map(|_| id),
                #[cfg(feature = "kafka")]
                Backend::Direct(_) => Err(PublishError::WrongMode {
                    operation: "enqueue",
                    needs: "Transactional",
                    mode: Mode::Direct,
                }),
            }
        })
        .await
    }

    /// The context this handle stamps on what it publishes.
    pub(crate) fn context(&self) -> &EventContext {
        &self.context
    }

    /// The outbox store of a Transactional bus.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub(crate) fn transactional(&self) -> Option<&transactional::TransactionalBackend> {
        match &self.core.backend {
            Backend::Transactional(t) => Some(t),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Writes an envelope built by the caller (the event store) into `tx` with the statement the
    /// derive generated for its type: the row `enqueue` writes for the same event.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub(crate) async fn enqueue_built<T: OutboxTransaction>(
        &self,
        tx: &mut T,
        envelope: &Envelope,
        generated: Generated,
    ) -> Result<(), PublishError> {
        let Some(t) = self.transactional() else {
            return Err(PublishError::WrongMode {
                operation: "the event store",
                needs: "Transactional",
                mode: self.mode(),
            });
        };
        let written = t.enqueue_generated(tx, envelope, generated).await;
        self.count_published(1, written.is_ok());
        written
    }

    /// Publishes many events of one type. Every event is serialized and its key checked before
    /// any is sent or written: one that is refused fails the call and nothing goes out. Direct
    /// mode then sends them all and awaits every acknowledgement; the Transactional mode writes
    /// them in one transaction.
    pub async fn publish_all<E>(&self, events: &[E]) -> Result<Vec<Receipt>, PublishError>
    where
        E: Event + OwnedBy<S>,
    {
        match &self.core.backend {
            #[cfg(feature = "kafka")]
            Backend::Direct(direct) => self.send_all_direct(direct, events).await,
            Backend::Testing(_) => {
                let (envelopes, span) = self.envelopes_of(events)?;
                traced(span, async {
                    // Each event goes through `send`, which counts it.
                    let mut receipts = Vec::with_capacity(envelopes.len());
                    for envelope in envelopes {
                        receipts.push(self.send(envelope, Some(Statement::of::<E>())).await?);
                    }
                    Ok(receipts)
                })
                .await
            }
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            Backend::Transactional(t) => {
                let (envelopes, span) = self.envelopes_of(events)?;
                traced(span, async {
                    let result = t.write(&envelopes, Some(Generated::of::<E>())).await;
                    self.count_published(events.len(), result.is_ok());
                    result
                })
                .await
            }
        }
    }

    /// The envelopes of `events`, every one serialized and checked before any is written, and
    /// the span of their publish. Sized up front: collecting the `Result`s would grow the vector
    /// by doubling, copying every envelope built so far.
    fn envelopes_of<E>(&self, events: &[E]) -> Result<(Vec<Envelope>, tracing::Span), PublishError>
    where
        E: Event + OwnedBy<S>,
    {
        let mut envelopes = Vec::with_capacity(events.len());
        for event in events {
            envelopes.push(Envelope::new(event, &self.context).and_then(conform::typed::<E>)?);
        }
        let span = self.publish_span(E::TOPIC, &mut envelopes);
        Ok((envelopes, span))
    }

    /// Stops the in-process relay after the batches in hand (within 2.5 s: see
    /// [`crate::relay::RelayHandle::shutdown`]) and flushes the producer.
    pub async fn shutdown(&self) {
        match &self.core.backend {
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            Backend::Transactional(t) => t.shutdown().await,
            #[cfg(feature = "kafka")]
            Backend::Direct(d) => d.flush(),
            Backend::Testing(_) => {}
        }
    }

    /// Publishes any event this service may publish.
    ///
    /// The event is serialized when this is called; the returned future sends it.
    pub fn publish<E>(&self, event: &E) -> BoxFuture<'_, Result<Receipt, PublishError>>
    where
        E: Event + OwnedBy<S>,
    {
        match Envelope::new(event, &self.context).and_then(conform::typed::<E>) {
            Ok(mut envelope) => {
                let span = self.publish_span(E::TOPIC, std::slice::from_mut(&mut envelope));
                Box::pin(traced(
                    span,
                    self.send(envelope, Some(Statement::of::<E>())),
                ))
            }
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    /// The span of a publish of `envelopes` (of one topic) in this bus's mode, its context
    /// written into them (`crate::trace`): `create` into the outbox, `send` otherwise.
    fn publish_span(&self, topic: &str, envelopes: &mut [Envelope]) -> tracing::Span {
        let span = crate::trace::publish(self.operation(), topic, envelopes.len());
        crate::trace::stamp(&span, envelopes);
        span
    }

    /// The messaging operation of a publish: `create` (into the outbox: the relay sends it),
    /// `send` (to Kafka, or the in-memory transport).
    fn operation(&self) -> &'static str {
        match &self.core.backend {
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            Backend::Transactional(_) => "create",
            _ => "send",
        }
    }

    /// Where this bus's consumers read from.
    pub(crate) fn transport(&self) -> Transport {
        match &self.core.backend {
            Backend::Testing(memory) => Transport::Memory(Arc::clone(memory)),
            #[cfg(feature = "kafka")]
            Backend::Direct(d) => Transport::Kafka(d.kafka.clone()),
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            Backend::Transactional(t) => {
                #[cfg(feature = "kafka")]
                if let Some(kafka) = &t.kafka {
                    return Transport::Kafka(kafka.clone());
                }
                Transport::Unavailable(Mode::Transactional)
            }
        }
    }

    /// Sends an envelope through the bus's mode, counted in the publish metrics. `statement`: the
    /// generated outbox INSERT of its type, when the type is known at compile time.
    async fn send(
        &self,
        envelope: Envelope,
        statement: Option<Statement>,
    ) -> Result<Receipt, PublishError> {
        let started = std::time::Instant::now();
        let result = self.deliver(envelope, statement).await;
        self.count_published(1, result.is_ok());
        self.core
            .publish_duration
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// `eventbus_published_total` (or `eventbus_publish_failures_total`) by `events`.
    fn count_published(&self, events: usize, ok: bool) {
        let counter = if ok {
            &self.core.published
        } else {
            &self.core.publish_failures
        };
        counter.increment(events as u64);
    }

    /// Sends an envelope through the bus's mode.
    async fn deliver(
        &self,
        envelope: Envelope,
        statement: Option<Statement>,
    ) -> Result<Receipt, PublishError> {
        match &self.core.backend {
            Backend::Testing(memory) => {
                let receipt = Receipt::recorded(&envelope);
                memory.publish(&envelope).await;
                Ok(receipt)
            }
            #[cfg(feature = "kafka")]
            Backend::Direct(d) => d.send(&envelope).await,
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            Backend::Transactional(t) => {
                let mut receipts = t.write(std::slice::from_ref(&envelope), statement).await?;
                Ok(receipts.remove(0))
            }
        }
    }
}

/// Runs `publish` inside `span` (a publish span), which an error marks failed.
async fn traced<T>(
    span: tracing::Span,
    publish: impl std::future::Future<Output = Result<T, PublishError>>,
) -> Result<T, PublishError> {
    use tracing::Instrument as _;
    let result = publish.instrument(span.clone()).await;
    if let Err(e) = &result {
        crate::trace::failed(&span, error_type(e));
    }
    result
}

/// The `error.type` of a failed publish: the kind of error.
fn error_type(error: &PublishError) -> &'static str {
    match error {
        PublishError::Serialize { .. } => "serialize",
        PublishError::Invalid(_) => "invalid",
        #[cfg(feature = "kafka")]
        PublishError::Kafka { .. } => "kafka",
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        PublishError::Outbox { .. } => "outbox",
        PublishError::WrongMode { .. } => "wrong_mode",
        PublishError::EmptyKey { .. } => "empty_key",
        PublishError::InvalidTopic { .. } => "invalid_topic",
    }
}

/// The generated outbox INSERT of an event type (see [`Event::OUTBOX_INSERT_POSTGRES`]).
#[cfg(any(feature = "postgres", feature = "sqlite"))]
type Statement = Generated;
/// Without a database there is no outbox statement to carry.
#[cfg(not(any(feature = "postgres", feature = "sqlite")))]
#[derive(Clone, Copy)]
struct Statement;

#[cfg(not(any(feature = "postgres", feature = "sqlite")))]
impl Statement {
    fn of<E: Event>() -> Self {
        Statement
    }
}

impl<S: Service> EventPublisher for EventBus<S> {
    fn service(&self) -> &'static str {
        S::NAME
    }

    fn context(&self) -> EventContext {
        self.context.clone()
    }

    fn publish_envelope(&self, envelope: Envelope) -> BoxFuture<'_, Result<Receipt, PublishError>> {
        match conform::built(envelope) {
            Ok(mut envelope) => {
                let span = crate::trace::publish(self.operation(), &envelope.topic, 1);
                crate::trace::stamp(&span, std::slice::from_mut(&mut envelope));
                Box::pin(traced(span, self.send(envelope, None)))
            }
            Err(e) => {
                self.count_published(1, false);
                Box::pin(std::future::ready(Err(e)))
            }
        }
    }
}
