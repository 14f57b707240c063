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
//!   to the dead table (and the DLQ topic, when configured). Nothing is dropped silently.
//! - **Shutdown** finishes the batch in hand, then releases its shards.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::Header;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sqlx::postgres::{PgConnection, PgListener};
use sqlx::{Connection, PgPool};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::{KafkaConfig, OutboxConfig};
use crate::error::{ConfigError, StartError};
use crate::metrics::Counted;
use crate::outbox::{Db, OutboxStore, PendingRow};

/// Counters a relay keeps; cheap to read at any time (also exported as
/// `eventbus_relay_*_total{table}`, see [`crate::metrics`]).
#[derive(Debug, Default)]
pub struct RelayStats {
    published: Counted,
    retried: Counted,
    dead: Counted,
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
            dead: counter("eventbus_relay_dead_total"),
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
    /// Events moved to the dead table.
    pub fn dead(&self) -> u64 {
        self.dead.get()
    }
    /// Batches sent.
    pub fn batches(&self) -> u64 {
        self.batches.get()
    }
}

/// Why a relay stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The relay task panicked or was aborted.
    #[error("the relay task ended abnormally: {0}")]
    Task(String),
}

/// The relay of one outbox.
pub struct Relay {
    store: OutboxStore,
    producer: FutureProducer,
    config: OutboxConfig,
    wake: Arc<Notify>,
    stats: Arc<RelayStats>,
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
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    stats: Arc<RelayStats>,
}

impl RelayHandle {
    /// The relay's counters.
    pub fn stats(&self) -> Arc<RelayStats> {
        Arc::clone(&self.stats)
    }

    /// Stops after the batch in hand, releasing the relay's shards.
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
        if config.table != *store.table {
            return Err(StartError::Config(ConfigError::invalid(
                "outbox table",
                format!(
                    "{:?} differs from the store's table {:?}: build both from one OutboxConfig",
                    config.table, store.table
                ),
            )));
        }
        Ok(Relay {
            producer: crate::kafka::producer(kafka)?,
            config,
            wake: Arc::new(Notify::new()),
            stats: Arc::new(RelayStats::new(&store.table)),
            store,
        })
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
        let (stop, stopped) = watch::channel(false);
        let stats = Arc::clone(&self.stats);
        let task = tokio::spawn(self.run(stopped));
        RelayHandle { stop, task, stats }
    }

    /// Runs until `stop` turns true. Database and broker errors are logged and retried with
    /// backoff: a relay outlives outages.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut shards = match &self.store.db {
            Db::Postgres(pool) => Ownership::Postgres(PgShards::new(pool.clone(), &self.config)),
            Db::Sqlite(_) => Ownership::All((0..self.config.shards as i32).collect()),
        };
        let mut listener = None;
        let mut idle = Duration::from_millis(1);
        let mut last_purge = Instant::now();
        // The outbox gauges: read at the first pass, then every 5 s.
        let mut last_gauges: Option<Instant> = None;
        let mut outage = 0u32;
        loop {
            if *stop.borrow() {
                break;
            }
            if let (Db::Postgres(pool), None) = (&self.store.db, &listener) {
                listener = listen(pool, &self.store.table).await;
            }
            let owned = match shards.refresh().await {
                Ok(owned) => owned,
                Err(e) => {
                    outage += 1;
                    tracing::warn!(error = %e, "eventbus relay: cannot own shards; retrying");
                    wait(&mut stop, self.config.backoff.delay(outage)).await;
                    continue;
                }
            };
            let sent = match self.drain(&owned).await {
                Ok(n) => {
                    outage = 0;
                    n
                }
                Err(e) => {
                    outage += 1;
                    tracing::warn!(error = %e, table = %self.store.table, "eventbus relay: outbox unavailable; retrying");
                    listener = None;
                    wait(&mut stop, self.config.backoff.delay(outage)).await;
                    continue;
                }
            };
            if last_gauges.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                last_gauges = Some(Instant::now());
                match self.store.backlog().await {
                    Ok(backlog) => crate::metrics::set_backlog(&self.store.table, &backlog),
                    Err(e) => {
                        tracing::debug!(error = %e, "eventbus relay: cannot read the backlog")
                    }
                }
            }
            if !self.config.retention.is_zero() && last_purge.elapsed() > Duration::from_secs(10) {
                last_purge = Instant::now();
                if let Err(e) = self.store.purge(self.config.retention).await {
                    tracing::warn!(error = %e, "eventbus relay: cannot purge sent rows");
                }
            }
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
                _ = stop.changed() => false,
            };
            idle = if woke {
                Duration::from_millis(1)
            } else {
                (idle * 2).min(self.config.poll_interval)
            };
        }
        let _ = self.producer.flush(Duration::from_secs(10));
        shards.release().await;
    }

    /// Publishes batches from `shards` until a batch comes back short; returns rows handled.
    ///
    /// While Kafka acknowledges one batch, the next is read (without the rows in flight), so the
    /// database and the broker work at the same time. At most [`MAX_PIPELINED`] batches per call,
    /// so the caller can rebalance shards and see a shutdown.
    pub async fn drain(&self, shards: &[i32]) -> Result<usize, sqlx::Error> {
        if shards.is_empty() {
            return Ok(0);
        }
        let batch = self.config.batch_size;
        let mut rows = self.store.fetch(shards, batch, &[]).await?;
        let mut total = 0;
        for round in 1..=MAX_PIPELINED {
            if rows.is_empty() {
                break;
            }
            total += rows.len();
            let read_next = rows.len() >= batch && round < MAX_PIPELINED;
            let in_flight: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let next = async {
                if read_next {
                    self.store.fetch(shards, batch, &in_flight).await
                } else {
                    Ok(Vec::new())
                }
            };
            let (failed_keys, next) = tokio::join!(self.send(&rows), next);
            let failed_keys = failed_keys?;
            rows = next?;
            // A key that failed in this batch holds back its rows of the next one.
            rows.retain(|r| r.key.as_ref().is_none_or(|k| !failed_keys.contains(k)));
        }
        Ok(total)
    }

    /// Sends one batch; marks what Kafka acknowledged, schedules or buries what it did not.
    /// Returns the keys that failed.
    async fn send(&self, rows: &[PendingRow]) -> Result<HashSet<String>, sqlx::Error> {
        let mut in_flight = Vec::with_capacity(rows.len());
        let mut failed: Vec<(&PendingRow, KafkaError)> = Vec::new();
        let mut blocked: HashSet<&str> = HashSet::new();
        for row in rows {
            if row.key.as_deref().is_some_and(|key| blocked.contains(key)) {
                continue; // an earlier row of this key failed: keep the order, retry later
            }
            let mut record = FutureRecord::to(&row.topic)
                .payload(row.payload.as_slice())
                .headers(crate::kafka::headers_from_json(&row.headers));
            if let Some(key) = row.key.as_deref() {
                record = record.key(key);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => in_flight.push((row, delivery)),
                Err((e, _)) => {
                    if let Some(key) = row.key.as_deref() {
                        blocked.insert(key);
                    }
                    failed.push((row, e));
                }
            }
        }
        let mut sent = Vec::with_capacity(in_flight.len());
        let mut rejected: Vec<(&PendingRow, KafkaError)> = Vec::new();
        for (row, delivery) in in_flight {
            match delivery.await {
                Ok(Ok(_)) => sent.push(row.id),
                Ok(Err((e, _))) => rejected.push((row, e)),
                Err(_) => rejected.push((row, KafkaError::Canceled)),
            }
        }
        // A broker rejects a whole record batch for one bad record (too large, say): send each
        // rejected row alone, in order, so only the culprit counts an attempt. A key whose row
        // fails here holds its later rows back, unattempted. (Outages are not isolated: every
        // row would wait out the timeout again.)
        if rejected.len() > 1 && rejected.iter().any(|(_, e)| !is_outage(e)) {
            for (row, _) in rejected {
                if row.key.as_deref().is_some_and(|key| blocked.contains(key)) {
                    continue;
                }
                match self.send_one(row).await {
                    Ok(()) => sent.push(row.id),
                    Err(error) => {
                        if let Some(key) = row.key.as_deref() {
                            blocked.insert(key);
                        }
                        failed.push((row, error));
                    }
                }
            }
        } else {
            failed.extend(rejected);
        }
        self.store
            .sent(&sent, !self.config.retention.is_zero())
            .await?;
        self.stats.published.add(sent.len() as u64);
        self.stats.batches.add(1);
        let failed_keys: HashSet<String> = failed
            .iter()
            .filter_map(|(row, _)| row.key.clone())
            .chain(blocked.iter().map(|k| (*k).to_owned()))
            .collect();
        for (row, error) in failed {
            // An outage (timeouts, brokers down) is not the event's fault: it is retried with
            // backoff for as long as it lasts, without using up the event's attempts.
            let outage = is_outage(&error);
            let error = error.to_string();
            let attempt = row.attempts as u32 + u32::from(!outage);
            if !outage && attempt >= self.config.max_attempts {
                tracing::error!(event_id = %row.event_id, topic = %row.topic, attempts = attempt, %error,
                    "eventbus relay: event moved to the dead table");
                self.dead_letter(row, &error).await;
                self.store.kill(row.id, &error).await?;
                self.stats.dead.add(1);
            } else {
                tracing::warn!(event_id = %row.event_id, topic = %row.topic, attempt, %error,
                    "eventbus relay: publish failed; will retry");
                self.store
                    .retry_later(
                        row.id,
                        &error,
                        self.config.backoff.delay(attempt.max(1)),
                        !outage,
                    )
                    .await?;
                self.stats.retried.add(1);
            }
        }
        Ok(failed_keys)
    }

    /// Sends one row and awaits its acknowledgement.
    async fn send_one(&self, row: &PendingRow) -> Result<(), KafkaError> {
        let mut record = FutureRecord::to(&row.topic)
            .payload(row.payload.as_slice())
            .headers(crate::kafka::headers_from_json(&row.headers));
        if let Some(key) = row.key.as_deref() {
            record = record.key(key);
        }
        self.producer
            .send(record, Duration::from_secs(0))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }

    /// Publishes a dead event to the DLQ topic, when one is configured; a failure here is logged
    /// (the row is in the dead table either way).
    async fn dead_letter(&self, row: &PendingRow, error: &str) {
        let Some(topic) = &self.config.dlq_topic else {
            return;
        };
        let headers = crate::kafka::headers_from_json(&row.headers)
            .insert(Header {
                key: "eventbus_original_topic",
                value: Some(row.topic.as_bytes()),
            })
            .insert(Header {
                key: "eventbus_error",
                value: Some(error.as_bytes()),
            });
        let mut record = FutureRecord::to(topic)
            .payload(row.payload.as_slice())
            .headers(headers);
        if let Some(key) = row.key.as_deref() {
            record = record.key(key);
        }
        if let Err((e, _)) = self.producer.send(record, Duration::from_secs(5)).await {
            tracing::error!(event_id = %row.event_id, dlq = %topic, error = %e, "eventbus relay: cannot publish to the DLQ topic");
        }
    }
}

/// True for failures of the path to Kafka rather than of the record.
fn is_outage(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(error, KafkaError::Canceled)
        || matches!(
            error.rdkafka_error_code(),
            Some(
                C::MessageTimedOut
                    | C::AllBrokersDown
                    | C::BrokerTransportFailure
                    | C::QueueFull
                    | C::RequestTimedOut
                    | C::NetworkException
                    | C::NotLeaderForPartition
                    | C::LeaderNotAvailable
                    | C::NotEnoughReplicas
                    | C::NotEnoughReplicasAfterAppend
                    | C::UnknownTopicOrPartition
            )
        )
}

async fn listen(pool: &PgPool, channel: &str) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(pool).await.ok()?;
    listener.listen(channel).await.ok()?;
    Some(listener)
}

async fn recv(listener: &mut Option<PgListener>) -> bool {
    match listener {
        Some(l) => {
            if l.recv().await.is_err() {
                *listener = None;
            }
            true
        }
        None => std::future::pending().await,
    }
}

async fn wait(stop: &mut watch::Receiver<bool>, delay: Duration) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        _ = stop.changed() => {}
    }
}

/// Which shards this relay publishes.
enum Ownership {
    /// Every shard (SQLite: one relay per database).
    All(Vec<i32>),
    /// Shards held through PostgreSQL advisory locks.
    Postgres(PgShards),
}

impl Ownership {
    async fn refresh(&mut self) -> Result<Vec<i32>, sqlx::Error> {
        match self {
            Ownership::All(all) => Ok(all.clone()),
            Ownership::Postgres(pg) => pg.refresh().await,
        }
    }

    async fn release(&mut self) {
        if let Ownership::Postgres(pg) = self {
            pg.release().await;
        }
    }
}

/// Batches one `drain` call sends back to back.
pub const MAX_PIPELINED: usize = 8;

/// The member lock's object id (shards use 0..shards).
const MEMBER: i32 = 1 << 20;
/// How often a relay rebalances.
const REBALANCE: Duration = Duration::from_millis(500);

/// Shard ownership through session advisory locks on one dedicated connection: if this process
/// dies, its connection closes and its shards are free for the others.
struct PgShards {
    pool: PgPool,
    conn: Option<PgConnection>,
    class: i32,
    shards: i32,
    owned: Vec<i32>,
    checked: Option<Instant>,
}

impl PgShards {
    fn new(pool: PgPool, config: &OutboxConfig) -> Self {
        // One lock class per table.
        let class =
            crate::outbox::shard_of(Some(&config.table), &uuid::Uuid::nil(), i32::MAX as u32);
        PgShards {
            pool,
            conn: None,
            class,
            shards: config.shards as i32,
            owned: Vec::new(),
            checked: None,
        }
    }

    async fn refresh(&mut self) -> Result<Vec<i32>, sqlx::Error> {
        if self.checked.is_some_and(|t| t.elapsed() < REBALANCE) && self.conn.is_some() {
            return Ok(self.owned.clone());
        }
        self.checked = Some(Instant::now());
        match self.rebalance().await {
            Ok(()) => Ok(self.owned.clone()),
            Err(e) => {
                // The lock connection is gone or broken: so are our locks.
                self.conn = None;
                self.owned.clear();
                Err(e)
            }
        }
    }

    async fn rebalance(&mut self) -> Result<(), sqlx::Error> {
        if self.conn.is_none() {
            let mut conn = self.pool.acquire().await?.detach();
            sqlx::query("SELECT pg_advisory_lock_shared($1, $2)")
                .bind(self.class)
                .bind(MEMBER)
                .execute(&mut conn)
                .await?;
            self.conn = Some(conn);
            self.owned.clear();
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let members: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = ($1::int)::oid \
             AND objid = ($2::int)::oid AND objsubid = 2 AND granted",
        )
        .bind(self.class)
        .bind(MEMBER)
        .fetch_one(&mut *conn)
        .await?;
        let fair = ((self.shards as i64 + members.max(1) - 1) / members.max(1)) as usize;
        while self.owned.len() > fair {
            if let Some(shard) = self.owned.pop() {
                sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                    .bind(self.class)
                    .bind(shard)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        if self.owned.len() < fair {
            for shard in 0..self.shards {
                if self.owned.len() >= fair {
                    break;
                }
                if self.owned.contains(&shard) {
                    continue;
                }
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                    .bind(self.class)
                    .bind(shard)
                    .fetch_one(&mut *conn)
                    .await?;
                if got {
                    self.owned.push(shard);
                }
            }
            self.owned.sort_unstable();
        }
        Ok(())
    }

    async fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Closing the session releases every advisory lock it holds.
            let _ = conn.close().await;
        }
        self.owned.clear();
    }
}
