//! [`EventBus`]: the typed front door, bound to one service, over one of three modes.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use crate::consumer::Engine;
use crate::envelope::{Envelope, EventContext};
use crate::error::PublishError;
use crate::event::{
    AcceptsAudit, AcceptsDomain, AcceptsIntegration, AcceptsNotification, AcceptsSystem, Event,
    OwnedBy, RoutedTo, Service, Topic,
};
use crate::outbox::{NewRow, OutboxStore, OutboxTransaction};
use crate::publisher::{BoxFuture, EventPublisher};
use crate::relay::{RelayHandle, RelayStats};
use crate::testing::Recorder;

/// How a bus delivers events (the seed's AD-003).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Events are written to the outbox inside the caller's database transaction; a relay
    /// publishes them. The default wherever a database is configured.
    Transactional,
    /// Events are sent to Kafka and the broker's acknowledgement awaited.
    Direct,
    /// Events are recorded in memory and dispatched to local handlers; no broker.
    Testing,
}

/// What a successful publish returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Receipt {
    /// The event's `ce_id`.
    pub event_id: Uuid,
    /// The topic it went to.
    pub topic: String,
    /// The partition, once the broker has acknowledged it.
    pub partition: Option<i32>,
    /// The offset, once the broker has acknowledged it.
    pub offset: Option<i64>,
}

impl Receipt {
    fn recorded(envelope: &Envelope) -> Self {
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
    /// Consumers started on a Testing bus: published events are dispatched to them.
    local: RwLock<Vec<(u64, Arc<Engine>)>>,
    next_id: AtomicU64,
    /// The client health checks of a Transactional bus ask the brokers with, made on the first
    /// check (a Direct bus asks with its producer).
    health_client: std::sync::OnceLock<Result<rdkafka::producer::FutureProducer, String>>,
    /// `eventbus_published_total`, `eventbus_publish_failures_total` and
    /// `eventbus_publish_duration_seconds` of this bus, registered once.
    published: metrics::Counter,
    publish_failures: metrics::Counter,
    publish_duration: metrics::Histogram,
}

pub(crate) enum Backend {
    Testing(Recorder),
    Direct(DirectBackend),
    Transactional(TransactionalBackend),
}

/// Direct mode: an idempotent producer; publish awaits the broker's acknowledgement.
pub(crate) struct DirectBackend {
    pub(crate) producer: rdkafka::producer::FutureProducer,
    pub(crate) kafka: crate::KafkaConfig,
    pub(crate) _embedded: Option<crate::kafka::EmbeddedKafka>,
}

/// Transactional mode: the outbox, and the relay the bus runs in process (if any).
pub(crate) struct TransactionalBackend {
    pub(crate) store: OutboxStore,
    pub(crate) kafka: crate::KafkaConfig,
    pub(crate) shards: u32,
    pub(crate) wake: Arc<tokio::sync::Notify>,
    pub(crate) relay: std::sync::Mutex<Option<RelayHandle>>,
    pub(crate) relay_stats: Option<Arc<RelayStats>>,
    pub(crate) _embedded: Option<crate::kafka::EmbeddedKafka>,
}

impl<S: Service> EventBus<S> {
    /// A bus in the Testing mode: events are recorded in memory ([`EventBus::recorded`]) and
    /// dispatched to this bus's subscriptions; nothing leaves the process.
    pub fn testing(service: S) -> Self {
        let _ = service;
        Self::with_backend(Backend::Testing(Recorder::default()))
    }

    pub(crate) fn with_backend(backend: Backend) -> Self {
        let mode = match backend {
            Backend::Transactional(_) => "transactional",
            Backend::Direct(_) => "direct",
            Backend::Testing(_) => "testing",
        };
        let labels = [("service", S::NAME), ("mode", mode)];
        EventBus {
            core: Arc::new(Core {
                backend,
                local: RwLock::new(Vec::new()),
                next_id: AtomicU64::new(1),
                health_client: std::sync::OnceLock::new(),
                published: metrics::counter!("eventbus_published_total", &labels),
                publish_failures: metrics::counter!("eventbus_publish_failures_total", &labels),
                publish_duration: metrics::histogram!("eventbus_publish_duration_seconds", &labels),
            }),
            context: EventContext::default(),
            _service: PhantomData,
        }
    }

    /// A builder for a Transactional or Direct bus; see [`crate::Builder`].
    pub fn builder(service: S) -> crate::Builder<S> {
        crate::Builder::new(service)
    }

    /// The bus the environment describes (AD-008): `EVENTBUS_DATABASE_URL` (PostgreSQL or
    /// SQLite) and `EVENTBUS_KAFKA_BROKERS`; without them, the embedded defaults: a SQLite file
    /// and librdkafka's in-process mock cluster. Transactional, with an in-process relay.
    pub async fn from_env(service: S) -> Result<Self, crate::StartError> {
        crate::Builder::new(service).from_env()?.build().await
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
            Backend::Direct(_) => Mode::Direct,
            Backend::Transactional(_) => Mode::Transactional,
        }
    }

    /// What a Testing bus recorded.
    ///
    /// # Panics
    /// When the bus is not in the Testing mode: recording is a testing facility.
    pub fn recorded(&self) -> &Recorder {
        match &self.core.backend {
            Backend::Testing(recorder) => recorder,
            _ => panic!(
                "EventBus::recorded is for the Testing mode; this bus is in the {:?} mode",
                self.mode()
            ),
        }
    }

    /// The outbox of a Transactional bus: its pool (to begin transactions), dead rows, replay.
    pub fn outbox(&self) -> Option<&OutboxStore> {
        match &self.core.backend {
            Backend::Transactional(t) => Some(&t.store),
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
    pub async fn health(&self, timeout: std::time::Duration) -> crate::Health {
        let mut health = crate::Health {
            mode: self.mode(),
            kafka: None,
            database: None,
            backlog: None,
        };
        if let Some(kafka) = self.kafka() {
            let kafka_check = crate::health::kafka(self.health_client(&kafka), &kafka, timeout);
            match self.outbox() {
                Some(store) => {
                    let (kafka, (database, backlog)) =
                        tokio::join!(kafka_check, crate::health::outbox(store, timeout));
                    if let Some(b) = &backlog {
                        crate::metrics::set_backlog(store.table(), b);
                    }
                    health.kafka = Some(kafka);
                    health.database = Some(database);
                    health.backlog = backlog;
                }
                None => health.kafka = Some(kafka_check.await),
            }
        }
        health
    }

    /// The client a health check asks the brokers with: the Direct mode's own producer, else one
    /// made on the first check.
    fn health_client(
        &self,
        kafka: &crate::KafkaConfig,
    ) -> Result<rdkafka::producer::FutureProducer, String> {
        match &self.core.backend {
            Backend::Direct(d) => Ok(d.producer.clone()),
            _ => self
                .core
                .health_client
                .get_or_init(|| kafka.client_config().create().map_err(|e| e.to_string()))
                .clone(),
        }
    }

    /// The counters of the relay this bus runs in process, if it runs one.
    pub fn relay_stats(&self) -> Option<Arc<RelayStats>> {
        match &self.core.backend {
            Backend::Transactional(t) => t.relay_stats.clone(),
            _ => None,
        }
    }

    /// Writes `event` to the outbox inside the caller's transaction (Transactional mode): it is
    /// published if and only if the transaction commits. Returns the event id.
    ///
    /// In the Testing mode the event is recorded (and dispatched) at once; the Direct mode has no
    /// outbox and returns [`PublishError::WrongMode`].
    pub async fn enqueue<E, T>(&self, tx: &mut T, event: &E) -> Result<Uuid, PublishError>
    where
        E: Event + OwnedBy<S>,
        T: OutboxTransaction,
    {
        let envelope = Envelope::new(event, &self.context)?;
        let id = envelope.id;
        match &self.core.backend {
            Backend::Transactional(t) => {
                let written = Self::insert::<E, T>(t, tx, &envelope).await;
                self.count_published(1, written.is_ok());
                written?;
                t.wake.notify_one();
                Ok(id)
            }
            Backend::Testing(_) => self.send(envelope).await.map(|_| id),
            Backend::Direct(_) => Err(PublishError::WrongMode {
                operation: "enqueue",
                needs: "Transactional",
                mode: Mode::Direct,
            }),
        }
    }

    /// Writes `envelope` (of an `E`) into `tx` with the statement the derive generated.
    async fn insert<E: Event, T: OutboxTransaction>(
        t: &TransactionalBackend,
        tx: &mut T,
        envelope: &Envelope,
    ) -> Result<(), PublishError> {
        if tx.dialect() != t.store.dialect() {
            return Err(PublishError::Invalid(format!(
                "the transaction is {:?} but this bus's outbox is {:?}: begin it on the bus's database",
                tx.dialect(),
                t.store.dialect()
            )));
        }
        let statement = match tx.dialect() {
            crate::outbox::Dialect::Postgres => E::OUTBOX_INSERT_POSTGRES,
            crate::outbox::Dialect::Sqlite => E::OUTBOX_INSERT_SQLITE,
        };
        tx.insert(statement, &t.store.table, NewRow::new(envelope, t.shards))
            .await
            .map_err(|source| PublishError::Outbox {
                event_id: envelope.id,
                table: t.store.table.to_string(),
                source,
            })
    }

    /// Publishes many events of one type: Direct mode sends them all, then awaits every
    /// acknowledgement; the Transactional mode writes them in one transaction.
    pub async fn publish_all<E>(&self, events: &[E]) -> Result<Vec<Receipt>, PublishError>
    where
        E: Event + OwnedBy<S>,
    {
        let result = self.publish_all_uncounted(events).await;
        if !matches!(self.core.backend, Backend::Testing(_)) {
            // (Testing: each event went through `send`, which counted it.)
            self.count_published(events.len(), result.is_ok());
        }
        result
    }

    async fn publish_all_uncounted<E>(&self, events: &[E]) -> Result<Vec<Receipt>, PublishError>
    where
        E: Event + OwnedBy<S>,
    {
        let envelopes = events
            .iter()
            .map(|e| Envelope::new(e, &self.context))
            .collect::<Result<Vec<_>, _>>()?;
        match &self.core.backend {
            Backend::Direct(d) => {
                let mut pending = Vec::with_capacity(envelopes.len());
                for envelope in &envelopes {
                    let record = crate::kafka::record(envelope, crate::kafka::headers(envelope));
                    match d.producer.send_result(record) {
                        Ok(delivery) => pending.push((envelope, delivery)),
                        Err((source, _)) => {
                            return Err(PublishError::Kafka {
                                event_id: envelope.id,
                                topic: envelope.topic.clone(),
                                source,
                            });
                        }
                    }
                }
                let mut receipts = Vec::with_capacity(pending.len());
                for (envelope, delivery) in pending {
                    receipts.push(delivered(envelope, delivery.await)?);
                }
                Ok(receipts)
            }
            Backend::Transactional(t) => {
                let to_outbox = |source| PublishError::Outbox {
                    event_id: envelopes.first().map(|e| e.id).unwrap_or_default(),
                    table: t.store.table.to_string(),
                    source,
                };
                // One transaction for the batch, whichever the dialect.
                macro_rules! in_one_transaction {
                    ($pool:expr) => {{
                        let mut tx = $pool.begin().await.map_err(to_outbox)?;
                        for envelope in &envelopes {
                            Self::insert::<E, _>(t, &mut tx, envelope).await?;
                        }
                        tx.commit().await.map_err(to_outbox)?;
                    }};
                }
                match &t.store.db {
                    crate::outbox::Db::Postgres(pool) => in_one_transaction!(pool),
                    crate::outbox::Db::Sqlite(pool) => in_one_transaction!(pool),
                }
                t.wake.notify_one();
                Ok(envelopes.iter().map(Receipt::recorded).collect())
            }
            Backend::Testing(_) => {
                let mut receipts = Vec::with_capacity(envelopes.len());
                for envelope in envelopes {
                    receipts.push(self.send(envelope).await?);
                }
                Ok(receipts)
            }
        }
    }

    /// Stops the in-process relay after the batch in hand and flushes the producer.
    pub async fn shutdown(&self) {
        match &self.core.backend {
            Backend::Transactional(t) => {
                let relay = t
                    .relay
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                if let Some(relay) = relay
                    && let Err(e) = relay.shutdown().await
                {
                    tracing::warn!(error = %e, "eventbus: relay did not stop cleanly");
                }
            }
            Backend::Direct(d) => {
                use rdkafka::producer::Producer;
                let _ = d.producer.flush(std::time::Duration::from_secs(10));
            }
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
        match Envelope::new(event, &self.context) {
            Ok(envelope) => Box::pin(self.send(envelope)),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    /// Publishes a domain event of this service (the seed's `publish_domain_event`).
    pub fn publish_domain<E>(&self, event: &E) -> BoxFuture<'_, Result<Receipt, PublishError>>
    where
        E: Event + OwnedBy<S>,
        E::Category: AcceptsDomain<E, E::Topic>,
    {
        self.publish(event)
    }

    /// Publishes an integration event.
    pub fn publish_integration<E>(&self, event: &E) -> BoxFuture<'_, Result<Receipt, PublishError>>
    where
        E: Event + OwnedBy<S>,
        E::Category: AcceptsIntegration<E, E::Topic>,
    {
        self.publish(event)
    }

    /// Publishes an audit event (the seed's `publish_audit_event`).
    pub fn publish_audit<E>(&self, event: &E) -> BoxFuture<'_, Result<Receipt, PublishError>>
    where
        E: Event + OwnedBy<S>,
        E::Category: AcceptsAudit<E, E::Topic>,
    {
        self.publish(event)
    }

    /// Publishes a system event.
    pub fn publish_system<E>(&self, event: &E) -> BoxFuture<'_, Result<Receipt, PublishError>>
    where
        E: Event + OwnedBy<S>,
        E::Category: AcceptsSystem<E, E::Topic>,
    {
        self.publish(event)
    }

    /// Publishes a notification event (the seed's `publish_notification_event`).
    pub fn publish_notification<E>(&self, event: &E) -> BoxFuture<'_, Result<Receipt, PublishError>>
    where
        E: Event + OwnedBy<S>,
        E::Category: AcceptsNotification<E, E::Topic>,
    {
        self.publish(event)
    }

    /// A publisher bound to topic `T`: it accepts only events routed to `T`.
    pub fn publisher<T: Topic>(&self) -> TopicPublisher<S, T> {
        TopicPublisher {
            bus: self.clone(),
            _topic: PhantomData,
        }
    }

    /// The Kafka cluster of a Direct or Transactional bus.
    pub(crate) fn kafka(&self) -> Option<crate::KafkaConfig> {
        match &self.core.backend {
            Backend::Direct(d) => Some(d.kafka.clone()),
            Backend::Transactional(t) => Some(t.kafka.clone()),
            Backend::Testing(_) => None,
        }
    }

    pub(crate) fn register_local(&self, engine: Arc<Engine>) -> u64 {
        let id = self.core.next_id.fetch_add(1, Ordering::Relaxed);
        self.core
            .local
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((id, engine));
        id
    }

    pub(crate) fn unregister_local(&self, id: u64) {
        self.core
            .local
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(i, _)| *i != id);
    }

    /// Sends an envelope through the bus's mode, counted in the publish metrics.
    async fn send(&self, envelope: Envelope) -> Result<Receipt, PublishError> {
        let started = std::time::Instant::now();
        let result = self.deliver(envelope).await;
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
    async fn deliver(&self, envelope: Envelope) -> Result<Receipt, PublishError> {
        match &self.core.backend {
            Backend::Testing(recorder) => {
                let receipt = Receipt::recorded(&envelope);
                recorder.record(envelope.clone());
                self.dispatch_locally(&envelope, recorder).await;
                Ok(receipt)
            }
            Backend::Direct(d) => {
                let record = crate::kafka::record(&envelope, crate::kafka::headers(&envelope));
                let delivery =
                    d.producer
                        .send_result(record)
                        .map_err(|(source, _)| PublishError::Kafka {
                            event_id: envelope.id,
                            topic: envelope.topic.clone(),
                            source,
                        })?;
                delivered(&envelope, delivery.await)
            }
            Backend::Transactional(t) => {
                t.store.write(&envelope, t.shards).await.map_err(|source| {
                    PublishError::Outbox {
                        event_id: envelope.id,
                        table: t.store.table.to_string(),
                        source,
                    }
                })?;
                t.wake.notify_one();
                Ok(Receipt::recorded(&envelope))
            }
        }
    }

    /// Runs the local consumers for `envelope`; failures are recorded, not returned: a publisher
    /// does not see its consumers' errors.
    async fn dispatch_locally(&self, envelope: &Envelope, recorder: &Recorder) {
        let engines: Vec<Arc<Engine>> = self
            .core
            .local
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(_, e)| Arc::clone(e))
            .collect();
        for engine in engines {
            engine.deliver_locally(envelope, recorder).await;
        }
    }
}

/// The receipt of a delivery, or the error Kafka gave.
fn delivered<Canceled>(
    envelope: &Envelope,
    result: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, Canceled>,
) -> Result<Receipt, PublishError> {
    match result {
        Ok(Ok(delivery)) => Ok(Receipt {
            event_id: envelope.id,
            topic: envelope.topic.clone(),
            partition: Some(delivery.partition),
            offset: Some(delivery.offset),
        }),
        Ok(Err((source, _))) => Err(PublishError::Kafka {
            event_id: envelope.id,
            topic: envelope.topic.clone(),
            source,
        }),
        Err(_) => Err(PublishError::Kafka {
            event_id: envelope.id,
            topic: envelope.topic.clone(),
            source: rdkafka::error::KafkaError::Canceled,
        }),
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
        Box::pin(self.send(envelope))
    }
}

/// A publisher bound to one topic type; see [`EventBus::publisher`].
pub struct TopicPublisher<S: Service, T: Topic> {
    bus: EventBus<S>,
    _topic: PhantomData<fn() -> T>,
}

impl<S: Service, T: Topic> TopicPublisher<S, T> {
    /// The topic's name.
    pub fn topic(&self) -> &'static str {
        T::NAME
    }

    /// Publishes an event routed to `T`.
    pub fn publish<E>(&self, event: &E) -> BoxFuture<'_, Result<Receipt, PublishError>>
    where
        E: RoutedTo<T> + OwnedBy<S>,
    {
        self.bus.publish(event)
    }
}
