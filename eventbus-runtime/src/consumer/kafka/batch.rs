//! The consumer's two stages. A thread of its own polls librdkafka ([`poll_records`]) and copies
//! each record's bytes into a [`Batch`]; the run loop's task takes the batches in order and does
//! the rest (the attributes' check, the verdict, the handlers). The two share no record: the poll
//! thread keeps librdkafka's work (taking the message off its queue, parsing its headers, freeing
//! it) off the core that decodes and handles, so a consumer uses two cores where it has them.
//!
//! Order is kept: one poll thread, one channel, one task taking the batches. A rebalance is served
//! on the poll thread; before partitions are revoked it waits until the task has handled every
//! batch sent (`RebalanceContext`), and a record still in the batch being filled, of a partition
//! revoked meanwhile, is dropped by the task (its partition's handle is stale): its next owner
//! reads it from the committed offset.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::Consumer as _;
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use tokio::sync::{mpsc, watch};

use super::KafkaRun;
use super::offsets::PartitionOffsets;
use crate::lock;

/// Records per batch at most: enough to spread the hand-over's cost, few enough that the task
/// starts on a batch while the poll thread fills the next.
const MAX_RECORDS: usize = 1024;
/// Bytes per batch from which it is sent without waiting for more records (records larger than
/// this go one per batch).
const MAX_BYTES: usize = 512 * 1024;
/// Batches sent and not yet taken by the task: the poll thread waits beyond this, and librdkafka's
/// prefetch queue then fills and pauses the fetches, as when a consumer is slower than its broker.
pub(super) const IN_FLIGHT: usize = 8;
/// How long the poll thread waits for a record before it looks at the stop flag and the circuit
/// breaker again.
const POLL_WAIT: Duration = Duration::from_millis(50);

/// A byte range of a batch's buffer.
type Bytes = Range<u32>;

/// Records copied out of librdkafka's messages: their key, payload and headers in one buffer.
#[derive(Default)]
pub(super) struct Batch {
    bytes: Vec<u8>,
    /// Name and value of every header of every record, in order.
    headers: Vec<(Bytes, Bytes)>,
    records: Vec<Copied>,
    /// The offsets' handles of the partitions the records are of (each record has an index).
    partitions: Vec<Arc<PartitionOffsets>>,
}

/// One record of a [`Batch`].
pub(super) struct Copied {
    /// Its topic's index among the subscribed ones.
    pub(super) topic_index: usize,
    pub(super) partition: i32,
    pub(super) offset: i64,
    /// Its timestamp (CreateTime or LogAppendTime, per the topic), in milliseconds since the epoch.
    pub(super) timestamp_ms: Option<i64>,
    key: Option<Bytes>,
    payload: Bytes,
    /// Its headers' range in [`Batch::headers`].
    headers: Range<u32>,
    /// Its partition's handle in [`Batch::partitions`].
    handle: u32,
    /// A header name was not UTF-8: no header could be read (see [`Batch::push`]).
    pub(super) headers_unreadable: bool,
}

impl Batch {
    /// The records, in the order they were polled.
    pub(super) fn records(&self) -> &[Copied] {
        &self.records
    }

    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    fn slice(&self, range: &Bytes) -> &[u8] {
        &self.bytes[range.start as usize..range.end as usize]
    }

    /// The record's key, if it has one.
    pub(super) fn key(&self, record: &Copied) -> Option<&[u8]> {
        record.key.as_ref().map(|k| self.slice(k))
    }

    /// The record's payload (empty for none).
    pub(super) fn payload(&self, record: &Copied) -> &[u8] {
        self.slice(&record.payload)
    }

    /// The record's headers, names and values (a header without a value has an empty one).
    pub(super) fn headers<'b>(
        &'b self,
        record: &Copied,
    ) -> impl Iterator<Item = (&'b [u8], &'b [u8])> + 'b {
        self.headers[record.headers.start as usize..record.headers.end as usize]
            .iter()
            .map(|(name, value)| (self.slice(name), self.slice(value)))
    }

    /// The handle of the record's partition's offsets, as it was when the record was polled.
    pub(super) fn handle(&self, record: &Copied) -> &Arc<PartitionOffsets> {
        &self.partitions[record.handle as usize]
    }

    /// Appends `bytes` to the buffer; their range.
    fn append(&mut self, bytes: &[u8]) -> Bytes {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(bytes);
        start..self.bytes.len() as u32
    }

    /// Copies `message` in, of the subscribed topic `topic_index`, its partition's offsets being
    /// `handle`.
    fn push(
        &mut self,
        message: &BorrowedMessage<'_>,
        topic_index: usize,
        handle: &Arc<PartitionOffsets>,
    ) {
        let key = message.key().map(|k| self.append(k));
        let payload = self.append(message.payload().unwrap_or_default());
        let first = self.headers.len() as u32;
        let mut headers_unreadable = false;
        if let Some(headers) = message.headers() {
            // rdkafka panics on a header name that is not UTF-8 (its `try_get` unwraps the
            // name's text): such a record has no readable headers and is dead-lettered without
            // them, rather than the panic ending this thread and the consumer with it.
            let copied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // By index, the count asked once (the iterator asks it for every header).
                for header in (0..headers.count()).filter_map(|i| headers.try_get(i)) {
                    let name = self.append(header.key.as_bytes());
                    let value = self.append(header.value.unwrap_or_default());
                    self.headers.push((name, value));
                }
            }));
            if copied.is_err() {
                self.headers.truncate(first as usize);
                headers_unreadable = true;
            }
        }
        let handle = match self.partitions.last() {
            Some(last) if Arc::ptr_eq(last, handle) => self.partitions.len() - 1,
            _ => {
                self.partitions.push(Arc::clone(handle));
                self.partitions.len() - 1
            }
        };
        self.records.push(Copied {
            topic_index,
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            key,
            payload,
            headers: first..self.headers.len() as u32,
            handle: handle as u32,
            headers_unreadable,
        });
    }

    /// Empties the batch, keeping its buffers for the next one (a buffer a very large record grew
    /// is given back).
    pub(super) fn clear(&mut self) {
        if self.bytes.capacity() > 4 * MAX_BYTES {
            self.bytes = Vec::new();
        }
        self.bytes.clear();
        self.headers.clear();
        self.records.clear();
        self.partitions.clear();
    }
}

/// Batches the task has emptied, for the poll thread to fill again (their buffers stay allocated).
pub(super) type Spare = Arc<Mutex<Vec<Batch>>>;

/// The offsets' handle of the partition of the last record polled: records come in runs of one
/// partition, so most records take it without a lock or a lookup.
#[derive(Default)]
struct LastPartition(Option<(usize, i32, Arc<PartitionOffsets>)>);

impl LastPartition {
    /// The handle of `partition` of the subscribed topic `topic_index`.
    fn of(&mut self, run: &KafkaRun, topic_index: usize, partition: i32) -> &Arc<PartitionOffsets> {
        let stale = !matches!(&self.0, Some((t, p, handle))
            if *t == topic_index && *p == partition && handle.current());
        if stale {
            self.0 = None;
        }
        let (_, _, handle) = self.0.get_or_insert_with(|| {
            let handle = run.offsets.partition(run.topics[topic_index], partition);
            (topic_index, partition, handle)
        });
        handle
    }
}

/// The poll thread: polls `run`'s consumer until `stop` turns true or the task is gone, copying
/// the records into batches sent to the task, in order, counted in `run.pending` until the task
/// has handled them (the rebalance hook waits for it).
pub(super) fn poll_records(
    run: Arc<KafkaRun>,
    batches: mpsc::Sender<Batch>,
    stop: watch::Receiver<bool>,
) {
    let mut paused = false;
    let mut last = LastPartition::default();
    loop {
        if *stop.borrow() || batches.is_closed() {
            break;
        }
        // The circuit breaker pauses every assigned partition while open.
        match (run.engine.breaker.open_for(), paused) {
            (Some(_), false) => {
                if let Ok(assigned) = run.consumer.assignment() {
                    let _ = run.consumer.pause(&assigned);
                    paused = true;
                }
            }
            (None, true) => {
                if let Ok(assigned) = run.consumer.assignment() {
                    let _ = run.consumer.resume(&assigned);
                }
                paused = false;
            }
            _ => {}
        }
        let mut batch = lock(&run.spare).pop().unwrap_or_default();
        // The first record is waited for; the others are taken while they are ready.
        let mut wait = POLL_WAIT;
        while batch.len() < MAX_RECORDS && batch.bytes.len() < MAX_BYTES {
            let message = match run.consumer.poll(wait) {
                None => break,
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "eventbus consumer: receive error");
                    if batch.len() == 0 {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    break;
                }
            };
            wait = Duration::ZERO;
            // One topic (the usual case): every record is of it, no name to compare.
            let topic_index = match run.topics.len() {
                1 => Some(0),
                _ => run.topics.iter().position(|t| *t == message.topic()),
            };
            let Some(topic_index) = topic_index else {
                tracing::warn!(
                    topic = message.topic(),
                    "eventbus consumer: a record of a topic not subscribed; skipped"
                );
                continue;
            };
            let handle = last.of(&run, topic_index, message.partition());
            batch.push(&message, topic_index, handle);
        }
        if batch.len() == 0 {
            lock(&run.spare).push(batch);
            continue;
        }
        run.pending.fetch_add(batch.len(), Ordering::AcqRel);
        if batches.blocking_send(batch).is_err() {
            break;
        }
    }
}
