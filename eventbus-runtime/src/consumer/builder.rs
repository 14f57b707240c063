//! [`Consumer`]: a consumer being built, `bus.consumer("group").subscribe::<T>().on::<E, _>(h)`,
//! and started on the bus's transport.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::breaker::Breaker;
use super::engine::{Engine, ErasedTyped, HandlerFuture, Route, Tx};
use super::handle::{ConsumerHandle, ConsumerStats};
use super::handler::{Handler, Plugin};
use super::retry::RetryPolicy;
use crate::bus::{EventBus, Transport};
use crate::dlq::{DeadLetterHook, DeadLettered};
use crate::error::{HandlerError, SubscribeError};
use crate::event::{Event, RoutedTo, Service, Topic};
use crate::filter::EventFilter;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
use crate::inbox::Inbox;

/// A consumer being built: `bus.consumer("group").subscribe::<Topic>().on::<Event, _>(handler)`.
pub struct Consumer<S: Service, T = ()> {
    transport: Transport,
    group: String,
    routes: Vec<Route>,
    plugins: Vec<Arc<dyn Plugin>>,
    filter: EventFilter,
    retry: RetryPolicy,
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    inbox: Option<Inbox>,
    concurrency: usize,
    breaker: (u32, Duration),
    dead_letter_topic: Option<String>,
    on_dead_letter: Option<DeadLetterHook>,
    _types: PhantomData<fn() -> (S, T)>,
}

impl<S: Service> EventBus<S> {
    /// A consumer in group `group` (the Kafka consumer group; consumers sharing a group share the
    /// partitions).
    pub fn consumer(&self, group: &str) -> Consumer<S, ()> {
        Consumer {
            transport: self.transport(),
            group: group.to_owned(),
            routes: Vec::new(),
            plugins: Vec::new(),
            filter: EventFilter::new(),
            retry: RetryPolicy::default(),
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            inbox: None,
            concurrency: 256,
            breaker: (u32::MAX, Duration::from_secs(30)),
            dead_letter_topic: None,
            on_dead_letter: None,
            _types: PhantomData,
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
            transport: self.transport,
            group: self.group,
            routes: self.routes,
            plugins: self.plugins,
            filter: self.filter,
            retry: self.retry,
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            inbox: self.inbox,
            concurrency: self.concurrency,
            breaker: self.breaker,
            dead_letter_topic: self.dead_letter_topic,
            on_dead_letter: self.on_dead_letter,
            _types: PhantomData,
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
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
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
        self.dead_letter_topic = Some(topic.into());
        self
    }

    /// Calls `hook` once for each record this consumer dead-letters (with the [`DeadLettered`]
    /// notification it then publishes to `system.eventbus.dead_lettered`): alerting in process.
    /// Keep it quick: the record's key waits for it. On a Testing bus, each failed delivery.
    pub fn on_dead_letter(mut self, hook: impl Fn(&DeadLettered) + Send + Sync + 'static) -> Self {
        self.on_dead_letter = Some(Arc::new(hook));
        self
    }

    /// Adds an object-safe handler; it sees the events of the subscribed topics its filter lets
    /// through.
    pub fn plugin(mut self, plugin: Arc<dyn Plugin>) -> Self {
        self.plugins.push(plugin);
        self
    }

    fn engine(&mut self) -> Engine {
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        let no_inbox = self.inbox.is_none();
        #[cfg(not(any(feature = "postgres", feature = "sqlite")))]
        let no_inbox = true;
        let fast = self.plugins.is_empty() && no_inbox && self.filter.headers_only();
        Engine {
            group: self.group.clone(),
            routes: std::mem::take(&mut self.routes),
            plugins: std::mem::take(&mut self.plugins),
            filter: self.filter.clone(),
            retry: self.retry,
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            inbox: self.inbox.clone(),
            breaker: Breaker::new(self.breaker.0, self.breaker.1),
            stats: Arc::new(ConsumerStats::new(&self.group)),
            service: S::NAME,
            on_dead_letter: self.on_dead_letter.clone(),
            fast,
        }
    }

    /// Two Rust types handled as one event type and version on one topic: a record could be
    /// decoded as either, so the consumer refuses to start. (Two derives claiming one event type
    /// in one crate are a compile error; across crates, only here can it be seen.)
    fn two_types_for_one_event(&self) -> Option<SubscribeError> {
        self.routes.iter().enumerate().find_map(|(i, a)| {
            self.routes[..i]
                .iter()
                .find(|b| {
                    (b.topic, b.event_type, b.version) == (a.topic, a.event_type, a.version)
                        && b.event.0 != a.event.0
                })
                .map(|b| SubscribeError::TwoTypesForOneEvent {
                    group: self.group.clone(),
                    topic: a.topic,
                    event_type: a.event_type,
                    version: a.version,
                    first: b.event.1,
                    second: a.event.1,
                })
        })
    }

    /// Starts consuming: on Kafka in the Transactional and Direct modes, from the in-memory
    /// transport in the Testing mode.
    pub async fn start(mut self) -> Result<ConsumerHandle, SubscribeError> {
        if self.routes.is_empty() && self.plugins.is_empty() {
            return Err(SubscribeError::NoHandlers { group: self.group });
        }
        if let Some(e) = self.two_types_for_one_event() {
            return Err(e);
        }
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        if let Some(inbox) = &self.inbox {
            inbox.migrate().await.map_err(SubscribeError::Inbox)?;
        }
        let engine = Arc::new(self.engine());
        let (stop, stopped) = watch::channel(false);
        match self.transport {
            Transport::Memory(memory) => {
                drop(stopped);
                let id = memory.subscribe(Arc::clone(&engine) as _);
                Ok(ConsumerHandle {
                    stop,
                    task: None,
                    local: Some((memory, id)),
                    ready: None,
                    engine,
                })
            }
            #[cfg(feature = "kafka")]
            Transport::Kafka(kafka) => {
                let (task, ready) = super::kafka::start(
                    &kafka,
                    &self.group,
                    engine.clone(),
                    self.concurrency,
                    self.dead_letter_topic.clone(),
                    stopped,
                )?;
                Ok(ConsumerHandle {
                    stop,
                    task: Some(task),
                    local: None,
                    ready: Some(ready),
                    engine,
                })
            }
            Transport::Unavailable(mode) => Err(SubscribeError::NoTransport {
                group: self.group,
                mode,
            }),
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
            version: E::VERSION,
            category: E::category(),
            name: std::any::type_name::<H>(),
            event: (std::any::TypeId::of::<E>(), std::any::type_name::<E>()),
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
        self.route::<E, H>(Arc::new(move |payload: &[u8], tx: Option<Tx>| {
            let event: E = serde_json::from_slice(payload)?;
            let fut = handler.handle(event);
            Ok(Box::pin(async move { fut.await.map(|()| tx) }) as HandlerFuture)
        }))
    }

    /// Handles `E` events inside the inbox transaction (requires [`Consumer::inbox`]): the
    /// handler's writes and the inbox row commit together, so effects happen exactly once.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub fn on_tx<E, H>(self, handler: H) -> Self
    where
        E: RoutedTo<T>,
        H: super::handler::TxHandler<E>,
    {
        self.route::<E, H>(Arc::new(move |payload: &[u8], tx: Option<Tx>| {
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
