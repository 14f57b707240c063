//! Offset bookkeeping: a partition's offset is committed only up to the lowest record still in
//! work, so a crash or a rebalance re-delivers what was not finished and skips nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use super::hash::FastHash;
use crate::lock;

/// Per-partition offset bookkeeping: the offset to commit is the lowest one still in work, or
/// the one after the highest seen.
#[derive(Default)]
pub(super) struct Offsets {
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

#[derive(Default)]
struct PartitionOffsets {
    in_work: BTreeSet<i64>,
    next: i64,
    /// A record finished since the offset was last stored.
    dirty: bool,
}

impl Offsets {
    /// A record is in work.
    pub(super) fn begin(&self, topic: &'static str, partition: i32, offset: i64) {
        let mut p = lock(&self.partitions);
        let state = p.entry(TopicPartition(topic, partition)).or_default();
        state.in_work.insert(offset);
        state.next = state.next.max(offset + 1);
    }

    /// A record handled at once (never in work): the partition's next offset moves past it.
    pub(super) fn advance(&self, topic: &'static str, partition: i32, offset: i64) {
        let mut p = lock(&self.partitions);
        let state = p.entry(TopicPartition(topic, partition)).or_default();
        state.next = state.next.max(offset + 1);
        state.dirty = true;
    }

    /// Marks `offset` done.
    pub(super) fn finish(&self, topic: &'static str, partition: i32, offset: i64) {
        let mut p = lock(&self.partitions);
        if let Some(state) = p.get_mut(&TopicPartition(topic, partition)) {
            state.in_work.remove(&offset);
            state.dirty = true;
        }
    }

    /// The offsets now safe to commit, of the partitions that moved since the last call: for
    /// each, the lowest offset still in work, or the one after the highest seen.
    pub(super) fn take_committable(&self) -> Vec<(&'static str, i32, i64)> {
        let mut p = lock(&self.partitions);
        let mut out = Vec::new();
        for (TopicPartition(topic, partition), state) in p.iter_mut().filter(|(_, s)| s.dirty) {
            state.dirty = false;
            let next = state.in_work.first().copied().unwrap_or(state.next);
            out.push((*topic, *partition, next));
        }
        out
    }

    /// True while a record of one of `partitions` is in work.
    pub(super) fn busy<'a>(&self, mut partitions: impl Iterator<Item = (&'a str, i32)>) -> bool {
        let p = lock(&self.partitions);
        partitions.any(|(topic, partition)| {
            p.iter()
                .find(|(TopicPartition(t, part), _)| *t == topic && *part == partition)
                .is_some_and(|(_, s)| !s.in_work.is_empty())
        })
    }

    /// Forgets `partitions` (revoked: their next owner starts from the committed offsets).
    pub(super) fn forget<'a>(&self, partitions: impl Iterator<Item = (&'a str, i32)>) {
        let mut p = lock(&self.partitions);
        for (topic, partition) in partitions {
            p.retain(|TopicPartition(t, part), _| !(*t == topic && *part == partition));
        }
    }

    /// True when no record is in work.
    pub(super) fn idle(&self) -> bool {
        lock(&self.partitions)
            .values()
            .all(|s| s.in_work.is_empty())
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
