//! The Testing mode: an in-memory transport. Published events are recorded (with typed
//! assertions, [`Recorder`]) and delivered to the consumers subscribed to it, the way an in-memory
//! pub/sub is one more publisher/subscriber pair. The consumer plugs in through [`Subscriber`]; the
//! bus knows nothing of consumers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use uuid::Uuid;

use crate::BoxFuture;
use crate::envelope::Envelope;
use crate::event::{Event, Topic};
use crate::lock;

/// A handler that failed in the Testing mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerFailure {
    /// The event's id.
    pub event_id: Uuid,
    /// The event's `ce_type`.
    pub event_type: String,
    /// The handler's type name.
    pub handler: String,
    /// What it returned.
    pub error: String,
    /// The class of the error.
    pub class: crate::dlq::ErrorClass,
}

/// A subscriber's failed delivery: the failure to record, and the notification to publish.
pub(crate) struct Failed {
    pub(crate) failure: HandlerFailure,
    pub(crate) notice: Option<Envelope>,
}

/// Everything a Testing bus published, in order, and every handler failure.
#[derive(Debug, Default)]
pub struct Recorder {
    envelopes: Mutex<Vec<Envelope>>,
    failures: Mutex<Vec<HandlerFailure>>,
}

impl Recorder {
    pub(crate) fn record(&self, envelope: Envelope) {
        lock(&self.envelopes).push(envelope);
    }

    pub(crate) fn record_failure(&self, failure: HandlerFailure) {
        lock(&self.failures).push(failure);
    }

    /// Every envelope, in publish order.
    pub fn envelopes(&self) -> Vec<Envelope> {
        lock(&self.envelopes).clone()
    }

    /// The envelopes published to topic `T`.
    pub fn on_topic<T: Topic>(&self) -> Vec<Envelope> {
        lock(&self.envelopes)
            .iter()
            .filter(|e| e.topic == T::NAME)
            .cloned()
            .collect()
    }

    /// The `E` events published (of `E`'s type and version: `OrderPlacedV1` and `OrderPlaced`
    /// are told apart), decoded, in publish order.
    ///
    /// # Panics
    /// When a recorded `E` does not decode, which means its `Serialize` and `Deserialize`
    /// disagree: the test should fail there.
    pub fn published<E: Event>(&self) -> Vec<E> {
        self.envelopes_of::<E>()
            .iter()
            .map(|e| match e.decode::<E>() {
                Ok(event) => event,
                Err(err) => panic!("a recorded `{}` does not decode: {err}", E::EVENT_TYPE),
            })
            .collect()
    }

    /// The envelopes carrying `E` (its type, in its version).
    pub fn envelopes_of<E: Event>(&self) -> Vec<Envelope> {
        lock(&self.envelopes)
            .iter()
            .filter(|e| e.is::<E>())
            .cloned()
            .collect()
    }

    /// How many `E` events were published.
    pub fn count<E: Event>(&self) -> usize {
        lock(&self.envelopes).iter().filter(|e| e.is::<E>()).count()
    }

    /// Handler failures, in order.
    pub fn failures(&self) -> Vec<HandlerFailure> {
        lock(&self.failures).clone()
    }

    /// Forgets everything recorded.
    pub fn clear(&self) {
        lock(&self.envelopes).clear();
        lock(&self.failures).clear();
    }
}

/// What receives the events of an in-memory transport: a consumer started on a Testing bus.
pub(crate) trait Subscriber: Send + Sync {
    /// Handles `envelope` once; a handler's failure is returned, to be recorded, with its
    /// dead-letter notification, to be published.
    fn deliver<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, Option<Failed>>;
}

/// The in-memory transport of a Testing bus: its recorder and its subscribers.
#[derive(Default)]
pub(crate) struct MemoryBroker {
    recorder: Recorder,
    subscribers: RwLock<Vec<(u64, Arc<dyn Subscriber>)>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("recorder", &self.recorder)
            .finish_non_exhaustive()
    }
}

impl MemoryBroker {
    /// What was published.
    pub(crate) fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Records `envelope` and delivers it to every subscriber, in the order they subscribed.
    /// Failures are recorded, not returned: a publisher does not see its consumers' errors. Each
    /// failure's notification ([`crate::dlq::DeadLettered`]) is published after the deliveries.
    pub(crate) fn publish<'a>(&'a self, envelope: &'a Envelope) -> BoxFuture<'a, ()> {
        Box::pin(self.publish_once(envelope))
    }

    async fn publish_once(&self, envelope: &Envelope) {
        self.recorder.record(envelope.clone());
        let subscribers: Vec<Arc<dyn Subscriber>> = self
            .subscribers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(_, s)| Arc::clone(s))
            .collect();
        let mut notices = Vec::new();
        for subscriber in subscribers {
            if let Some(failed) = subscriber.deliver(envelope).await {
                self.recorder.record_failure(failed.failure);
                notices.extend(failed.notice);
            }
        }
        for notice in &notices {
            self.publish(notice).await;
        }
    }

    /// Adds a subscriber; it receives events until [`MemoryBroker::unsubscribe`] with the id.
    pub(crate) fn subscribe(&self, subscriber: Arc<dyn Subscriber>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.subscribers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((id, subscriber));
        id
    }

    /// Removes a subscriber.
    pub(crate) fn unsubscribe(&self, id: u64) {
        self.subscribers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(i, _)| *i != id);
    }
}
