//! The Kafka consumer: a poll thread that copies the records into batches and the run loop that
//! handles them (`batch.rs`), the fast path that handles a record in the loop from its raw headers
//! (`fast.rs`), the key queues and their workers (`queues.rs`), the offsets (`offsets.rs`) and the
//! rebalance hooks (`rebalance.rs`).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::producer::{FutureProducer, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Semaphore, watch};

mod batch;
mod fast;
mod hash;
mod offsets;
mod queues;
mod rebalance;

use time::OffsetDateTime;

use super::engine::{Engine, FirstAttempt, Verdict};
use crate::config::KafkaConfig;
use crate::envelope::{Attributes, Defaults, Envelope, RawAttributes, key_of};
use crate::error::{DecodeError, SubscribeError};
use crate::event::fnv1a;
use crate::{lock, trace};
use hash::FastHash;
use offsets::Offsets;
use rebalance::RebalanceContext;

/// Starts the consumer of `engine`'s topics as group `group`: the run loop's task, and a flag that turns
/// true once the group assigned this member partitions.
#[allow(clippy::result_large_err)] // once per consumer, not per record
pub(super) fn start(
    kafka: &KafkaConfig,
    group: &str,
    engine: Arc<Engine>,
    concurrency: usize,
    dead_letter_topic: Option<String>,
    stop: watch::Receiver<bool>,
) -> Result<(tokio::task::JoinHandle<()>, watch::Receiver<bool>), SubscribeError> {
    let topics = engine.topics();
    let (assigned, ready) = watch::channel(false);
    let run = KafkaRun::new(
        kafka,
        group,
        &topics,
        engine,
        concurrency,
        dead_letter_topic,
        assigned,
    )
    .map_err(|source| SubscribeError::Kafka {
        group: group.to_owned(),
        topics,
        source,
    })?;
    Ok((tokio::spawn(run.run(stop)), ready))
}

/// Records in a batch from which the run loop looks for the next batch on a timer (see
/// `KafkaRun::handle_batches`): the poll thread sends a smaller batch only when no more records
/// were ready.
const FLOWING: usize = 128;

/// How often a consumer sets its lag gauges.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// Sets `eventbus_consumer_lag{group, topic, partition}` every [`LAG_INTERVAL`] for the
/// partitions assigned to this member: the high watermark minus the group's committed offset (the
/// low watermark when the group has committed none), both asked of the broker on a blocking
/// thread. A partition no longer assigned here is set to 0 once.
async fn lag_gauges(consumer: Arc<BaseConsumer<RebalanceContext>>, group: String) {
    let mut tick = tokio::time::interval(LAG_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut before: Vec<(String, i32)> = Vec::new();
    loop {
        tick.tick().await;
        let asked = Arc::clone(&consumer);
        let Ok(lags) = tokio::task::spawn_blocking(move || lags(&*asked)).await else {
            continue;
        };
        let gauge = |topic: &str, partition: i32| {
            metrics::gauge!("eventbus_consumer_lag", "group" => group.clone(),
                "topic" => topic.to_owned(), "partition" => partition.to_string())
        };
        for (topic, partition) in &before {
            if !lags.iter().any(|(t, p, _)| t == topic && p == partition) {
                gauge(topic, *partition).set(0.0);
            }
        }
        for (topic, partition, lag) in &lags {
            gauge(topic, *partition).set(*lag as f64);
        }
        before = lags.into_iter().map(|(t, p, _)| (t, p)).collect();
    }
}

/// Of each partition assigned to `consumer`: its topic, its number, and how many records the
/// group has not committed yet.
fn lags<C: rdkafka::consumer::ConsumerContext>(
    consumer: &impl rdkafka::consumer::Consumer<C>,
) -> Vec<(String, i32, i64)> {
    let timeout = Duration::from_secs(2);
    let Ok(assigned) = consumer.assignment() else {
        return Vec::new();
    };
    if assigned.count() == 0 {
        return Vec::new();
    }
    let Ok(committed) = consumer.committed_offsets(assigned, timeout) else {
        return Vec::new();
    };
    committed
        .elements()
        .iter()
        .filter_map(|e| {
            let (low, high) = consumer
                .fetch_watermarks(e.topic(), e.partition(), timeout)
                .ok()?;
            let from = match e.offset() {
                Offset::Offset(o) => o,
                _ => low,
            };
            Some((e.topic().to_owned(), e.partition(), (high - from).max(0)))
        })
        .collect()
}

/// Stores the offsets now safe to commit (auto-commit sends them).
fn store<C: rdkafka::consumer::ConsumerContext>(
    consumer: &impl rdkafka::consumer::Consumer<C>,
    offsets: &Offsets,
) {
    let committable = offsets.take_committable();
    if committable.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, next) in committable {
        let _ = tpl.add_partition_offset(topic, partition, Offset::Offset(next));
    }
    let _ = consumer.store_offsets(&tpl);
}

struct Job {
    record: Result<Envelope, BadRecord>,
    topic: &'static str,
    partition: i32,
    offset: i64,
    /// The delivery's process span (`crate::trace`).
    span: tracing::Span,
}

/// What the fast path did with a record.
enum Inline {
    /// Handled (or skipped) at once.
    Done,
    /// It goes to its key's queue, as an envelope, with the attempt made so far.
    Queue(Option<FirstAttempt>),
}

/// Record headers, owned.
type RawHeaders = Vec<(String, Vec<u8>)>;

/// A record the consumer cannot take (see [`Verdict::Reject`]): kept whole for the dead-letter
/// topic.
struct BadRecord {
    error: String,
    headers: RawHeaders,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

impl BadRecord {
    /// Keeps `record` of `batch` whole for the dead-letter topic, with why it cannot be handled.
    fn of(batch: &batch::Batch, record: &batch::Copied, error: &DecodeError) -> Self {
        BadRecord {
            error: error.to_string(),
            headers: batch
                .headers(record)
                .map(|(name, value)| (String::from_utf8_lossy(name).into_owned(), value.to_vec()))
                .collect(),
            key: batch.key(record).map(<[u8]>::to_vec),
            payload: batch.payload(record).to_vec(),
        }
    }
}

/// When the record was produced (or appended, per the topic's setting), from its timestamp in
/// milliseconds: the time of an event that carries no `ce_time`.
fn timestamp_of(millis: Option<i64>) -> OffsetDateTime {
    millis
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .unwrap_or_else(OffsetDateTime::now_utc)
}

/// A key's queue: the topic's index among the subscribed ones, the partition, the key's hash.
/// Keys are hashed: two keys sharing a hash share a queue, which only costs parallelism.
type QueueId = (u32, i32, u64);

/// The records of one key waiting for its worker.
#[derive(Default)]
struct KeyQueue {
    /// Each with the fast path's attempt, when it made one.
    jobs: VecDeque<(Job, Option<FirstAttempt>)>,
    /// A worker is draining this queue.
    running: bool,
}

pub(super) struct KafkaRun {
    consumer: Arc<BaseConsumer<RebalanceContext>>,
    producer: FutureProducer,
    engine: Arc<Engine>,
    offsets: Arc<Offsets>,
    permits: Arc<Semaphore>,
    queues: Mutex<HashMap<QueueId, KeyQueue, FastHash>>,
    /// How many key queues exist: 0 lets the fast path skip the lock (only the run loop adds
    /// queues, so none can appear behind its back).
    queued: AtomicUsize,
    dead_letter_topic: Option<String>,
    /// The subscribed topics' names, so records refer to them without allocating.
    topics: Vec<&'static str>,
    /// The event types the typed handlers take (see [`RawAttributes::check_knowing`]).
    event_types: Vec<&'static str>,
    /// Records per inbox transaction (1: one at a time per key).
    batch: usize,
    /// Records the poll thread sent and this task has not handled yet (`batch.rs`).
    pending: Arc<AtomicUsize>,
    /// Batches this task emptied, for the poll thread to fill again.
    spare: batch::Spare,
}

impl KafkaRun {
    fn new(
        kafka: &KafkaConfig,
        group: &str,
        topics: &[&'static str],
        engine: Arc<Engine>,
        concurrency: usize,
        dead_letter_topic: Option<String>,
        assigned: watch::Sender<bool>,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let offsets = Arc::new(Offsets::default());
        let pending = Arc::new(AtomicUsize::new(0));
        let engine_batch = engine.batch_size();
        let mut event_types: Vec<&'static str> =
            engine.routes.iter().map(|r| r.event_type).collect();
        event_types.sort_unstable();
        event_types.dedup();
        let mut config = rdkafka::ClientConfig::new();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "true")
            // Topics appear when their first event is published: notice them within seconds,
            // not librdkafka's default five minutes.
            .set("topic.metadata.refresh.interval.ms", "2000")
            // When the prefetch queue is full (a consumer slower than the fetcher, the normal case
            // for handlers doing work), librdkafka's default postpones the next fetch by a whole
            // second, and the consumer idles once it has drained the queue: re-check after 1 ms.
            // No request is sent while the queue stays full, so this costs no broker traffic.
            .set("fetch.queue.backoff.ms", "1");
        let client = kafka.client_config();
        // The classic group protocol: a member that dies hands its partitions over within 6 s.
        // With `group.protocol=consumer` (KIP-848) the broker owns these timings.
        if client.get("group.protocol") != Some("consumer") {
            config
                .set("session.timeout.ms", "6000")
                .set("heartbeat.interval.ms", "500");
        }
        for (k, v) in client.config_map() {
            config.set(k, v);
        }
        let consumer: BaseConsumer<RebalanceContext> =
            config.create_with_context(RebalanceContext {
                offsets: Arc::clone(&offsets),
                pending: Arc::clone(&pending),
                assigned,
            })?;
        let producer = crate::kafka::producer(kafka).map_err(|e| match e {
            crate::error::StartError::Kafka { source, .. } => source,
            other => rdkafka::error::KafkaError::ClientCreation(other.to_string()),
        })?;
        // Ask for each topic once, as a producer: where topics are created on first use, this
        // creates it, so the group's first assignment covers every topic (no rebalance later).
        for topic in topics {
            let _ = producer
                .client()
                .fetch_metadata(Some(topic), Duration::from_secs(5));
        }
        consumer.subscribe(topics)?;
        for topic in topics {
            crate::dlq::register_topic(
                &dead_letter_topic
                    .clone()
                    .unwrap_or_else(|| format!("{topic}.dlq")),
            );
        }
        Ok(KafkaRun {
            consumer: Arc::new(consumer),
            producer,
            engine,
            offsets,
            permits: Arc::new(Semaphore::new(concurrency)),
            queues: Mutex::default(),
            queued: AtomicUsize::new(0),
            dead_letter_topic,
            topics: topics.to_vec(),
            event_types,
            batch: engine_batch.min(concurrency).max(1),
            pending,
            spare: batch::Spare::default(),
        })
    }

    async fn run(self, stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        // Offsets are stored in bulk every 20 ms, off the record path (auto-commit sends them),
        // and the lag gauges set every LAG_INTERVAL.
        let mut background = tokio::task::JoinSet::new();
        let flusher = Arc::clone(&this);
        background.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tick.tick().await;
                store(&*flusher.consumer, &flusher.offsets);
            }
        });
        background.spawn(lag_gauges(
            Arc::clone(&this.consumer),
            this.engine.group.clone(),
        ));
        // The poll thread copies the records into batches (`batch.rs`); this task handles them.
        let (sender, mut batches) = tokio::sync::mpsc::channel(batch::IN_FLIGHT);
        let poller = {
            let (run, stop) = (Arc::clone(&this), stop.clone());
            tokio::task::spawn_blocking(move || batch::poll_records(run, sender, stop))
        };
        // Workers live in this set: if this task is aborted (a crash), they die with it (and the
        // poll thread, its channel closed, ends too).
        let mut workers = tokio::task::JoinSet::new();
        this.handle_batches(&mut batches, &mut workers, stop).await;
        // Shutdown: the poll thread ends (at once when its channel is closed); the records in
        // work finish (bounded), then the offsets are committed.
        drop(batches);
        if let Err(e) = poller.await {
            tracing::error!(group = %this.engine.group, error = %e,
                "eventbus consumer: the poll thread failed; the consumer stops (its health says so)");
        }
        this.pending.store(0, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !this.offsets.idle() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        workers.abort_all();
        background.abort_all();
        store(&*this.consumer, &this.offsets);
        let _ = this.consumer.commit_consumer_state(CommitMode::Sync);
        this.consumer.unsubscribe();
    }

    /// Handles the poll thread's batches, in order, until `stop` turns true or the thread ends.
    async fn handle_batches(
        self: &Arc<Self>,
        batches: &mut tokio::sync::mpsc::Receiver<batch::Batch>,
        workers: &mut tokio::task::JoinSet<()>,
        mut stop: watch::Receiver<bool>,
    ) {
        use tokio::sync::mpsc::error::TryRecvError;
        let mut received = 0u32;
        // While records flow (the last batch was a large one), this task looks for the next batch
        // on a 1 ms timer instead of being woken by the poll thread. A thread woken by another at
        // every batch tends to be moved to its waker's core (the scheduler's wake-affinity), and
        // the two stages then share one core on a busy machine; a timer's wake-up leaves it where
        // it is. When a timer finds nothing, or records come a few at a time, the poll thread
        // wakes it (no added latency).
        let mut flowing = false;
        loop {
            let mut batch = match batches.try_recv() {
                Ok(batch) => batch,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) if flowing => {
                    flowing = false;
                    tokio::select! {
                        biased;
                        _ = stop.changed() => break,
                        () = tokio::time::sleep(Duration::from_millis(1)) => continue,
                    }
                }
                Err(TryRecvError::Empty) => tokio::select! {
                    biased;
                    _ = stop.changed() => break,
                    batch = batches.recv() => match batch {
                        Some(batch) => batch,
                        None => break,
                    },
                },
            };
            flowing = batch.len() >= FLOWING;
            let stopped = self
                .handle_batch(&batch, workers, &stop, &mut received)
                .await;
            self.pending.fetch_sub(batch.len(), Ordering::AcqRel);
            if stopped {
                break;
            }
            batch.clear();
            lock(&self.spare).push(batch);
            while workers.try_join_next().is_some() {}
        }
    }

    /// Handles the records of `batch`; true when `stop` turned true meanwhile (the rest is left:
    /// not committed, read again by the next owner).
    async fn handle_batch(
        self: &Arc<Self>,
        batch: &batch::Batch,
        workers: &mut tokio::task::JoinSet<()>,
        stop: &watch::Receiver<bool>,
        received: &mut u32,
    ) -> bool {
        let this = self;
        for copied in batch.records() {
            *received = received.wrapping_add(1);
            if received.is_multiple_of(1024) {
                // Records handled at once never make this task wait: give the runtime's other
                // tasks a turn (on a current-thread runtime they would starve). Every 1,024
                // records (about a millisecond): each yield can wake another worker.
                tokio::task::yield_now().await;
                while workers.try_join_next().is_some() {}
                if *stop.borrow() {
                    return true;
                }
            }
            // A record of a partition revoked since it was polled: its next owner reads it.
            let handle = batch.handle(copied);
            if !handle.current() {
                continue;
            }
            let (topic_index, partition, offset) =
                (copied.topic_index, copied.partition, copied.offset);
            let topic = this.topics[topic_index];
            let key = batch.key(copied);
            // One queue per key (per partition): in order within a key, in parallel across keys.
            // A record without a key has no order to keep: a queue of its own. With an inbox,
            // one queue per partition, handled in batches.
            let key_hash = if this.batch > 1 {
                0
            } else {
                key.map_or(offset as u64 ^ (1 << 63), fnv1a)
            };
            let queue_id = (topic_index as u32, partition, key_hash);
            // The verdict, once, before any handler runs: the fast path and the key queues act
            // on the same one.
            let raw = RawAttributes::read(batch.headers(copied));
            let payload = batch.payload(copied);
            let checked = if copied.headers_unreadable {
                Err(DecodeError::HeaderNameNotUtf8)
            } else {
                raw.check_knowing(&this.event_types)
                    .and_then(|a| key_of(key).map(|key| (a, key)))
            };
            // The delivery's span, from what the record says of itself.
            let span = |attributes: Option<(&Attributes<'_>, Option<&str>)>| {
                trace::process(trace::Delivered {
                    topic,
                    group: &this.engine.group,
                    partition: Some((partition, offset)),
                    id: attributes.map(|(a, _)| a.id),
                    key: attributes.and_then(|(_, key)| key),
                    trace: attributes.map_or((None, None), |(a, _)| (a.traceparent, a.tracestate)),
                })
            };
            let (record, first, span) = match checked {
                Err(error) => (Err(BadRecord::of(batch, copied, &error)), None, span(None)),
                Ok((attributes, key)) => match this.engine.judge(topic, &attributes) {
                    Verdict::Skip => {
                        this.engine.stats.skipped.add(1);
                        handle.advance(offset);
                        continue;
                    }
                    Verdict::Reject(error) => (
                        Err(BadRecord::of(batch, copied, &error)),
                        None,
                        span(Some((&attributes, key))),
                    ),
                    Verdict::Handle {
                        category,
                        version,
                        only,
                    } => {
                        let span = span(Some((&attributes, key)));
                        let first = match span.in_scope(|| this.inline(only, payload, queue_id)) {
                            Inline::Done => {
                                handle.advance(offset);
                                continue;
                            }
                            Inline::Queue(first) => first,
                        };
                        let defaults = Defaults {
                            category,
                            version,
                            time: timestamp_of(copied.timestamp_ms),
                        };
                        let envelope =
                            attributes.into_envelope(topic, key, &defaults, payload.to_vec());
                        (Ok(envelope), first, span)
                    }
                },
            };
            let job = Job {
                record,
                topic,
                partition,
                offset,
                span,
            };
            this.offsets.begin(topic, partition, offset);
            // The worker gives the permit back when the record is done.
            let Ok(permit) = this.permits.acquire().await else {
                return true;
            };
            permit.forget();
            // A key has at most one worker: it drains the key's queue, in order, then leaves.
            let start_worker = {
                let mut queues = lock(&this.queues);
                let queue = queues.entry(queue_id).or_insert_with(|| {
                    this.queued.fetch_add(1, Ordering::Release);
                    KeyQueue::default()
                });
                queue.jobs.push_back((job, first));
                !std::mem::replace(&mut queue.running, true)
            };
            if start_worker {
                // Poll the worker once here; one that waits (I/O, a retry) continues as a task,
                // polled anew by tokio.
                let mut work = Box::pin(Arc::clone(this).work(queue_id, stop.clone()));
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                if work.as_mut().poll(&mut cx).is_pending() {
                    workers.spawn(work);
                }
            }
        }
        false
    }
}
