//! The relay: reads the outbox in commit order and publishes to Kafka (AD-001, AD-006).
//!
//! - **Order per key = commit order**: see [`crate::outbox`]'s fetch statement; a key whose
//!   earlier row failed waits for it, other keys flow.
//! - **Scale out** (PostgreSQL): rows carry `shard = hash(key) mod shards`; each relay holds a
//!   session advisory lock per shard it owns and a shared "member" lock, and rebalances to its
//!   fair share, so any number of relays split the work with no double ownership.
//! - **Low latency**: LISTEN/NOTIFY (PostgreSQL) or an in-process notify (SQLite) wakes it; the
//!   poll interval is the fallback.
//! - **Failures**: exponential backoff with jitter and a cap; after `max_attempts` the row moves
//!   to the dead table (and the dead-letter topic, when configured). Nothing is dropped silently.
//! - **Shutdown** finishes the batches in hand, then releases its shards, within
//!   [`SHUTDOWN_GRACE`] + 2 × [`CLOSE_BUDGET`] (2.5 s) of the request, whatever the broker and the
//!   database do; what is not acknowledged by then stays in the outbox (`watch.rs`).
//! - **Logs**: an outage of Kafka or the database is logged once when it begins and once when it
//!   ends; a metadata probe tells an idle relay whether Kafka is reachable (`watch.rs`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

mod send;
mod shards;
mod watch;

use crate::config::{KafkaConfig, OutboxConfig};
use crate::dlq::{DeadLetterHook, DeadLettered, ErrorClass};
use crate::error::{ConfigError, RelayError, StartError};
use crate::metrics::{ByClass, Counted};
use crate::outbox::{Db, Dialect, OutboxStore, Resume};
use shards::Ownership;
pub use watch::{CLOSE_BUDGET, SHUTDOWN_GRACE};
use watch::{Dependency, SharedDependency, Stop};

/// Counters a relay keeps; cheap to read at any time.
///
/// Also exported through the `metrics` facade, labelled `table`:
///
/// | metric | what |
/// |---|---|
/// | `eventbus_relay_published_total` | events the relay got acknowledged |
/// | `eventbus_relay_retried_total` | failed sends to be retried |
/// | `eventbus_relay_dead_lettered_total` | events moved to the dead table (and the dead-letter topic); also labelled `class` ([`ErrorClass`]) |
/// | `eventbus_relay_batches_total` | batches sent |
///
/// Every 5 s the relay also sets the dead table's gauges, `eventbus_dead_letters{table, class}`
/// and `eventbus_dead_letter_oldest_age_seconds{table, class}`, with the outbox gauges.
#[derive(Debug, Default)]
pub struct RelayStats {
    published: Counted,
    retried: Counted,
    dead_lettered: ByClass,
    batches: Counted,
}

impl RelayStats {
    /// The counters of the relay of outbox `table`, exported with its name.
    fn new(table: &str) -> Self {
        let counter =
            |name: &'static str| Counted::new(metrics::counter!(name, "table" => table.to_owned()));
        RelayStats {
            published: counter("eventbus_relay_published_total"),
            retried: counter("eventbus_relay_retried_total"),
            dead_lettered: ByClass::new("eventbus_relay_dead_lettered_total", ("table", table)),
            batches: counter("eventbus_relay_batches_total"),
        }
    }
}

impl RelayStats {
    /// Events acknowledged by Kafka.
    pub fn published(&self) -> u64 {
        self.published.get()
    }
    /// Failed attempts that will be retried.
    pub fn retried(&self) -> u64 {
        self.retried.get()
    }
    /// Events dead-lettered: moved to the dead table (and to the dead-letter topic, when one is
    /// configured).
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.get()
    }
    /// Events dead-lettered for errors of `class`.
    pub fn dead_lettered_by(&self, class: ErrorClass) -> u64 {
        self.dead_lettered.of(class)
    }
    /// Batches sent.
    pub fn batches(&self) -> u64 {
        self.batches.get()
    }
}

/// The relay of one outbox.
pub struct Relay {
    store: OutboxStore,
    /// The store on the relay's read sessions ([`OutboxStore::relay_reader`]), made at the
    /// first read (its pool needs the runtime): the reads and the deletes of sent rows.
    reader: std::sync::OnceLock<OutboxStore>,
    producer: FutureProducer,
    /// The bootstrap servers, for messages.
    servers: String,
    config: OutboxConfig,
    wake: Arc<Notify>,
    stats: Arc<RelayStats>,
    /// Called once per dead letter ([`Relay::on_dead_letter`]).
    on_dead_letter: Option<DeadLetterHook>,
    /// The service named in the notifications ([`Relay::service`]).
    service: Option<String>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A running relay.
#[derive(Debug)]
pub struct RelayHandle {
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
    stats: Arc<RelayStats>,
}

impl RelayHandle {
    /// The relay's counters.
    pub fn stats(&self) -> Arc<RelayStats> {
        Arc::clone(&self.stats)
    }

    /// Stops after the batches in hand, releasing the relay's shards: returns within
    /// [`SHUTDOWN_GRACE`] + 2 × [`CLOSE_BUDGET`] (2.5 s), even with the broker or the database
    /// gone (rows not acknowledged by then stay in the outbox, for the next relay).
    pub async fn shutdown(self) -> Result<Arc<RelayStats>, RelayError> {
        let _ = self.stop.send(true);
        self.task
            .await
            .map_err(|e| RelayError::Task(e.to_string()))?;
        Ok(self.stats)
    }

    /// Kills the relay at once, as a crash would (tests use this): rows it sent but had not yet
    /// marked are sent again by whoever owns their shard next.
    pub fn abort(self) {
        self.task.abort();
    }
}

impl Relay {
    /// A relay for `store`, publishing with an idempotent producer to `kafka`.
    pub fn new(
        store: OutboxStore,
        kafka: &KafkaConfig,
        config: OutboxConfig,
    ) -> Result<Self, StartError> {
        config.validate()?;
        if config.table != store.table() {
            return Err(StartError::Config(ConfigError::invalid(
                "outbox.table",
                format!(
                    "{:?} differs from the store's table {:?}: build both from one OutboxConfig",
                    config.table,
                    store.table()
                ),
            )));
        }
        if let Some(topic) = &config.dead_letter_topic {
            crate::dlq::register_topic(topic);
        }
        Ok(Relay {
            producer: crate::kafka::relay_producer(kafka)?,
            servers: kafka.bootstrap_servers.join(","),
            config,
            wake: Arc::new(Notify::new()),
            stats: Arc::new(RelayStats::new(store.table())),
            on_dead_letter: None,
            service: None,
            reader: std::sync::OnceLock::new(),
            store,
        })
    }

    /// Calls `hook` once for each event this relay dead-letters, before its [`DeadLettered`]
    /// notification is published (for alerting in process; keep it quick: the relay waits).
    pub fn on_dead_letter(mut self, hook: impl Fn(&DeadLettered) + Send + Sync + 'static) -> Self {
        self.on_dead_letter = Some(Arc::new(hook));
        self
    }

    /// Names the service this relay works for in its notifications ([`DeadLettered::service`]);
    /// a bus sets its own for its in-process relay.
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = Some(name.into());
        self
    }

    /// Uses `hook`, if any (the bus builder's).
    pub(crate) fn with_hook(mut self, hook: Option<DeadLetterHook>) -> Self {
        if hook.is_some() {
            self.on_dead_letter = hook;
        }
        self
    }

    /// The notifier that wakes this relay (the bus notifies it after each SQLite enqueue).
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Uses `wake` to be woken (shared with a bus).
    pub(crate) fn with_waker(mut self, wake: Arc<Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// Runs the relay as a tokio task.
    pub fn spawn(self) -> RelayHandle {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let stats = Arc::clone(&self.stats);
        let task = tokio::spawn(self.run(stopped));
        RelayHandle { stop, task, stats }
    }

    /// Runs until `stop` turns true. Database and broker errors are retried with backoff: a relay
    /// outlives outages. Each outage is logged once when it begins and once when it ends (see
    /// `watch.rs`); while Kafka is idle, a metadata request every few seconds tells whether it is
    /// reachable.
    ///
    /// Once `stop` turns true the relay stops within [`SHUTDOWN_GRACE`] + 2 × [`CLOSE_BUDGET`]:
    /// the batches in hand get [`SHUTDOWN_GRACE`] to be acknowledged (what is not stays in the
    /// outbox and is sent again by the next owner of its shard), then the producer is flushed and
    /// the shards released, each within [`CLOSE_BUDGET`].
    pub async fn run(self, stop: tokio::sync::watch::Receiver<bool>) {
        let mut stop = Stop::new(stop);
        let mut shards = Ownership::of(&self.store.db, &self.config);
        let mut listener: Option<Listener> = None;
        let mut idle = Duration::from_millis(1);
        let mut last_purge = Instant::now();
        // The outbox gauges: read at the first pass, then every 5 s.
        let mut last_gauges: Option<Instant> = None;
        // The dead table's classes whose gauges were set last time.
        let mut dead_classes = std::collections::BTreeSet::new();
        let mut outage = 0u32;
        let kafka: SharedDependency = Arc::new(std::sync::Mutex::new(Dependency::new(format!(
            "Kafka at {}",
            self.servers
        ))));
        let mut database = Dependency::new(format!(
            "the outbox database (table `{}`)",
            self.store.table()
        ));
        let probe = tokio::spawn(watch::probe_kafka(
            self.producer.clone(),
            Arc::clone(&kafka),
            stop.clone(),
        ));
        loop {
            if stop.requested() {
                break;
            }
            #[cfg(feature = "postgres")]
            if let (Db::Postgres(pool), None) = (&self.store.db, &listener) {
                listener = match stop.bounded(listen(pool, self.store.table())).await {
                    Some(l) => l,
                    None => break,
                };
            }
            let owned = match stop.bounded(shards.refresh()).await {
                None => break,
                Some(Ok(owned)) => owned,
                Some(Err(e)) => {
                    outage += 1;
                    database.down(&e.to_string(), "the relay retries with backoff");
                    stop.sleep(self.config.backoff.delay(outage)).await;
                    continue;
                }
            };
            let drained = match stop.bounded(self.drain_batches(&owned)).await {
                None => break,
                Some(Ok(drained)) => {
                    outage = 0;
                    database.up();
                    drained
                }
                Some(Err(e)) => {
                    outage += 1;
                    database.down(&e.to_string(), "the relay retries with backoff");
                    listener = None;
                    stop.sleep(self.config.backoff.delay(outage)).await;
                    continue;
                }
            };
            match &drained.outage {
                Some(error) => crate::lock(&kafka).down(error, watch::KAFKA_DOWN),
                None if drained.acknowledged > 0 => crate::lock(&kafka).up(),
                None => {}
            }
            if last_gauges.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                last_gauges = Some(Instant::now());
                match stop.bounded(self.store.backlog()).await {
                    None => break,
                    Some(Ok(backlog)) => {
                        crate::metrics::set_backlog(self.store.table(), &backlog);
                        // Drained: give a burst's disk space back (PostgreSQL; see `compact`).
                        if backlog.pending == 0 && self.config.retention.is_zero() {
                            match stop
                                .bounded(self.store.compact(self.config.compact_above_bytes))
                                .await
                            {
                                None => break,
                                Some(Ok(Some(freed))) => tracing::info!(
                                    freed_bytes = freed,
                                    "eventbus relay: the drained outbox table `{}` was truncated to give its space back",
                                    self.store.table()
                                ),
                                Some(Ok(None)) => {}
                                Some(Err(e)) => tracing::debug!(error = %e,
                                    "eventbus relay: cannot compact the outbox table"),
                            }
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "eventbus relay: cannot read the backlog")
                    }
                }
                match stop.bounded(self.store.dead_counts()).await {
                    None => break,
                    Some(Ok(counts)) => crate::metrics::set_dead_letters(
                        ("table", self.store.table()),
                        &counts,
                        &mut dead_classes,
                    ),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "eventbus relay: cannot count the dead table")
                    }
                }
            }
            if !self.config.retention.is_zero() && last_purge.elapsed() > Duration::from_secs(10) {
                last_purge = Instant::now();
                match stop.bounded(self.store.purge(self.config.retention)).await {
                    None => break,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "eventbus relay: cannot purge sent rows")
                    }
                    Some(Ok(_)) => {}
                }
            }
            let sent = drained.rows;
            if sent >= self.config.batch_size {
                idle = Duration::from_millis(1);
                continue;
            }
            if sent > 0 {
                idle = Duration::from_millis(1);
            }
            // Wait for a notification, the idle backoff (rows may be committed just after a
            // wake), or shutdown.
            let timeout = idle.min(self.config.poll_interval);
            let woke = tokio::select! {
                () = self.wake.notified() => true,
                n = recv(&mut listener) => n,
                () = tokio::time::sleep(timeout) => false,
                () = stop.asked() => false,
            };
            idle = if woke {
                Duration::from_millis(1)
            } else {
                (idle * 2).min(self.config.poll_interval)
            };
        }
        probe.abort();
        self.close(shards).await;
    }

    /// After the run: flushes what is in flight and releases the shards, each within
    /// [`CLOSE_BUDGET`]; what is still queued for an unreachable broker is dropped (its rows are
    /// still pending in the outbox).
    async fn close(self, mut shards: Ownership) {
        use rdkafka::producer::PurgeConfig;
        let producer = self.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || {
            if producer.in_flight_count() > 0 {
                let _ = producer.flush(CLOSE_BUDGET);
            }
            producer.purge(PurgeConfig::default().queue().inflight());
        });
        let _ = tokio::time::timeout(CLOSE_BUDGET * 2, flushed).await;
        if tokio::time::timeout(CLOSE_BUDGET, shards.release())
            .await
            .is_err()
        {
            tracing::debug!(
                "eventbus relay: the shards' lock session did not close in time; dropping it releases them"
            );
        }
    }

    /// The store on the relay's own sessions (reads and deletes), made at first use.
    fn reader(&self) -> &OutboxStore {
        self.reader.get_or_init(|| self.store.relay_reader())
    }

    /// Publishes batches from `shards` until a batch comes back short; returns rows handled.
    ///
    /// While Kafka acknowledges one batch, the next is already in the producer's queue and the one
    /// after it is read (without the rows in flight), so the database and the broker work at the
    /// same time. At most [`MAX_PIPELINED`] batches per call, so the caller can rebalance shards
    /// and see a shutdown.
    pub async fn drain(&self, shards: &[i32]) -> Result<usize, sqlx::Error> {
        self.drain_batches(shards).await.map(|d| d.rows)
    }

    /// [`Relay::drain`], with what it learnt about Kafka.
    ///
    /// Two batches are in hand at a time: batch k+1 is handed to the producer as soon as it is
    /// read, while batch k's acknowledgements are still coming, so the producer's queue never
    /// runs dry between batches (the raw producer's pace). While they come, batch k+2 is read
    /// and batch k−1's acknowledged rows are deleted.
    ///
    /// A key with a row that failed holds back its later rows for the rest of the drain: at once
    /// when the producer refused the row, and from the next batch read when the broker rejected
    /// it. Rows of that key already handed to the producer behind it (in its batch or the next)
    /// are not called back (see "Failures" in docs/outbox.md).
    async fn drain_batches(&self, shards: &[i32]) -> Result<Drained, sqlx::Error> {
        let mut drained = Drained::default();
        if shards.is_empty() {
            return Ok(drained);
        }
        let batch = self.config.batch_size;
        let reader = self.reader();
        let mut resume = Resume::default();
        let mut rows = reader.fetch(shards, batch, &mut resume).await?;
        // The batch handed to the producer last round, its acknowledgements not yet awaited.
        let mut queued: Option<(send::Queued, tracing::Span)> = None;
        for round in 1..=MAX_PIPELINED {
            if rows.is_empty() {
                break;
            }
            drained.rows += rows.len();
            // SQLite's read leaves out the ids in flight; PostgreSQL's resumes past them
            // (`Resume`): none in flight or not yet marked sent comes back.
            if reader.dialect() == Dialect::Sqlite {
                resume.in_flight.clear();
                resume.in_flight.extend(
                    rows.iter()
                        .map(|r| r.id)
                        .chain(queued.iter().flat_map(|(q, _)| q.ids()))
                        .chain(drained.to_mark.iter().copied()),
                );
            }
            let span = crate::trace::relay_batch(self.store.table(), rows.len());
            if !span.is_disabled() {
                for row in &rows {
                    crate::trace::link_row(&span, &row.headers);
                }
            }
            // The batch goes to the producer on the blocking pool: building its records is the
            // relay's one long stretch of CPU, and the runtime's threads meanwhile take the next
            // read's rows off the socket, the acknowledgements and the deletes.
            let producing = {
                let producer = self.producer.clone();
                let mut blocked = std::mem::take(&mut drained.blocked);
                let span = span.clone();
                tokio::task::spawn_blocking(move || {
                    let queued = span.in_scope(|| send::produce(&producer, rows, &mut blocked));
                    (queued, blocked)
                })
            };
            // The next batch is read while Kafka acknowledges, full or not: at a low rate, an
            // event committed now goes out right after this batch instead of waiting for its
            // acknowledgements and a new read (the relay's share of commit-to-ack). On a task of
            // its own, so decoding the rows runs beside the acknowledgements.
            let next = (round < MAX_PIPELINED && !resume.last).then(|| {
                let mut resume = std::mem::take(&mut resume);
                let reader = reader.clone();
                let shards = shards.to_vec();
                tokio::spawn(async move {
                    let rows = reader.fetch(&shards, batch, &mut resume).await;
                    (rows, resume)
                })
            });
            let next = async {
                match next {
                    Some(task) => task
                        .await
                        .map(|(rows, resume)| (rows, Some(resume)))
                        .map_err(|_| sqlx::Error::WorkerCrashed),
                    None => Ok((Ok(Vec::new()), None)),
                }
            };
            // Batch k−1's acknowledgements, batch k+1's read, and the deletes of what Kafka
            // acknowledged before, all while batch k goes to the producer.
            let settled = self.settle_queued(queued.take());
            let marked = self.mark_sent(std::mem::take(&mut drained.to_mark));
            let (settled, next, marked, produced) = tokio::join!(settled, next, marked, producing);
            let (produced, kept) = produced.map_err(|_| sqlx::Error::WorkerCrashed)?;
            drained.blocked = kept;
            queued = Some((produced, span));
            marked?;
            let (next, resumed) = next?;
            if let Some(resumed) = resumed {
                resume = resumed;
            }
            rows = next?;
            if let Some(sent) = settled? {
                drained.count(sent, &mut resume);
            }
        }
        if let Some(sent) = self.settle_queued(queued).await? {
            drained.count(sent, &mut resume);
        }
        self.mark_sent(std::mem::take(&mut drained.to_mark)).await?;
        Ok(drained)
    }

    /// Awaits the acknowledgements of the batch in `queued`, if any, in its span.
    async fn settle_queued(
        &self,
        queued: Option<(send::Queued, tracing::Span)>,
    ) -> Result<Option<send::Sent>, sqlx::Error> {
        let Some((queued, span)) = queued else {
            return Ok(None);
        };
        let sent = self.settle(queued).instrument(span.clone()).await?;
        span.record("eventbus.relay.acknowledged", sent.acknowledged.len());
        Ok(Some(sent))
    }
}

/// What one [`Relay::drain_batches`] did, and its running account.
#[derive(Debug, Default)]
struct Drained {
    /// Rows handled (sent, retried or buried).
    rows: usize,
    /// Rows Kafka acknowledged.
    acknowledged: usize,
    /// The last error that says Kafka cannot be reached, if any.
    outage: Option<String>,
    /// The rows Kafka acknowledged and not yet deleted (or marked): that happens while the next
    /// batches go out, off the path from one batch to the next.
    to_mark: Vec<i64>,
    /// Keys whose rows wait for the next drain (a row of theirs failed in this one).
    blocked: HashSet<String>,
}

impl Drained {
    /// Takes a settled batch into the account: its acknowledged rows to be marked, its failed
    /// keys held back for the rest of the drain.
    fn count(&mut self, sent: send::Sent, resume: &mut Resume) {
        self.acknowledged += sent.acknowledged.len();
        self.to_mark.extend(sent.acknowledged);
        if sent.outage.is_some() {
            self.outage = sent.outage;
        }
        for key in sent.failed_keys {
            self.blocked.insert(key.clone());
            resume.held.insert(key);
        }
    }
}

/// The notifications of the outbox's trigger (PostgreSQL).
#[cfg(feature = "postgres")]
type Listener = sqlx::postgres::PgListener;
/// SQLite has no notifications (an in-process notify wakes the relay instead).
#[cfg(not(feature = "postgres"))]
type Listener = std::convert::Infallible;

#[cfg(feature = "postgres")]
async fn listen(pool: &sqlx::PgPool, channel: &str) -> Option<Listener> {
    let mut listener = Listener::connect_with(pool).await.ok()?;
    listener.listen(channel).await.ok()?;
    Some(listener)
}

/// Waits for a notification; true when one came (or the listener broke: read anyway).
async fn recv(listener: &mut Option<Listener>) -> bool {
    match listener {
        #[cfg(feature = "postgres")]
        Some(l) => {
            if l.recv().await.is_err() {
                *listener = None;
            }
            true
        }
        #[cfg(not(feature = "postgres"))]
        Some(never) => match *never {},
        None => std::future::pending().await,
    }
}

/// Batches one `drain` call sends back to back.
pub const MAX_PIPELINED: usize = 32;
