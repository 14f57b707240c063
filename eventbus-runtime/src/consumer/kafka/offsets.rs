//! Offset bookkeeping: a partition's offset is committed only up to the lowest record still in
//! work, so a crash or a rebalance re-delivers what was not finished and skips nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use super::hash::FastHash;
use crate::lock;

/// Per-partition offset bookkeeping: the offset to commit is the lowest one still in work, or
/// the one after the highest seen.
#[derive(Default)]
pub(super) struct Offsets {
    partitions: Mutex<HashMap<TopicPartition, Arc<PartitionOffsets>, FastHash>>,
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

/// One partition's offsets. The poll thread gives each record the handle of its partition
/// (`batch.rs`), so a record handled at once moves `next` with two atomic operations: no lock, no
/// map lookup.
#[derive(Default)]
pub(super) struct PartitionOffsets {
    /// The records in work. A record begins under this lock, `next` moved with it, and the
    /// committable offset is read under it: a reader never sees `next` past a record that began
    /// but is not in the set yet.
    in_work: Mutex<BTreeSet<i64>>,
    /// The offset after the highest seen.
    next: AtomicI64,
    /// A record finished since the offset was last stored.
    dirty: AtomicBool,
    /// Forgotten (revoked): a holder of this handle asks [`Offsets::partition`] again.
    forgotten: AtomicBool,
}

impl PartitionOffsets {
    /// A record handled at once (never in work): the partition's next offset moves past it.
    pub(super) fn advance(&self, offset: i64) {
        self.next.fetch_max(offset + 1, Ordering::Relaxed);
        // After `next`: whoever sees the flag (and clears it) reads `next` after it.
        self.dirty.store(true, Ordering::Release);
    }

    /// False once the partition was forgotten (revoked): its handle is stale.
    pub(super) fn current(&self) -> bool {
        !self.forgotten.load(Ordering::Relaxed)
    }

    /// The offset now safe to commit: the lowest still in work, or the one after the highest seen.
    fn committable(&self) -> i64 {
        let in_work = lock(&self.in_work);
        in_work
            .first()
            .copied()
            .unwrap_or_else(|| self.next.load(Ordering::Acquire))
    }
}

impl Offsets {
    /// The handle of a partition (created when new).
    pub(super) fn partition(&self, topic: &'static str, partition: i32) -> Arc<PartitionOffsets> {
        let mut p = lock(&self.partitions);
        Arc::clone(p.entry(TopicPartition(topic, partition)).or_default())
    }

    /// A record is in work.
    pub(super) fn begin(&self, topic: &'static str, partition: i32, offset: i64) {
        let state = self.partition(topic, partition);
        let mut in_work = lock(&state.in_work);
        in_work.insert(offset);
        state.next.fetch_max(offset + 1, Ordering::Relaxed);
    }

    /// A record handled at once (never in work): the partition's next offset moves past it. (The
    /// run loop moves it through the record's partition handle instead.)
    #[cfg(test)]
    fn advance(&self, topic: &'static str, partition: i32, offset: i64) {
        self.partition(topic, partition).advance(offset);
    }

    /// Marks `offset` done.
    pub(super) fn finish(&self, topic: &'static str, partition: i32, offset: i64) {
        let state = lock(&self.partitions)
            .get(&TopicPartition(topic, partition))
            .cloned();
        if let Some(state) = state {
            lock(&state.in_work).remove(&offset);
            state.dirty.store(true, Ordering::Release);
        }
    }

    /// The offsets now safe to commit, of the partitions that moved since the last call: for
    /// each, the lowest offset still in work, or the one after the highest seen.
    pub(super) fn take_committable(&self) -> Vec<(&'static str, i32, i64)> {
        let p = lock(&self.partitions);
        let mut out = Vec::new();
        for (TopicPartition(topic, partition), state) in p.iter() {
            if state.dirty.swap(false, Ordering::AcqRel) {
                out.push((*topic, *partition, state.committable()));
            }
        }
        out
    }

    /// True while a record of one of `partitions` is in work.
    pub(super) fn busy<'a>(&self, mut partitions: impl Iterator<Item = (&'a str, i32)>) -> bool {
        let p = lock(&self.partitions);
        partitions.any(|(topic, partition)| {
            p.iter()
                .find(|(TopicPartition(t, part), _)| *t == topic && *part == partition)
                .is_some_and(|(_, s)| !lock(&s.in_work).is_empty())
        })
    }

    /// Forgets `partitions` (revoked: their next owner starts from the committed offsets).
    pub(super) fn forget<'a>(&self, partitions: impl Iterator<Item = (&'a str, i32)>) {
        let mut p = lock(&self.partitions);
        for (topic, partition) in partitions {
            p.retain(|TopicPartition(t, part), s| {
                let keep = !(*t == topic && *part == partition);
                if !keep {
                    s.forgotten.store(true, Ordering::Relaxed);
                }
                keep
            });
        }
    }

    /// True when no record is in work.
    pub(super) fn idle(&self) -> bool {
        lock(&self.partitions)
            .values()
            .all(|s| lock(&s.in_work).is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::Offsets;

    const T: &str = "orders";

    #[test]
    fn commits_stop_at_the_lowest_record_still_in_work() {
        let offsets = Offsets::default();
        for o in 10..15 {
            offsets.begin(T, 0, o);
        }
        offsets.finish(T, 0, 10);
        offsets.finish(T, 0, 12);
        offsets.finish(T, 0, 13);
        assert_eq!(
            offsets.take_committable(),
            [(T, 0, 11)],
            "11 is still in work"
        );
        assert!(offsets.take_committable().is_empty(), "nothing moved since");
        offsets.finish(T, 0, 11);
        assert_eq!(offsets.take_committable(), [(T, 0, 14)]);
        offsets.finish(T, 0, 14);
        assert_eq!(
            offsets.take_committable(),
            [(T, 0, 15)],
            "after the highest seen"
        );
        assert!(offsets.idle());
    }

    #[test]
    fn records_handled_at_once_advance_the_partition() {
        let offsets = Offsets::default();
        offsets.advance(T, 1, 0);
        offsets.advance(T, 1, 1);
        offsets.begin(T, 1, 2);
        offsets.advance(T, 1, 3);
        assert_eq!(
            offsets.take_committable(),
            [(T, 1, 2)],
            "2 holds the commit back"
        );
        assert!(!offsets.idle());
        assert!(offsets.busy([(T, 1)].into_iter()));
        assert!(!offsets.busy([(T, 0)].into_iter()));
        offsets.finish(T, 1, 2);
        assert_eq!(offsets.take_committable(), [(T, 1, 4)]);
    }

    #[test]
    fn a_partition_handle_advances_until_forgotten() {
        let offsets = Offsets::default();
        let handle = offsets.partition(T, 3);
        handle.advance(0);
        handle.advance(1);
        offsets.begin(T, 3, 2);
        handle.advance(3);
        assert_eq!(offsets.take_committable(), [(T, 3, 2)]);
        offsets.finish(T, 3, 2);
        assert_eq!(offsets.take_committable(), [(T, 3, 4)]);
        assert!(handle.current());
        offsets.forget([(T, 3)].into_iter());
        assert!(!handle.current(), "a revoked partition's handle is stale");
        assert!(offsets.take_committable().is_empty());
    }

    #[test]
    fn partitions_are_independent_and_forgotten_on_revoke() {
        let offsets = Offsets::default();
        offsets.begin(T, 0, 5);
        offsets.advance(T, 1, 7);
        assert_eq!(
            offsets.take_committable(),
            [(T, 1, 8)],
            "partition 0 has nothing finished, so nothing new to commit"
        );
        offsets.forget([(T, 0)].into_iter());
        assert!(
            offsets.idle(),
            "the revoked partition's work is no longer ours"
        );
        offsets.finish(T, 0, 5);
        assert!(
            offsets.take_committable().is_empty(),
            "a finish after revoke commits nothing"
        );
    }
}
