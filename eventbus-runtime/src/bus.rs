//! [`EventBus`]: the typed front door, bound to one service, over one of three modes.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use crate::envelope::{Envelope, EventContext};
use crate::error::{HandlerError, PublishError};
use crate::event::{
    AcceptsAudit, AcceptsDomain, AcceptsIntegration, AcceptsNotification, AcceptsSystem, Event,
    OwnedBy, RoutedTo, Service, Topic,
};
use crate::publisher::{BoxFuture, EventPublisher};
use crate::testing::{HandlerFailure, Recorder};

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
    handlers: RwLock<Vec<Arc<LocalHandler>>>,
    next_id: AtomicU64,
}

enum Backend {
    Testing(Recorder),
}

/// A handler with its event type erased: decodes the envelope, then runs the typed handler.
type ErasedHandler =
    Box<dyn Fn(&Envelope) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync>;

/// A handler registered for local dispatch, with its event type erased.
struct LocalHandler {
    id: u64,
    topic: &'static str,
    event_type: &'static str,
    name: &'static str,
    call: ErasedHandler,
}

impl<S: Service> EventBus<S> {
    /// A bus in the Testing mode: events are recorded in memory ([`EventBus::recorded`]) and
    /// dispatched to this bus's subscriptions; nothing leaves the process.
    pub fn testing(service: S) -> Self {
        let _ = service;
        EventBus {
            core: Arc::new(Core {
                backend: Backend::Testing(Recorder::default()),
                handlers: RwLock::new(Vec::new()),
                next_id: AtomicU64::new(1),
            }),
            context: EventContext::default(),
            _service: PhantomData,
        }
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
        }
    }

    /// What a Testing bus recorded.
    ///
    /// # Panics
    /// When the bus is not in the Testing mode: recording is a testing facility.
    pub fn recorded(&self) -> &Recorder {
        match &self.core.backend {
            Backend::Testing(recorder) => recorder,
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

    /// Starts a subscription to topic `T`; add handlers with [`Subscription::on`].
    pub fn subscribe<T: Topic>(&self) -> Subscription<S, T> {
        Subscription {
            bus: self.clone(),
            handlers: Vec::new(),
            _topic: PhantomData,
        }
    }

    /// Sends an envelope through the bus's mode.
    async fn send(&self, envelope: Envelope) -> Result<Receipt, PublishError> {
        match &self.core.backend {
            Backend::Testing(recorder) => {
                let receipt = Receipt::recorded(&envelope);
                recorder.record(envelope.clone());
                self.dispatch_locally(&envelope, recorder).await;
                Ok(receipt)
            }
        }
    }

    /// Runs the local handlers for `envelope`; failures are recorded, not returned: a publisher
    /// does not see its consumers' errors.
    async fn dispatch_locally(&self, envelope: &Envelope, recorder: &Recorder) {
        let matching: Vec<Arc<LocalHandler>> = self
            .core
            .handlers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|h| h.topic == envelope.topic && h.event_type == envelope.event_type)
            .cloned()
            .collect();
        for handler in matching {
            if let Err(error) = (handler.call)(envelope).await {
                recorder.record_failure(HandlerFailure {
                    event_id: envelope.id,
                    event_type: envelope.event_type.clone(),
                    handler: handler.name,
                    error: error.to_string(),
                });
            }
        }
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

/// What a handler may return: `()`, or `Result<(), E>` with an error convertible into a
/// [`HandlerError`].
pub trait IntoHandlerResult {
    /// The result as the bus sees it.
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

/// An event handler: an async function or closure taking the event.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot handle `{E}` events",
    label = "not a handler of `{E}`",
    note = "a handler is an async fn or closure taking the event by value, `|event: {E}| async move {{ .. }}`, returning `()` or `Result<(), impl Into<eventbus::HandlerError>>`"
)]
pub trait Handler<E>: Send + Sync + 'static {
    /// Handles one event.
    fn handle(&self, event: E) -> BoxFuture<'static, Result<(), HandlerError>>;
}

impl<E, F, Fut> Handler<E> for F
where
    E: Event,
    F: Fn(E) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoHandlerResult,
{
    fn handle(&self, event: E) -> BoxFuture<'static, Result<(), HandlerError>> {
        let fut = self(event);
        Box::pin(async move { fut.await.into_handler_result() })
    }
}

/// A subscription to topic `T` being built; see [`EventBus::subscribe`].
pub struct Subscription<S: Service, T: Topic> {
    bus: EventBus<S>,
    handlers: Vec<LocalHandler>,
    _topic: PhantomData<fn() -> T>,
}

impl<S: Service, T: Topic> Subscription<S, T> {
    /// Handles `E` events arriving on `T`. `E` must be routed to `T`: a handler for an event that
    /// never arrives there does not compile.
    pub fn on<E, H>(mut self, handler: H) -> Self
    where
        E: RoutedTo<T>,
        H: Handler<E>,
    {
        let handler = Arc::new(handler);
        let id = self.bus.core.next_id.fetch_add(1, Ordering::Relaxed);
        self.handlers.push(LocalHandler {
            id,
            topic: T::NAME,
            event_type: E::EVENT_TYPE,
            name: std::any::type_name::<H>(),
            call: Box::new(move |envelope: &Envelope| {
                let handler = Arc::clone(&handler);
                match envelope.decode::<E>() {
                    Ok(event) => handler.handle(event),
                    Err(e) => Box::pin(async move { Err(HandlerError::from(e)) }),
                }
            }),
        });
        self
    }

    /// Starts delivering; the subscription lasts until [`SubscriptionHandle::unsubscribe`].
    pub async fn start(self) -> Result<SubscriptionHandle, SubscribeError> {
        if self.handlers.is_empty() {
            return Err(SubscribeError::NoHandlers { topic: T::NAME });
        }
        let ids = self.handlers.iter().map(|h| h.id).collect();
        self.bus
            .core
            .handlers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(self.handlers.into_iter().map(Arc::new));
        Ok(SubscriptionHandle {
            core: Arc::clone(&self.bus.core),
            ids,
        })
    }
}

/// Why a subscription could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// `start` was called before any `on`.
    #[error(
        "the subscription to `{topic}` has no handlers: add one with `.on::<Event, _>(handler)` before `start`"
    )]
    NoHandlers {
        /// The topic.
        topic: &'static str,
    },
}

/// A running subscription.
pub struct SubscriptionHandle {
    core: Arc<Core>,
    ids: Vec<u64>,
}

impl std::fmt::Debug for SubscriptionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionHandle")
            .field("handlers", &self.ids.len())
            .finish()
    }
}

impl SubscriptionHandle {
    /// Stops delivering to this subscription's handlers.
    pub fn unsubscribe(self) {
        self.core
            .handlers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|h| !self.ids.contains(&h.id));
    }
}
