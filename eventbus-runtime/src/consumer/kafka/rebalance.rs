//! The rebalance hooks: before partitions are revoked, let the records polled and their records
//! in work finish (up to a bound) and commit, so the next owner starts where this one stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::watch;

use super::offsets::Offsets;
use super::store;

/// The rebalance hooks: before partitions are revoked, let their records in work finish (up to a
/// bound) and commit, so the next owner starts where this one stopped.
pub(super) struct RebalanceContext {
    pub(super) offsets: Arc<Offsets>,
    /// Records the poll thread sent and the run loop has not handled yet (`batch.rs`).
    pub(super) pending: Arc<AtomicUsize>,
    pub(super) assigned: watch::Sender<bool>,
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
            let revoked = elements(partitions);
            let each = || revoked.iter().map(|(t, p)| (t.as_str(), *p));
            let deadline = Instant::now() + Duration::from_secs(10);
            // Served on the poll thread: the run loop handles what it was sent, then the records
            // in work finish.
            while self.pending.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            while self.offsets.busy(each()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            store(consumer, &self.offsets);
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(error = %e, "eventbus consumer: nothing to commit on revoke");
            }
            self.offsets.forget(each());
        }
    }
}

/// The (topic, partition) pairs of a list.
fn elements(partitions: &TopicPartitionList) -> Vec<(String, i32)> {
    partitions
        .elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}
