//! The Testing mode's recorder: what was published, with typed assertions.

use std::sync::Mutex;

use uuid::Uuid;

use crate::envelope::Envelope;
use crate::event::{Event, Topic};

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
}

/// Everything a Testing bus published, in order, and every handler failure.
#[derive(Debug, Default)]
pub struct Recorder {
    envelopes: Mutex<Vec<Envelope>>,
    failures: Mutex<Vec<HandlerFailure>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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

    /// The `E` events published, decoded, in publish order.
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

    /// The envelopes carrying `E`.
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
