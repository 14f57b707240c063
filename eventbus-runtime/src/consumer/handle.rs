//! A running consumer: [`ConsumerHandle`] (stop, wait, health) and its counters,
//! [`ConsumerStats`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::engine::Engine;
use crate::bus::testing::MemoryBroker;
use crate::dlq::ErrorClass;
use crate::metrics::{ByClass, Counted};

/// Counters of a consumer.
///
/// Also exported through the `metrics` facade, labelled `group`:
///
/// | metric | what |
/// |---|---|
/// | `eventbus_consumer_handled_total` | records whose handlers all succeeded |
/// | `eventbus_consumer_retried_total` | failed attempts retried |
/// | `eventbus_consumer_dead_lettered_total` | records sent to the dead-letter topic; also labelled `class` ([`ErrorClass`]) |
/// | `eventbus_consumer_skipped_total` | records no handler wanted (never decoded) |
/// | `eventbus_consumer_duplicates_total` | redeliveries the inbox skipped |
///
/// On Kafka, every 5 s, the gauge `eventbus_consumer_lag{group, topic, partition}`: of each
/// partition assigned to this member, the high watermark minus the group's committed offset.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    pub(crate) handled: Counted,
    pub(crate) retried: Counted,
    pub(crate) dead_lettered: ByClass,
    pub(crate) skipped: Counted,
    pub(crate) duplicates: Counted,
}

impl ConsumerStats {
    /// The counters of group `group`, exported with its name.
    pub(crate) fn new(group: &str) -> Self {
        let counter =
            |name: &'static str| Counted::new(metrics::counter!(name, "group" => group.to_owned()));
        ConsumerStats {
            handled: counter("eventbus_consumer_handled_total"),
            retried: counter("eventbus_consumer_retried_total"),
            dead_lettered: ByClass::new("eventbus_consumer_dead_lettered_total", ("group", group)),
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
    /// Records sent to the dead-letter topic for errors of `class`.
    pub fn dead_lettered_by(&self, class: ErrorClass) -> u64 {
        self.dead_lettered.of(class)
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

/// A running consumer.
pub struct ConsumerHandle {
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) task: Option<tokio::task::JoinHandle<()>>,
    /// Testing mode: the in-memory transport and the subscription to remove on stop.
    pub(crate) local: Option<(Arc<MemoryBroker>, u64)>,
    /// Kafka: turns true once the group assigned partitions to this member.
    pub(crate) ready: Option<watch::Receiver<bool>>,
    /// Its handlers, retries and circuit.
    pub(crate) engine: Arc<Engine>,
}

/// A consumer's state, for a health check ([`ConsumerHandle::health`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerHealth {
    /// Its run loop is running (it stops on `shutdown`, or if the consumer failed).
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
        if let Some((memory, id)) = self.local.take() {
            memory.unsubscribe(id);
        }
        let _ = self.stop.send(true);
    }

    /// Stops: no new record is taken, the records in work finish, offsets are committed.
    pub async fn shutdown(mut self) {
        if let Some((memory, id)) = self.local.take() {
            memory.unsubscribe(id);
        }
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Kills the consumer at once, as a crash would (tests use this): records in work are
    /// re-delivered to whoever consumes their partitions next.
    pub fn abort(mut self) {
        if let Some((memory, id)) = self.local.take() {
            memory.unsubscribe(id);
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
