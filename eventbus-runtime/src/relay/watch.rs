//! What the relay says about its dependencies, and how it stops.
//!
//! - [`Dependency`]: Kafka and the outbox database are each up or down; the relay logs a
//!   dependency going down once (a warning naming it, its address and the error) and coming back
//!   once (with how long it was away), not every retry: retries are `debug` events.
//! - [`Stop`]: the shutdown signal with its grace period. Once stop is asked, whatever the relay
//!   is waiting for (acknowledgements of the batches in hand, the database) gets [`SHUTDOWN_GRACE`];
//!   then the relay gives up on it, flushes for at most [`CLOSE_BUDGET`] and releases its shards
//!   within [`CLOSE_BUDGET`]. Rows not acknowledged by then stay in the outbox and are published
//!   again by the next relay that owns their shard (at least once, as after a crash).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, Producer as _};
use tokio::sync::watch;

/// How long the batches in hand may still take once stop is asked.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);
/// How long the relay may take to flush its producer, and then to release its shards, after the
/// batches in hand.
pub const CLOSE_BUDGET: Duration = Duration::from_millis(500);

/// A dependency's state, as the relay last saw it.
#[derive(Debug)]
pub(super) struct Dependency {
    /// `Kafka at host:port` or `the outbox database (table t)`.
    name: String,
    /// When it went down, while it is down.
    down_since: Option<Instant>,
    /// Whether it has been seen up since the relay started.
    seen_up: bool,
    /// When it last answered.
    last_up: Option<Instant>,
}

impl Dependency {
    pub(super) fn new(name: String) -> Self {
        Dependency {
            name,
            down_since: None,
            seen_up: false,
            last_up: None,
        }
    }

    /// True while it is down.
    pub(super) fn is_down(&self) -> bool {
        self.down_since.is_some()
    }

    /// True while it is down or has not answered yet.
    fn unsure(&self) -> bool {
        self.is_down() || !self.seen_up
    }

    /// How long until the next probe of it is due.
    fn wait_before_probe(&self) -> Duration {
        if self.unsure() {
            return Duration::from_secs(5);
        }
        let since = self.last_up.map_or(Duration::MAX, |t| t.elapsed());
        Duration::from_secs(30).saturating_sub(since)
    }

    /// It failed with `error`: a warning the first time, `debug` while it stays down.
    pub(super) fn down(&mut self, error: &str, consequence: &str) {
        let error = crate::config::redact(error);
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            tracing::warn!(
                %error,
                "eventbus relay: {} is unavailable; {consequence} (logged once until it is back)",
                self.name
            );
        } else {
            tracing::debug!(%error, "eventbus relay: {} still unavailable", self.name);
        }
    }

    /// It answered: an `info` event if it was down.
    pub(super) fn up(&mut self) {
        self.seen_up = true;
        self.last_up = Some(Instant::now());
        if let Some(since) = self.down_since.take() {
            let away = since.elapsed().as_secs_f64();
            tracing::info!(
                away_secs = away,
                "eventbus relay: {} is available again after {away:.1} s",
                self.name
            );
        }
    }
}

/// Kafka's state, shared by the run loop (acknowledgements, outage errors) and [`probe_kafka`].
pub(super) type SharedDependency = Arc<Mutex<Dependency>>;

/// How long a probe waits for the brokers.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks the brokers for their metadata while nothing else says whether Kafka is reachable: at
/// once, then every 5 s while it is down or not yet seen, and 30 s after the last sign of life
/// otherwise (an acknowledged batch is one). Runs until stop is asked.
pub(super) async fn probe_kafka(producer: FutureProducer, kafka: SharedDependency, mut stop: Stop) {
    loop {
        let client = producer.clone();
        let asked = tokio::task::spawn_blocking(move || {
            match client.client().fetch_metadata(None, PROBE_TIMEOUT) {
                Ok(m) if !m.brokers().is_empty() => Ok(()),
                Ok(_) => Err("the cluster listed no brokers".to_owned()),
                Err(e) => Err(format!(
                    "no answer to a metadata request within {PROBE_TIMEOUT:?}: {e}"
                )),
            }
        });
        let answer = tokio::select! {
            answer = asked => answer.unwrap_or_else(|e| Err(format!("the probe failed: {e}"))),
            () = stop.asked() => return,
        };
        match answer {
            Ok(()) => crate::lock(&kafka).up(),
            Err(error) => crate::lock(&kafka).down(&error, KAFKA_DOWN),
        }
        loop {
            let wait = crate::lock(&kafka).wait_before_probe();
            if wait.is_zero() {
                break;
            }
            stop.sleep(wait).await;
            if stop.requested() {
                return;
            }
            if crate::lock(&kafka).unsure() {
                break;
            }
        }
    }
}

/// What the relay does while Kafka is away.
pub(super) const KAFKA_DOWN: &str = "the events wait in the outbox and are sent when it is back";

/// The shutdown signal and its deadline.
#[derive(Clone)]
pub(super) struct Stop {
    rx: watch::Receiver<bool>,
    /// When the grace period ends, once stop was seen (tokio's clock).
    deadline: Option<tokio::time::Instant>,
}

impl Stop {
    pub(super) fn new(rx: watch::Receiver<bool>) -> Self {
        Stop { rx, deadline: None }
    }

    /// True once stop was asked.
    pub(super) fn requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves when stop is asked (never, if the handle is gone without asking).
    pub(super) async fn asked(&mut self) {
        while !*self.rx.borrow_and_update() {
            if self.rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Resolves when the grace period after the stop request has passed.
    async fn expired(&mut self) {
        self.asked().await;
        let deadline = *self
            .deadline
            .get_or_insert_with(|| tokio::time::Instant::now() + SHUTDOWN_GRACE);
        tokio::time::sleep_until(deadline).await;
    }

    /// `work`'s output, or `None` when stop was asked and the grace period passed first.
    pub(super) async fn bounded<F: Future>(&mut self, work: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            out = work => Some(out),
            () = self.expired() => None,
        }
    }

    /// Sleeps for `delay`, or until stop is asked.
    pub(super) async fn sleep(&mut self, delay: Duration) {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.asked() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_gets_the_grace_period_after_stop_and_no_more() {
        let (tx, rx) = watch::channel(false);
        let mut stop = Stop::new(rx);
        // Before stop, work runs to its end however long it takes.
        let out = stop
            .bounded(async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                1
            })
            .await;
        assert_eq!(out, Some(1));
        tx.send(true).unwrap();
        let started = tokio::time::Instant::now();
        let out = stop
            .bounded(tokio::time::sleep(Duration::from_secs(60)))
            .await;
        assert_eq!(out, None);
        assert_eq!(started.elapsed(), SHUTDOWN_GRACE);
        // The deadline is shared by everything after the request.
        let out = stop
            .bounded(tokio::time::sleep(Duration::from_secs(60)))
            .await;
        assert_eq!(out, None);
        assert_eq!(started.elapsed(), SHUTDOWN_GRACE);
        let started = tokio::time::Instant::now();
        stop.sleep(Duration::from_secs(60)).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn a_dependency_changes_state_once() {
        let mut kafka = Dependency::new("Kafka at k:1".into());
        assert!(!kafka.is_down() && kafka.unsure());
        kafka.down("refused", "retrying");
        kafka.down("refused", "retrying");
        assert!(kafka.is_down());
        kafka.up();
        assert!(!kafka.is_down() && !kafka.unsure());
        assert!(kafka.wait_before_probe() > Duration::from_secs(29));
    }
}
