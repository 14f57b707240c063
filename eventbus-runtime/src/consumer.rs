//! Typed consumers (the consuming half of AD-005 and AD-006): subscriptions on topic types,
//! handlers per event type, filters, plugins, retries with backoff, dead letters, an inbox, a
//! circuit breaker.
//!
//! Delivery is at least once: a record's offset is stored for commit only once every handler
//! succeeded (or the record went to the DLQ), and only up to the lowest record still in work, so a
//! crash or a rebalance re-delivers, never skips. Records of one key (in one partition) are handled
//! in order, one at a time; different keys run in parallel up to a bound. A failing key is parked
//! (backoff) while the partition's other keys flow.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use futures_core::Stream as _;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{Semaphore, watch};

use crate::EventBus;
use crate::config::{Backoff, KafkaConfig};
use crate::envelope::{Envelope, SPEC_VERSION};
use crate::error::{DecodeError, HandlerError};
use crate::event::{Event, RoutedTo, Service, Topic};
use crate::filter::EventFilter;
use crate::inbox::{Inbox, InboxTx};
use crate::metrics::Counted;
use crate::publisher::BoxFuture;
use crate::testing::{HandlerFailure, Recorder};

/// What a handler may return: `()`, or `Result<(), E>` with an error convertible into a
/// [`HandlerError`].
pub trait IntoHandlerResult {
    /// The result as the consumer sees it.
    fn into_handler_result(self) -> Result<(), HandlerError>;
}

impl IntoHandlerResult for () {
    fn into_handler_result(self) -> Result<(), HandlerError> {
        Ok(())
    }
}

impl<Err: Into<HandlerError>> IntoHandlerResult for Result<(), Err> {
    fn into_handler_result(self) -> Result<(), HandlerError> {
        self.map_err(Into::into)
    }
}

/// An event handler: an async function or closure taking the event, or a plain function.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot handle `{E}` events",
    label = "not a handler of `{E}`",
    note = "a handler is an async fn or closure taking the event by value, `|event: {E}| async move {{ .. }}`, returning `()` or `Result<(), impl Into<eventbus::HandlerError>>`; a synchronous function goes through `eventbus::sync_handler(f)`"
)]
pub trait Handler<E>: Send + Sync + 'static {
    /// Handles one event.
    fn handle(&self, event: E) -> impl Future<Output = Result<(), HandlerError>> + Send + 'static;
}

impl<E, F, Fut> Handler<E> for F
where
    E: Event,
    F: Fn(E) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoHandlerResult,
{
    fn handle(&self, event: E) -> impl Future<Output = Result<(), HandlerError>> + Send + 'static {
        let fut = self(event);
        async move { fut.await.into_handler_result() }
    }
}

/// A synchronous handler, run on tokio's blocking pool.
pub struct SyncHandler<F>(Arc<F>);

/// Wraps a synchronous function as a [`Handler`]: `.on::<E, _>(sync_handler(|e: E| { .. }))`.
pub fn sync_handler<F>(f: F) -> SyncHandler<F> {
    SyncHandler(Arc::new(f))
}

impl<E, F, R> Handler<E> for SyncHandler<F>
where
    E: Event,
    F: Fn(E) -> R + Send + Sync + 'static,
    R: IntoHandlerResult + Send + 'static,
{
    fn handle(&self, event: E) -> impl Future<Output = Result<(), HandlerError>> + Send + 'static {
        let f = Arc::clone(&self.0);
        async move {
            tokio::task::spawn_blocking(move || f(event).into_handler_result())
                .await
                .map_err(|e| HandlerError::from(format!("the handler panicked: {e}")))?
        }
    }
}

/// A handler that writes its effects in the inbox transaction and hands it back:
/// `|event: E, mut tx: InboxTx| async move { ..; Ok(tx) }`.
pub trait TxHandler<E>: Send + Sync + 'static {
    /// Handles one event inside `tx`.
    fn handle(
        &self,
        event: E,
        tx: InboxTx,
    ) -> impl Future<Output = Result<InboxTx, HandlerError>> + Send + 'static;
}

impl<E, F, Fut, Err> TxHandler<E> for F
where
    E: Event,
    F: Fn(E, InboxTx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<InboxTx, Err>> + Send + 'static,
    Err: Into<HandlerError>,
{
    fn handle(
        &self,
        event: E,
        tx: InboxTx,
    ) -> impl Future<Output = Result<InboxTx, HandlerError>> + Send + 'static {
        let fut = self(event, tx);
        async move { fut.await.map_err(Into::into) }
    }
}

/// An object-safe handler for events known only at run time (the seed's plugins): it sees every
/// envelope of the consumer's topics that its filter lets through.
pub trait EventHandler: Send + Sync + 'static {
    /// A name for logs and dead letters.
    fn name(&self) -> &str;
    /// Which events it wants.
    fn filter(&self) -> EventFilter {
        EventFilter::new()
    }
    /// Handles one event.
    fn handle<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, Result<(), HandlerError>>;
}

/// How failed handlers are retried before the record goes to the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    backoff: Backoff,
    max_attempts: u32,
    attempt_timeout: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::exponential(Duration::from_millis(100), Duration::from_secs(10))
            .max_attempts(5)
    }
}

impl RetryPolicy {
    /// Exponential backoff with jitter from `initial`, doubling, capped at `max`.
    pub fn exponential(initial: Duration, max: Duration) -> Self {
        RetryPolicy {
            backoff: Backoff {
                initial,
                multiplier: 2.0,
                max,
            },
            max_attempts: 5,
            attempt_timeout: None,
        }
    }

    /// No retry: the first failure sends the record to the dead-letter topic.
    pub fn none() -> Self {
        RetryPolicy::default().max_attempts(1)
    }

    /// Attempts in all, the first included (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Fails an attempt whose handler has not finished after `limit` (none by default): a handler
    /// stuck on a downstream that never answers is retried, then dead-lettered, instead of holding
    /// its key, and its partition's commits, forever. The handler's future is dropped at the limit;
    /// work it started elsewhere (a spawned task, a request already sent) is not undone.
    pub fn attempt_timeout(mut self, limit: Duration) -> Self {
        self.attempt_timeout = Some(limit);
        self
    }
}

/// Counters of a consumer (also exported as `eventbus_consumer_*_total{group}`, see
/// [`crate::metrics`]).
#[derive(Debug, Default)]
pub struct ConsumerStats {
    handled: Counted,
    retried: Counted,
    dead_lettered: Counted,
    skipped: Counted,
    duplicates: Counted,
}

impl ConsumerStats {
    /// The counters of group `group`, exported with its name.
    fn new(group: &str) -> Self {
        let counter =
            |name: &'static str| Counted::new(metrics::counter!(name, "group" => group.to_owned()));
        ConsumerStats {
            handled: counter("eventbus_consumer_handled_total"),
            retried: counter("eventbus_consumer_retried_total"),
            dead_lettered: counter("eventbus_consumer_dead_lettered_total"),
            skipped: counter("eventbus_consumer_skipped_total"),
            duplicates: counter("eventbus_consumer_duplicates_total"),
        }
    }

    /// Records whose handlers all succeeded.
    pub fn handled(&self) -> u64 {
        self.handled.get()
    }
    /// Failed attempts that were retried.
    pub fn retried(&self) -> u64 {
        self.retried.get()
    }
    /// Records sent to the dead-letter topic.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.get()
    }
    /// Records no handler wanted (filtered out, or of a type nobody handles): never deserialized.
    pub fn skipped(&self) -> u64 {
        self.skipped.get()
    }
    /// Redeliveries the inbox recognised and skipped.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.get()
    }
}

/// Why a consumer could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// `start` was called before any handler was added.
    #[error(
        "the consumer `{group}` has no handlers: add one with `.on::<Event, _>(handler)` before `start`"
    )]
    NoHandlers {
        /// The consumer group.
        group: String,
    },
    /// The Kafka consumer could not be created or subscribed.
    #[error("cannot consume {topics:?} as group `{group}`: {source}")]
    Kafka {
        /// The group.
        group: String,
        /// The topics.
        topics: Vec<&'static str>,
        /// What librdkafka said.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The inbox table could not be created.
    #[error("cannot create the inbox table: {0}")]
    Inbox(#[source] sqlx::Error),
}

/// A handler at work on one record; it hands the inbox transaction back.
type HandlerFuture = BoxFuture<'static, Result<Option<InboxTx>, HandlerError>>;

/// A typed handler with its event type erased: decodes the payload (or says why it cannot) and
/// starts the handler.
type ErasedTyped =
    Arc<dyn Fn(&[u8], Option<InboxTx>) -> Result<HandlerFuture, serde_json::Error> + Send + Sync>;

/// Starts a route's handler on `payload`. A handler that panics while starting fails the
/// attempt instead of the consumer.
fn start_route(
    route: &Route,
    payload: &[u8],
    tx: Option<InboxTx>,
) -> Result<Result<HandlerFuture, serde_json::Error>, HandlerError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (route.call)(payload, tx)))
        .map_err(panicked)
}

/// Polls a handler's future; a panic inside it becomes the attempt's error, so the record is
/// retried and dead-lettered like any failure while the consumer keeps going.
fn poll_guarded<T>(
    handling: &mut BoxFuture<'_, Result<T, HandlerError>>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Result<T, HandlerError>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handling.as_mut().poll(cx)))
        .unwrap_or_else(|panic| Poll::Ready(Err(panicked(panic))))
}

/// Awaits a handler's future with [`poll_guarded`].
async fn guarded<T>(
    mut handling: BoxFuture<'_, Result<T, HandlerError>>,
) -> Result<T, HandlerError> {
    std::future::poll_fn(|cx| poll_guarded(&mut handling, cx)).await
}

/// The error of a handler that panicked, with the panic's message.
fn panicked(panic: Box<dyn std::any::Any + Send>) -> HandlerError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|m| (*m).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned());
    HandlerError::from(format!("the handler panicked: {message}"))
}

/// One handler, its event type erased.
#[derive(Clone)]
struct Route {
    topic: &'static str,
    event_type: &'static str,
    name: &'static str,
    call: ErasedTyped,
}

/// Opens and closes after repeated failures: while open, consumption pauses instead of burning
/// retries against a failing downstream.
#[derive(Debug)]
struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: AtomicU32,
    /// When the circuit closes again, in milliseconds since `epoch`; 0 when closed. Read on every
    /// record, so an atomic rather than a lock.
    open_until_ms: AtomicU64,
    epoch: Instant,
}

impl Breaker {
    fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold,
            cooldown,
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn record(&self, ok: bool) {
        if ok {
            if self.failures.load(Ordering::Relaxed) != 0 {
                self.failures.store(0, Ordering::Relaxed);
            }
        } else if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= self.threshold {
            let until = self.now_ms() + self.cooldown.as_millis() as u64;
            self.open_until_ms.store(until.max(1), Ordering::Relaxed);
            self.failures.store(0, Ordering::Relaxed);
            tracing::warn!(cooldown = ?self.cooldown, "eventbus consumer: circuit breaker open; pausing");
        }
    }

    /// How long to stay paused, if open.
    fn open_for(&self) -> Option<Duration> {
        let until = self.open_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return None;
        }
        let now = self.now_ms();
        if until > now {
            Some(Duration::from_millis(until - now))
        } else {
            self.open_until_ms.store(0, Ordering::Relaxed);
            None
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Everything that handles a record, shared by the Kafka loop and the Testing bus.
pub(crate) struct Engine {
    group: String,
    routes: Vec<Route>,
    plugins: Vec<Arc<dyn EventHandler>>,
    filter: EventFilter,
    retry: RetryPolicy,
    inbox: Option<Inbox>,
    breaker: Breaker,
    stats: Arc<ConsumerStats>,
    /// No plugins, no inbox, a filter on headers only: a record can be handled from its raw
    /// headers and payload, without an envelope.
    fast: bool,
}

/// A first attempt the consumer's fast path made before the record reached its key's queue.
enum FirstAttempt {
    /// The handler failed at once.
    Failed {
        handler: &'static str,
        error: HandlerError,
    },
    /// The handler is waiting (I/O, a timer): the record continues on a worker.
    Running {
        handler: &'static str,
        handling: HandlerFuture,
    },
}

/// The outcome of a record.
enum Outcome {
    Done,
    Dead {
        error: String,
        handler: String,
        attempts: u32,
    },
}

impl Engine {
    pub(crate) fn topics(&self) -> Vec<&'static str> {
        let mut t: Vec<&'static str> = self.routes.iter().map(|r| r.topic).collect();
        t.sort_unstable();
        t.dedup();
        t
    }

    /// The typed handlers of `envelope` (it passed the filter).
    fn routes_for<'a>(&'a self, envelope: &'a Envelope) -> impl Iterator<Item = &'a Route> {
        self.routes
            .iter()
            .filter(|r| r.topic == envelope.topic && r.event_type == envelope.event_type)
    }

    /// True when some handler of this engine wants `envelope`.
    pub(crate) fn wants(&self, envelope: &Envelope) -> bool {
        self.filter.matches(envelope)
            && (self.routes_for(envelope).next().is_some()
                || self.plugins.iter().any(|p| p.filter().matches(envelope)))
    }

    /// One attempt: every wanted handler, inside the inbox transaction when there is one.
    async fn attempt(&self, envelope: &Envelope) -> Result<(), (String, HandlerError)> {
        let mut tx = match &self.inbox {
            // Boxed: the database futures are large, and this one runs only with an inbox; inline,
            // they would make every record's future (and its moves) that large.
            Some(inbox) => match Box::pin(inbox.begin(&self.group, envelope.id)).await {
                Ok(Some(tx)) => Some(tx),
                Ok(None) => {
                    self.stats.duplicates.add(1);
                    return Ok(());
                }
                Err(e) => return Err(("inbox".into(), e.into())),
            },
            None => None,
        };
        for route in self.routes_for(envelope) {
            let failed = |e| (route.name.to_owned(), e);
            let handling = start_route(route, &envelope.payload, tx)
                .map_err(failed)?
                .map_err(|source| {
                    failed(HandlerError::from(DecodeError::Payload {
                        event_type: envelope.event_type.clone(),
                        id: envelope.id,
                        source,
                    }))
                })?;
            tx = self.finish(handling).await.map_err(failed)?;
        }
        for plugin in self.plugins.iter().filter(|p| p.filter().matches(envelope)) {
            let failed = |e| (plugin.name().to_owned(), e);
            let handling =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plugin.handle(envelope)))
                    .map_err(|panic| failed(panicked(panic)))?;
            self.finish(handling).await.map_err(failed)?;
        }
        if let Some(tx) = tx {
            Box::pin(tx.commit())
                .await
                .map_err(|e| ("inbox commit".to_owned(), HandlerError::from(e)))?;
        }
        Ok(())
    }

    /// Handles one record with retries; returns whether it must go to the dead-letter topic.
    /// `first` is the outcome of a first attempt made already (on the consumer's fast path).
    async fn process(
        &self,
        envelope: &Envelope,
        stop: &watch::Receiver<bool>,
        first: Option<FirstAttempt>,
    ) -> Outcome {
        let (mut attempt, mut failed) = match first {
            None if !self.wants(envelope) => {
                self.stats.skipped.add(1);
                return Outcome::Done;
            }
            None => (0, None),
            Some(FirstAttempt::Failed { handler, error }) => (1, Some((handler.to_owned(), error))),
            Some(FirstAttempt::Running { handler, handling }) => {
                match self.finish(handling).await {
                    Ok(_) => {
                        self.succeeded();
                        return Outcome::Done;
                    }
                    Err(error) => {
                        self.breaker.record(false);
                        (1, Some((handler.to_owned(), error)))
                    }
                }
            }
        };
        loop {
            if let Some((handler, error)) = failed.take() {
                if attempt >= self.retry.max_attempts {
                    return Outcome::Dead {
                        error: error.to_string(),
                        handler,
                        attempts: attempt,
                    };
                }
                self.stats.retried.add(1);
                tracing::warn!(event_id = %envelope.id, %handler, attempt, %error, "eventbus consumer: handler failed; retrying");
                let mut stop = stop.clone();
                tokio::select! {
                    () = tokio::time::sleep(self.retry.backoff.delay(attempt)) => {}
                    _ = stop.changed() => {}
                }
            }
            while let Some(wait) = self.breaker.open_for() {
                tokio::time::sleep(wait.min(Duration::from_millis(200))).await;
            }
            attempt += 1;
            match self.attempt(envelope).await {
                Ok(()) => {
                    self.succeeded();
                    return Outcome::Done;
                }
                Err(e) => {
                    self.breaker.record(false);
                    failed = Some(e);
                }
            }
        }
    }

    fn succeeded(&self) {
        self.breaker.record(true);
        self.stats.handled.add(1);
    }

    /// Awaits a handler: panics become errors, and an attempt past the policy's timeout fails.
    async fn finish<T>(
        &self,
        handling: BoxFuture<'_, Result<T, HandlerError>>,
    ) -> Result<T, HandlerError> {
        match self.retry.attempt_timeout {
            None => guarded(handling).await,
            Some(limit) => tokio::time::timeout(limit, guarded(handling))
                .await
                .unwrap_or_else(|_| {
                    Err(HandlerError::from(format!(
                        "the handler did not finish within {limit:?} (the retry policy's attempt timeout)"
                    )))
                }),
        }
    }

    /// The Testing mode: one attempt, failures recorded.
    pub(crate) async fn deliver_locally(&self, envelope: &Envelope, recorder: &Recorder) {
        if !self.wants(envelope) {
            return;
        }
        match self.attempt(envelope).await {
            Ok(()) => {
                self.stats.handled.add(1);
            }
            Err((handler, error)) => recorder.record_failure(HandlerFailure {
                event_id: envelope.id,
                event_type: envelope.event_type.clone(),
                handler,
                error: error.to_string(),
            }),
        }
    }
}

/// A consumer being built: `bus.consumer("group").subscribe::<Topic>().on::<Event, _>(handler)`.
pub struct Consumer<S: Service, T = ()> {
    bus: EventBus<S>,
    group: String,
    routes: Vec<Route>,
    plugins: Vec<Arc<dyn EventHandler>>,
    filter: EventFilter,
    retry: RetryPolicy,
    inbox: Option<Inbox>,
    concurrency: usize,
    breaker: (u32, Duration),
    dlq: Option<String>,
    _topic: PhantomData<fn() -> T>,
}

/// What `EventBus::subscribe` returns: a consumer of the service's own group, on topic `T`.
pub type Subscription<S, T> = Consumer<S, T>;

impl<S: Service> EventBus<S> {
    /// A consumer in group `group` (the Kafka consumer group; consumers sharing a group share the
    /// partitions).
    pub fn consumer(&self, group: &str) -> Consumer<S, ()> {
        Consumer {
            bus: self.clone(),
            group: group.to_owned(),
            routes: Vec::new(),
            plugins: Vec::new(),
            filter: EventFilter::new(),
            retry: RetryPolicy::default(),
            inbox: None,
            concurrency: 256,
            breaker: (u32::MAX, Duration::from_secs(30)),
            dlq: None,
            _topic: PhantomData,
        }
    }

    /// A consumer of topic `T` in the service's own group (`S::NAME`).
    pub fn subscribe<T: Topic>(&self) -> Consumer<S, T> {
        self.consumer(S::NAME).subscribe::<T>()
    }
}

impl<S: Service, T> Consumer<S, T> {
    /// Adds topic `T2`; the following `on` calls register handlers for it.
    pub fn subscribe<T2: Topic>(self) -> Consumer<S, T2> {
        Consumer {
            bus: self.bus,
            group: self.group,
            routes: self.routes,
            plugins: self.plugins,
            filter: self.filter,
            retry: self.retry,
            inbox: self.inbox,
            concurrency: self.concurrency,
            breaker: self.breaker,
            dlq: self.dlq,
            _topic: PhantomData,
        }
    }

    /// Only events `filter` lets through reach the handlers (others are skipped undecoded).
    pub fn filter(mut self, filter: EventFilter) -> Self {
        self.filter = filter;
        self
    }

    /// How failed handlers are retried (default: 5 attempts, 100 ms doubling to 10 s).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Records processed event ids in `inbox`, so a redelivered event has its effects once.
    pub fn inbox(mut self, inbox: Inbox) -> Self {
        self.inbox = Some(inbox);
        self
    }

    /// How many records may be in work at once (across keys; one at a time per key).
    pub fn concurrency(mut self, records: usize) -> Self {
        self.concurrency = records.max(1);
        self
    }

    /// Opens the circuit after `failures` consecutive failures, pausing consumption for
    /// `cooldown` (off by default).
    pub fn circuit_breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.breaker = (failures.max(1), cooldown);
        self
    }

    /// Sends dead records to this topic instead of `{topic}.dlq`.
    pub fn dead_letter_topic(mut self, topic: impl Into<String>) -> Self {
        self.dlq = Some(topic.into());
        self
    }

    /// Adds an object-safe handler; it sees the events of the subscribed topics its filter lets
    /// through.
    pub fn plugin(mut self, plugin: Arc<dyn EventHandler>) -> Self {
        self.plugins.push(plugin);
        self
    }

    fn engine(&mut self) -> Engine {
        let fast = self.plugins.is_empty() && self.inbox.is_none() && self.filter.headers_only();
        Engine {
            group: self.group.clone(),
            routes: std::mem::take(&mut self.routes),
            plugins: std::mem::take(&mut self.plugins),
            filter: self.filter.clone(),
            retry: self.retry,
            inbox: self.inbox.clone(),
            breaker: Breaker::new(self.breaker.0, self.breaker.1),
            stats: Arc::new(ConsumerStats::new(&self.group)),
            fast,
        }
    }

    /// Starts consuming: on Kafka in the Transactional and Direct modes, from the local dispatch
    /// in the Testing mode.
    pub async fn start(mut self) -> Result<ConsumerHandle, SubscribeError> {
        if self.routes.is_empty() && self.plugins.is_empty() {
            return Err(SubscribeError::NoHandlers { group: self.group });
        }
        if let Some(inbox) = &self.inbox {
            inbox.migrate().await.map_err(SubscribeError::Inbox)?;
        }
        let engine = Arc::new(self.engine());
        let (stop, stopped) = watch::channel(false);
        match self.bus.kafka() {
            None => {
                drop(stopped);
                let id = self.bus.register_local(Arc::clone(&engine));
                let bus = self.bus.clone();
                Ok(ConsumerHandle {
                    stop,
                    task: None,
                    unregister: Some(Box::new(move || bus.unregister_local(id))),
                    ready: None,
                    engine,
                })
            }
            Some(kafka) => {
                let topics = engine.topics();
                let (assigned, ready) = watch::channel(false);
                let run = KafkaRun::new(
                    &kafka,
                    &self.group,
                    &topics,
                    Arc::clone(&engine),
                    self.concurrency,
                    self.dlq.clone(),
                    assigned,
                )
                .map_err(|source| SubscribeError::Kafka {
                    group: self.group.clone(),
                    topics,
                    source,
                })?;
                let task = tokio::spawn(run.run(stopped));
                Ok(ConsumerHandle {
                    stop,
                    task: Some(task),
                    unregister: None,
                    ready: Some(ready),
                    engine,
                })
            }
        }
    }
}

impl<S: Service, T: Topic> Consumer<S, T> {
    /// Adds the route of `E` events on `T` to handler `H` (its name shows in logs and dead
    /// letters).
    fn route<E: Event, H>(mut self, call: ErasedTyped) -> Self {
        self.routes.push(Route {
            topic: T::NAME,
            event_type: E::EVENT_TYPE,
            name: std::any::type_name::<H>(),
            call,
        });
        self
    }

    /// Handles `E` events arriving on `T`. `E` must be routed to `T`: a handler for an event that
    /// never arrives there does not compile.
    pub fn on<E, H>(self, handler: H) -> Self
    where
        E: RoutedTo<T>,
        H: Handler<E>,
    {
        self.route::<E, H>(Arc::new(move |payload: &[u8], tx: Option<InboxTx>| {
            let event: E = serde_json::from_slice(payload)?;
            let fut = handler.handle(event);
            Ok(Box::pin(async move { fut.await.map(|()| tx) }) as HandlerFuture)
        }))
    }

    /// Handles `E` events inside the inbox transaction (requires [`Consumer::inbox`]): the
    /// handler's writes and the inbox row commit together, so effects happen exactly once.
    pub fn on_tx<E, H>(self, handler: H) -> Self
    where
        E: RoutedTo<T>,
        H: TxHandler<E>,
    {
        self.route::<E, H>(Arc::new(move |payload: &[u8], tx: Option<InboxTx>| {
            let event: E = serde_json::from_slice(payload)?;
            let Some(tx) = tx else {
                return Ok(Box::pin(std::future::ready(Err(HandlerError::from(
                    "`on_tx` needs an inbox: add `.inbox(Inbox::postgres(pool, \"eventbus_inbox\")?)` to the consumer",
                )))) as HandlerFuture);
            };
            let fut = handler.handle(event, tx);
            Ok(Box::pin(async move { fut.await.map(Some) }) as HandlerFuture)
        }))
    }
}

/// A running consumer.
pub struct ConsumerHandle {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Testing mode: removes the consumer from the bus's local dispatch at once.
    unregister: Option<Box<dyn FnOnce() + Send + Sync>>,
    /// Kafka: turns true once the group assigned partitions to this member.
    ready: Option<watch::Receiver<bool>>,
    /// Its handlers, retries and circuit.
    engine: Arc<Engine>,
}

/// A consumer's state, for a health check ([`ConsumerHandle::health`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerHealth {
    /// Its poll loop is running (it stops on `shutdown`, or if the consumer failed).
    pub running: bool,
    /// The group has assigned it partitions at least once (always true on a Testing bus).
    pub joined: bool,
    /// Its circuit breaker is open: consumption is paused for the cooldown.
    pub circuit_open: bool,
}

impl ConsumerHealth {
    /// Running, joined, and consuming.
    pub fn is_healthy(&self) -> bool {
        self.running && self.joined && !self.circuit_open
    }
}

impl std::fmt::Debug for ConsumerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerHandle")
            .field("stats", &self.engine.stats)
            .finish_non_exhaustive()
    }
}

/// What `EventBus::subscribe(..).start()` returns.
pub type SubscriptionHandle = ConsumerHandle;

impl ConsumerHandle {
    /// Whether the consumer is running, has joined its group, and its circuit is closed.
    pub fn health(&self) -> ConsumerHealth {
        ConsumerHealth {
            running: self.task.as_ref().is_none_or(|t| !t.is_finished()),
            joined: self.ready.as_ref().is_none_or(|r| *r.borrow()),
            circuit_open: self.engine.breaker.open_for().is_some(),
        }
    }

    /// The consumer's counters.
    pub fn stats(&self) -> Arc<ConsumerStats> {
        Arc::clone(&self.engine.stats)
    }

    /// Waits until the consumer group has assigned this member its partitions (at once in the
    /// Testing mode); `false` if that did not happen within `timeout`.
    pub async fn ready(&self, timeout: Duration) -> bool {
        match &self.ready {
            None => true,
            Some(ready) => {
                let mut ready = ready.clone();
                tokio::time::timeout(timeout, ready.wait_for(|r| *r))
                    .await
                    .is_ok_and(|r| r.is_ok())
            }
        }
    }

    /// Stops delivering (on Kafka the records in work finish in the background; use
    /// [`ConsumerHandle::shutdown`] to wait for them).
    pub fn unsubscribe(mut self) {
        if let Some(unregister) = self.unregister.take() {
            unregister();
        }
        let _ = self.stop.send(true);
    }

    /// Stops: no new record is taken, the records in work finish, offsets are committed.
    pub async fn shutdown(mut self) {
        if let Some(unregister) = self.unregister.take() {
            unregister();
        }
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Kills the consumer at once, as a crash would (tests use this): records in work are
    /// re-delivered to whoever consumes their partitions next.
    pub fn abort(mut self) {
        if let Some(unregister) = self.unregister.take() {
            unregister();
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Per-partition offset bookkeeping: the offset to commit is the lowest one still in work, or
/// the one after the highest seen.
#[derive(Default)]
struct Offsets {
    partitions: Mutex<HashMap<TopicPartition, PartitionOffsets, FastHash>>,
}

/// A partition of a subscribed topic. Hashed on the partition and the name's length only: cheap on
/// the record path, and names of one length are few.
#[derive(Clone, Copy, PartialEq, Eq)]
struct TopicPartition(&'static str, i32);

impl std::hash::Hash for TopicPartition {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(((self.0.len() as u64) << 32) | u64::from(self.1 as u32));
    }
}

/// A small multiply-rotate hasher for the consumer's per-record maps (partitions, key queues):
/// their keys are not chosen by an attacker (key hashes, topic names we subscribed to), and SipHash
/// showed in the record path's profile.
#[derive(Default)]
struct MixHasher(u64);

impl std::hash::Hasher for MixHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_i32(&mut self, n: i32) {
        self.write_u64(u64::from(n as u32));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FastHash = std::hash::BuildHasherDefault<MixHasher>;

#[derive(Default)]
struct PartitionOffsets {
    in_work: BTreeSet<i64>,
    next: i64,
    /// A record finished since the offset was last stored.
    dirty: bool,
}

impl Offsets {
    fn begin(&self, topic: &'static str, partition: i32, offset: i64) {
        let mut p = lock(&self.partitions);
        let state = p.entry(TopicPartition(topic, partition)).or_default();
        state.in_work.insert(offset);
        state.next = state.next.max(offset + 1);
    }

    /// A record handled at once (never in work): the partition's next offset moves past it.
    fn advance(&self, topic: &'static str, partition: i32, offset: i64) {
        let mut p = lock(&self.partitions);
        let state = p.entry(TopicPartition(topic, partition)).or_default();
        state.next = state.next.max(offset + 1);
        state.dirty = true;
    }

    /// Marks `offset` done.
    fn finish(&self, topic: &'static str, partition: i32, offset: i64) {
        let mut p = lock(&self.partitions);
        if let Some(state) = p.get_mut(&TopicPartition(topic, partition)) {
            state.in_work.remove(&offset);
            state.dirty = true;
        }
    }

    /// The offsets now safe to commit, of the partitions that moved since the last call: for
    /// each, the lowest offset still in work, or the one after the highest seen.
    fn take_committable(&self) -> Option<TopicPartitionList> {
        let mut p = lock(&self.partitions);
        let mut tpl = TopicPartitionList::new();
        for (TopicPartition(topic, partition), state) in p.iter_mut().filter(|(_, s)| s.dirty) {
            state.dirty = false;
            let next = state.in_work.first().copied().unwrap_or(state.next);
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(next));
        }
        (tpl.count() > 0).then_some(tpl)
    }

    fn busy(&self, partitions: &TopicPartitionList) -> bool {
        let p = lock(&self.partitions);
        partitions.elements().iter().any(|e| {
            p.iter()
                .find(|(TopicPartition(t, part), _)| *t == e.topic() && *part == e.partition())
                .map(|(_, s)| s)
                .is_some_and(|s| !s.in_work.is_empty())
        })
    }

    fn forget(&self, partitions: &TopicPartitionList) {
        let mut p = lock(&self.partitions);
        for e in partitions.elements() {
            p.retain(|TopicPartition(t, part), _| !(*t == e.topic() && *part == e.partition()));
        }
    }

    fn idle(&self) -> bool {
        lock(&self.partitions)
            .values()
            .all(|s| s.in_work.is_empty())
    }
}

/// The rebalance hooks: before partitions are revoked, let their records in work finish (up to a
/// bound) and commit, so the next owner starts where this one stopped.
struct RebalanceContext {
    offsets: Arc<Offsets>,
    assigned: watch::Sender<bool>,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance
            && partitions.count() > 0
        {
            let _ = self.assigned.send(true);
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.offsets.busy(partitions) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if let Some(tpl) = self.offsets.take_committable() {
                let _ = consumer.store_offsets(&tpl);
            }
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(error = %e, "eventbus consumer: nothing to commit on revoke");
            }
            self.offsets.forget(partitions);
        }
    }
}

struct Job {
    record: Result<Envelope, BadRecord>,
    topic: &'static str,
    partition: i32,
    offset: i64,
}

/// What the fast path did with a record.
enum Inline {
    /// Handled (or skipped) at once.
    Done,
    /// It goes to its key's queue, as an envelope, with the attempt made so far.
    Queue(Option<FirstAttempt>),
}

/// Record headers, owned.
type RawHeaders = Vec<(String, Vec<u8>)>;

/// A record that is not a CloudEvents record of ours: kept whole for the dead-letter topic.
struct BadRecord {
    error: String,
    headers: RawHeaders,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// The CloudEvents attributes of a record, as raw header values.
#[derive(Default)]
struct RawAttributes<'a> {
    spec_version: Option<&'a [u8]>,
    id: Option<&'a [u8]>,
    source: Option<&'a [u8]>,
    event_type: Option<&'a [u8]>,
    time: Option<&'a [u8]>,
    category: Option<&'a [u8]>,
    schema_version: Option<&'a [u8]>,
    tenant_id: Option<&'a [u8]>,
    correlation_id: Option<&'a [u8]>,
    tags: Option<&'a [u8]>,
    /// How many of the seven required attributes were seen.
    required: u8,
}

impl<'a> RawAttributes<'a> {
    /// Takes one header; true once every required attribute is in.
    fn set(&mut self, name: &str, value: &'a [u8]) -> bool {
        use crate::envelope::headers as h;
        let (slot, required) = match name {
            h::SPEC_VERSION => (&mut self.spec_version, true),
            h::ID => (&mut self.id, true),
            h::SOURCE => (&mut self.source, true),
            h::TYPE => (&mut self.event_type, true),
            h::TIME => (&mut self.time, true),
            h::CATEGORY => (&mut self.category, true),
            h::SCHEMA_VERSION => (&mut self.schema_version, true),
            h::TENANT_ID => (&mut self.tenant_id, false),
            h::CORRELATION_ID => (&mut self.correlation_id, false),
            h::TAGS => (&mut self.tags, false),
            _ => return self.required == 7,
        };
        if slot.replace(value).is_none() && required {
            self.required += 1;
        }
        self.required == 7
    }

    /// Every attribute the envelope decoder requires is there, in the version it reads.
    fn complete(&self) -> bool {
        self.required == 7 && self.spec_version == Some(SPEC_VERSION.as_bytes())
    }

    fn get(&self, name: &str) -> Option<&'a [u8]> {
        use crate::envelope::headers as h;
        match name {
            h::TYPE => self.event_type,
            h::SOURCE => self.source,
            h::CATEGORY => self.category,
            h::TENANT_ID => self.tenant_id,
            h::CORRELATION_ID => self.correlation_id,
            h::TAGS => self.tags,
            h::ID => self.id,
            h::TIME => self.time,
            h::SCHEMA_VERSION => self.schema_version,
            h::SPEC_VERSION => self.spec_version,
            _ => None,
        }
    }
}

/// A record as an envelope, or kept whole when it is not one of ours.
fn record_of(message: &BorrowedMessage<'_>) -> Result<Envelope, BadRecord> {
    let payload = message.payload().unwrap_or_default();
    match message.headers() {
        Some(h) => Envelope::from_record(
            message.topic(),
            message.key(),
            h.iter().map(|h| (h.key, h.value.unwrap_or_default())),
            payload,
        ),
        None => Envelope::from_record(message.topic(), message.key(), [], payload),
    }
    .map_err(|e| BadRecord {
        error: e.to_string(),
        headers: message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default(),
        key: message.key().map(<[u8]>::to_vec),
        payload: payload.to_vec(),
    })
}

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A key's queue: the topic's index among the subscribed ones, the partition, the key's hash.
/// Keys are hashed: two keys sharing a hash share a queue, which only costs parallelism.
type QueueId = (u32, i32, u64);

/// The records of one key waiting for its worker.
#[derive(Default)]
struct KeyQueue {
    /// Each with the fast path's attempt, when it made one.
    jobs: VecDeque<(Job, Option<FirstAttempt>)>,
    /// A worker is draining this queue.
    running: bool,
}

struct KafkaRun {
    consumer: Arc<StreamConsumer<RebalanceContext>>,
    producer: FutureProducer,
    engine: Arc<Engine>,
    offsets: Arc<Offsets>,
    permits: Arc<Semaphore>,
    queues: Mutex<HashMap<QueueId, KeyQueue, FastHash>>,
    /// How many key queues exist: 0 lets the fast path skip the lock (only the run loop adds
    /// queues, so none can appear behind its back).
    queued: AtomicUsize,
    dlq: Option<String>,
    /// The subscribed topics' names, so records refer to them without allocating.
    topics: Vec<&'static str>,
}

impl KafkaRun {
    fn new(
        kafka: &KafkaConfig,
        group: &str,
        topics: &[&'static str],
        engine: Arc<Engine>,
        concurrency: usize,
        dlq: Option<String>,
        assigned: watch::Sender<bool>,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let offsets = Arc::new(Offsets::default());
        let mut config = rdkafka::ClientConfig::new();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "true")
            // Topics appear when their first event is published: notice them within seconds,
            // not librdkafka's default five minutes.
            .set("topic.metadata.refresh.interval.ms", "2000")
            // When the prefetch queue is full (a consumer slower than the fetcher, the normal case
            // for handlers doing work), librdkafka's default postpones the next fetch by a whole
            // second, and the consumer idles once it has drained the queue: re-check after 1 ms.
            // No request is sent while the queue stays full, so this costs no broker traffic.
            .set("fetch.queue.backoff.ms", "1");
        let client = kafka.client_config();
        // The classic group protocol: a member that dies hands its partitions over within 6 s.
        // With `group.protocol=consumer` (KIP-848) the broker owns these timings.
        if client.get("group.protocol") != Some("consumer") {
            config
                .set("session.timeout.ms", "6000")
                .set("heartbeat.interval.ms", "500");
        }
        for (k, v) in client.config_map() {
            config.set(k, v);
        }
        let consumer: StreamConsumer<RebalanceContext> =
            config.create_with_context(RebalanceContext {
                offsets: Arc::clone(&offsets),
                assigned,
            })?;
        let producer = crate::kafka::producer(kafka).map_err(|e| match e {
            crate::StartError::Kafka { source, .. } => source,
            other => rdkafka::error::KafkaError::ClientCreation(other.to_string()),
        })?;
        // Ask for each topic once, as a producer: where topics are created on first use, this
        // creates it, so the group's first assignment covers every topic (no rebalance later).
        for topic in topics {
            let _ = producer
                .client()
                .fetch_metadata(Some(topic), Duration::from_secs(5));
        }
        consumer.subscribe(topics)?;
        Ok(KafkaRun {
            consumer: Arc::new(consumer),
            producer,
            engine,
            offsets,
            permits: Arc::new(Semaphore::new(concurrency)),
            queues: Mutex::default(),
            queued: AtomicUsize::new(0),
            dlq,
            topics: topics.to_vec(),
        })
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        // One stream for the whole run (`recv` would register a waker slot per record).
        let mut records = this.consumer.stream();
        let mut paused = false;
        // Workers live in this set: if this task is aborted (a crash), they die with it.
        let mut workers = tokio::task::JoinSet::new();
        // Offsets are stored in bulk every 20 ms, off the record path (auto-commit sends them).
        let flusher = Arc::clone(&this);
        workers.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tick.tick().await;
                if let Some(tpl) = flusher.offsets.take_committable() {
                    let _ = flusher.consumer.store_offsets(&tpl);
                }
            }
        });
        let mut received = 0u32;
        loop {
            received = received.wrapping_add(1);
            if received.is_multiple_of(1024) {
                // Records that are ready and handled at once never make this task wait: give the
                // runtime's other tasks a turn (on a current-thread runtime they would starve).
                // Every 1,024 records (about a millisecond): each yield can wake another worker.
                tokio::task::yield_now().await;
                while workers.try_join_next().is_some() {}
                // Also seen by the `select!` below; checked here too in case records keep it busy.
                if *stop.borrow() {
                    break;
                }
            }
            // The circuit breaker pauses every assigned partition while open.
            match (this.engine.breaker.open_for(), paused) {
                (Some(_), false) => {
                    if let Ok(assigned) = this.consumer.assignment() {
                        let _ = this.consumer.pause(&assigned);
                        paused = true;
                    }
                }
                (None, true) => {
                    if let Ok(assigned) = this.consumer.assignment() {
                        let _ = this.consumer.resume(&assigned);
                    }
                    paused = false;
                }
                _ => {}
            }
            // A record ready now is taken without the `select!` (which would register with the
            // stop channel each time); only an empty queue waits on both.
            let ready =
                std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut records).poll_next(cx))).await;
            let message = match ready {
                Poll::Ready(message) => message,
                Poll::Pending => {
                    let next = std::future::poll_fn(|cx| Pin::new(&mut records).poll_next(cx));
                    if paused {
                        tokio::select! {
                            m = next => m,
                            _ = stop.changed() => break,
                            () = tokio::time::sleep(Duration::from_millis(200)) => continue,
                        }
                    } else {
                        tokio::select! {
                            m = next => m,
                            _ = stop.changed() => break,
                        }
                    }
                }
            };
            // The stream of a subscribed consumer does not end; if it did, so would this loop.
            let Some(message) = message else {
                break;
            };
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "eventbus consumer: receive error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // One topic (the usual case): every record is of it, no name to compare.
            let topic_index = match this.topics.len() {
                1 => Some(0),
                _ => this.topics.iter().position(|t| *t == message.topic()),
            };
            let Some(topic_index) = topic_index else {
                tracing::warn!(
                    topic = message.topic(),
                    "eventbus consumer: a record of a topic not subscribed; skipped"
                );
                continue;
            };
            let topic = this.topics[topic_index];
            let (partition, offset) = (message.partition(), message.offset());
            // One queue per key (per partition): in order within a key, in parallel across keys.
            // A record without a key has no order to keep: a queue of its own.
            let key_hash = message.key().map_or(offset as u64 ^ (1 << 63), fnv1a);
            let queue_id = (topic_index as u32, partition, key_hash);
            let first = match this.inline(&message, topic, queue_id) {
                Inline::Done => {
                    this.offsets.advance(topic, partition, offset);
                    continue;
                }
                Inline::Queue(first) => first,
            };
            let job = Job {
                record: record_of(&message),
                topic,
                partition,
                offset,
            };
            drop(message);
            this.offsets.begin(topic, partition, offset);
            // The worker gives the permit back when the record is done.
            let Ok(permit) = this.permits.acquire().await else {
                break;
            };
            permit.forget();
            // A key has at most one worker: it drains the key's queue, in order, then leaves.
            let start_worker = {
                let mut queues = lock(&this.queues);
                let queue = queues.entry(queue_id).or_insert_with(|| {
                    this.queued.fetch_add(1, Ordering::Release);
                    KeyQueue::default()
                });
                queue.jobs.push_back((job, first));
                !std::mem::replace(&mut queue.running, true)
            };
            if start_worker {
                // Poll the worker once here; one that waits (I/O, a retry) continues as a task,
                // polled anew by tokio.
                let mut work = Box::pin(Arc::clone(&this).work(queue_id, stop.clone()));
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                if work.as_mut().poll(&mut cx).is_pending() {
                    workers.spawn(work);
                }
            }
        }
        // Shutdown: let the records in work finish (bounded), then commit.
        let deadline = Instant::now() + Duration::from_secs(15);
        while !this.offsets.idle() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        workers.abort_all();
        if let Some(tpl) = this.offsets.take_committable() {
            let _ = this.consumer.store_offsets(&tpl);
        }
        let _ = this.consumer.commit_consumer_state(CommitMode::Sync);
        this.consumer.unsubscribe();
    }

    /// The fast path: a record of a key with nothing queued, for an engine that needs no
    /// envelope, is routed on its raw `ce_type` header, decoded straight from the record and
    /// handled here. Anything else (or a handler that fails or waits) goes to the key's queue.
    fn inline(&self, message: &BorrowedMessage<'_>, topic: &'static str, queue: QueueId) -> Inline {
        let engine = &*self.engine;
        let slow = Inline::Queue(None);
        if !engine.fast || engine.breaker.open_for().is_some() {
            return slow;
        }
        if self.queued.load(Ordering::Acquire) > 0 && lock(&self.queues).contains_key(&queue) {
            return slow;
        }
        if message
            .key()
            .is_some_and(|k| std::str::from_utf8(k).is_err())
        {
            return slow;
        }
        let Some(headers) = message.headers() else {
            return slow;
        };
        // One pass over the headers; without a filter, it stops once the required ones are in.
        let mut attrs = RawAttributes::default();
        let whole = !engine.filter.is_empty();
        for header in headers.iter() {
            if attrs.set(header.key, header.value.unwrap_or_default()) && !whole {
                break;
            }
        }
        // A record the envelope decoder would reject goes the slow way, to be named in the
        // dead-letter topic.
        let Some(event_type) = attrs.event_type.filter(|_| attrs.complete()) else {
            return slow;
        };
        let get = |name: &str| attrs.get(name);
        let mut routes = engine
            .routes
            .iter()
            .filter(|r| r.topic == topic && r.event_type.as_bytes() == event_type);
        let route = match routes.next() {
            Some(route) if engine.filter.matches_headers(get) => route,
            // Nobody handles it, or the filter keeps it out: skipped, never decoded.
            _ => {
                engine.stats.skipped.add(1);
                return Inline::Done;
            }
        };
        if routes.next().is_some() {
            return slow;
        }
        let mut handling = match start_route(route, message.payload().unwrap_or_default(), None) {
            Ok(Ok(handling)) => handling,
            // A payload that does not decode fails on the slow path, where the error names the
            // event.
            Ok(Err(_)) => return slow,
            Err(error) => {
                engine.breaker.record(false);
                return Inline::Queue(Some(FirstAttempt::Failed {
                    handler: route.name,
                    error,
                }));
            }
        };
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match poll_guarded(&mut handling, &mut cx) {
            Poll::Ready(Ok(_)) => {
                engine.succeeded();
                Inline::Done
            }
            Poll::Ready(Err(error)) => {
                engine.breaker.record(false);
                Inline::Queue(Some(FirstAttempt::Failed {
                    handler: route.name,
                    error,
                }))
            }
            Poll::Pending => Inline::Queue(Some(FirstAttempt::Running {
                handler: route.name,
                handling,
            })),
        }
    }

    /// Works through one key's queue until it is empty.
    async fn work(self: Arc<Self>, queue_id: QueueId, stop: watch::Receiver<bool>) {
        loop {
            let (job, first) = {
                let mut queues = lock(&self.queues);
                match queues.get_mut(&queue_id).and_then(|q| q.jobs.pop_front()) {
                    Some(job) => job,
                    None => {
                        // Empty under the lock: the next record of this key starts a new worker.
                        queues.remove(&queue_id);
                        self.queued.fetch_sub(1, Ordering::Release);
                        return;
                    }
                }
            };
            let outcome = match &job.record {
                Ok(envelope) => self.engine.process(envelope, &stop, first).await,
                Err(bad) => Outcome::Dead {
                    error: format!("not an eventbus record: {}", bad.error),
                    handler: "decoder".into(),
                    attempts: 1,
                },
            };
            if let Outcome::Dead {
                error,
                handler,
                attempts,
            } = outcome
            {
                Box::pin(self.dead_letter(&job, &error, &handler, attempts)).await;
            }
            // Stored in bulk by the run loop.
            self.offsets.finish(job.topic, job.partition, job.offset);
            self.permits.add_permits(1);
        }
    }

    /// Publishes a record that exhausted its attempts to the dead-letter topic, with where it came
    /// from and why; retries that publish until it succeeds (the offset waits for it).
    async fn dead_letter(&self, job: &Job, error: &str, handler: &str, attempts: u32) {
        let topic = self
            .dlq
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", job.topic));
        let partition = job.partition.to_string();
        let offset = job.offset.to_string();
        let attempts = attempts.to_string();
        let (original, key, payload): (RawHeaders, Option<&[u8]>, &[u8]) = match &job.record {
            Ok(e) => (
                e.headers()
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.into_bytes()))
                    .collect(),
                e.key.as_deref().map(str::as_bytes),
                e.payload.as_slice(),
            ),
            Err(bad) => (
                bad.headers.clone(),
                bad.key.as_deref(),
                bad.payload.as_slice(),
            ),
        };
        let mut delay = Duration::from_millis(100);
        loop {
            let mut headers = rdkafka::message::OwnedHeaders::new();
            for (k, v) in &original {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_slice()),
                });
            }
            for (key, value) in [
                (dlq::ORIGINAL_TOPIC, job.topic),
                (dlq::ORIGINAL_PARTITION, partition.as_str()),
                (dlq::ORIGINAL_OFFSET, offset.as_str()),
                (dlq::ERROR, error),
                (dlq::ATTEMPTS, attempts.as_str()),
                (dlq::HANDLER, handler),
                (dlq::GROUP, self.engine.group.as_str()),
            ] {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                });
            }
            let mut record = FutureRecord::to(&topic).payload(payload).headers(headers);
            if let Some(k) = key {
                record = record.key(k);
            }
            match self.producer.send(record, Duration::from_secs(5)).await {
                Ok(_) => {
                    self.engine.stats.dead_lettered.add(1);
                    tracing::error!(topic = %job.topic, partition = job.partition, offset = job.offset, %handler, %error, dlq = %topic,
                        "eventbus consumer: record sent to the dead-letter topic");
                    return;
                }
                Err((e, _)) => {
                    tracing::error!(error = %e, dlq = %topic, "eventbus consumer: cannot publish to the dead-letter topic; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// Dead-letter topics: the headers a dead record carries, and replay.
pub mod dlq {
    use std::time::Duration;

    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{Offset, TopicPartitionList};

    use crate::config::KafkaConfig;
    use crate::envelope::Envelope;
    use crate::filter::EventFilter;

    /// The topic the record came from.
    pub const ORIGINAL_TOPIC: &str = "eventbus_dlq_topic";
    /// Its partition.
    pub const ORIGINAL_PARTITION: &str = "eventbus_dlq_partition";
    /// Its offset.
    pub const ORIGINAL_OFFSET: &str = "eventbus_dlq_offset";
    /// The last error.
    pub const ERROR: &str = "eventbus_dlq_error";
    /// Attempts made.
    pub const ATTEMPTS: &str = "eventbus_dlq_attempts";
    /// The handler that failed.
    pub const HANDLER: &str = "eventbus_dlq_handler";
    /// The consumer group.
    pub const GROUP: &str = "eventbus_dlq_group";

    /// Which dead records to replay.
    #[derive(Debug, Clone)]
    pub enum Which {
        /// All of them.
        All,
        /// These event ids (`ce_id`).
        Events(Vec<uuid::Uuid>),
        /// Those the filter lets through.
        Filter(EventFilter),
    }

    /// Why a replay failed.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot replay `{dlq_topic}`: {source}")]
    pub struct ReplayError {
        dlq_topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    }

    /// Reads `dlq_topic` from its start to its current end and publishes the chosen records back
    /// to their original topics (without the DLQ headers); returns how many. The DLQ keeps its
    /// records: replaying twice delivers twice (a consumer with an inbox ignores the second).
    pub async fn replay(
        kafka: &KafkaConfig,
        dlq_topic: &str,
        which: Which,
    ) -> Result<u64, ReplayError> {
        let err = |source| ReplayError {
            dlq_topic: dlq_topic.to_owned(),
            source,
        };
        let mut config = rdkafka::ClientConfig::new();
        config
            .set("group.id", "eventbus-dlq-replay")
            .set("enable.auto.commit", "false");
        for (k, v) in kafka.client_config().config_map() {
            config.set(k, v);
        }
        let consumer: BaseConsumer = config.create().map_err(err)?;
        let metadata = consumer
            .fetch_metadata(Some(dlq_topic), Duration::from_secs(10))
            .map_err(err)?;
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len() as i32);
        let mut tpl = TopicPartitionList::new();
        let mut ends = Vec::new();
        for p in 0..partitions {
            let (low, high) = consumer
                .fetch_watermarks(dlq_topic, p, Duration::from_secs(10))
                .map_err(err)?;
            if high > low {
                tpl.add_partition_offset(dlq_topic, p, Offset::Offset(low))
                    .map_err(err)?;
                ends.push((p, high));
            }
        }
        if ends.is_empty() {
            return Ok(0);
        }
        consumer.assign(&tpl).map_err(err)?;
        let producer: FutureProducer = crate::kafka::producer(kafka)
            .map_err(|e| err(rdkafka::error::KafkaError::ClientCreation(e.to_string())))?;
        let mut remaining = ends.clone();
        let mut replayed = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !remaining.is_empty() && std::time::Instant::now() < deadline {
            let Some(message) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = message.map_err(err)?;
            remaining
                .retain(|(p, high)| !(*p == message.partition() && message.offset() + 1 >= *high));
            let headers: Vec<(String, Vec<u8>)> = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            let original = headers
                .iter()
                .find(|(k, _)| k == ORIGINAL_TOPIC)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
            let Some(original) = original else { continue };
            let wanted = match &which {
                Which::All => true,
                Which::Events(ids) => headers
                    .iter()
                    .find(|(k, _)| k == crate::headers::ID)
                    .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<uuid::Uuid>().ok())
                    .is_some_and(|id| ids.contains(&id)),
                Which::Filter(filter) => Envelope::from_record(
                    &original,
                    message.key(),
                    headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
                    message.payload().unwrap_or_default(),
                )
                .is_ok_and(|e| filter.matches(&e)),
            };
            if !wanted {
                continue;
            }
            let mut out = OwnedHeaders::new();
            for (k, v) in headers
                .iter()
                .filter(|(k, _)| !k.starts_with("eventbus_dlq_"))
            {
                out = out.insert(Header {
                    key: k,
                    value: Some(v.as_slice()),
                });
            }
            let mut record = FutureRecord::to(&original)
                .payload(message.payload().unwrap_or_default())
                .headers(out);
            if let Some(k) = message.key() {
                record = record.key(k);
            }
            producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| err(e))?;
            replayed += 1;
        }
        Ok(replayed)
    }
}
