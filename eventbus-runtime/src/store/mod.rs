//! The event store (features `postgres`/`sqlite`): event-sourced [`Aggregate`]s whose streams
//! live in the outbox's database, and whose appends publish through the outbox in the same
//! transaction. `docs/event-sourcing.md` states the guarantees.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | [`EventStore`]: migration, `append`, `append_in` |
//! | `read.rs` | [`EventStore`]'s reads: `read_stream`, `snapshot`, `load`, `read_all` |
//! | `aggregate.rs` | [`Aggregate`], [`Apply`], [`EventOf`], [`AggregateEvent`] (what `#[derive(Aggregate)]` implements) |
//! | `projection.rs` | [`Projection`], [`ProjectionRunner`]: catch-up subscriptions with a checkpoint moved in the projection's transaction |
//! | `transaction.rs` | [`StoreTransaction`]: the statements an append runs inside a transaction |
//!
//! The table is defined once in `eventbus_core::store` and rendered by `eventbus-codegen`
//! (`templates/store_*.sql`) into the shipped migrations (`migrations/store_*.sql`).
//!
//! - **Atomic.** `append` writes the events and their outbox rows (the rows `EventBus::enqueue`
//!   writes, with the same CloudEvents id) in one transaction: a stored event is published if and
//!   only if the append commits. `append_in` does it inside the caller's transaction.
//! - **Ordered.** Within a stream, versions 1, 2, … without a gap; the outbox rows are written in
//!   version order and keyed by the aggregate id, so Kafka keeps the stream's order. The global
//!   `position` follows commit order (PostgreSQL: appends to one store take a transaction-level
//!   advisory lock; SQLite has one writer), so a catch-up reader reading `position > last` misses
//!   nothing.
//! - **Optimistic concurrency.** An append names the version it expects; if another append won,
//!   it fails with [`AppendError::Conflict`], naming the winner's event.

use std::collections::BTreeMap;
use std::sync::Arc;

use sqlx::AssertSqlSafe;
use uuid::Uuid;

/// Runs `$query`, an expression on `$pool`, on the store's pool of whichever database it is:
/// sqlx's pools are of a type per database, so the query is written once and compiled for each.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $query:expr) => {
        match $db {
            #[cfg(feature = "postgres")]
            Db::Postgres($pool) => $query,
            #[cfg(feature = "sqlite")]
            Db::Sqlite($pool) => $query,
        }
    };
}

mod aggregate;
mod projection;
mod read;
mod transaction;

pub use aggregate::{Aggregate, AggregateEvent, Apply, EventOf, SnapshotPolicy};
#[doc(hidden)]
pub use aggregate::{
    Typed, assert_domain_event_of, decode, snapshot_decode, snapshot_encode, typed,
};
pub use projection::{
    DEFAULT_PROJECTION_BATCH, DEFAULT_PROJECTION_INTERVAL, Projection, ProjectionError,
    ProjectionRunner, ProjectionTx,
};
pub use transaction::StoreTransaction;

use crate::EventBus;
use crate::error::ConfigError;
pub use crate::error::{AppendError, LoadError};
use crate::event::{PartitionKey, Service};
use crate::outbox::{Db, Dialect, OutboxStore};
use read::{decode_rows, restore};
use transaction::{Statements, StoreRow};

/// `#[derive(Aggregate)]`: see [`Aggregate`].
#[cfg(feature = "derive")]
pub use eventbus_derive::Aggregate;

/// The default store name: its events live in `eventbus_store_events`.
pub const DEFAULT_STORE: &str = eventbus_core::store::DEFAULT_STORE;

const POSTGRES_DDL: &str = include_str!("../../migrations/store_postgres.sql");
const SQLITE_DDL: &str = include_str!("../../migrations/store_sqlite.sql");

/// The migration creating the event store `store` (its table `{store}_events`). Idempotent.
pub fn migration(dialect: Dialect, store: &str) -> Result<String, ConfigError> {
    check_store_name(store)?;
    let ddl = match dialect {
        Dialect::Postgres => POSTGRES_DDL,
        Dialect::Sqlite => SQLITE_DDL,
    };
    Ok(ddl.replace(DEFAULT_STORE, store))
}

fn check_store_name(store: &str) -> Result<(), ConfigError> {
    eventbus_core::outbox::check_table_name(store)
        .map_err(|problem| ConfigError::invalid("the event store name", problem))
}

/// The version an append expects the stream to be at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Whatever it is: append after the last event (no concurrency check).
    Any,
    /// No stream yet: the append creates it (version 0).
    NoStream,
    /// Exactly this version: the one the aggregate was loaded at.
    Exact(u64),
}

impl ExpectedVersion {
    /// The version, `None` for [`ExpectedVersion::Any`].
    pub fn version(self) -> Option<u64> {
        match self {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(v) => Some(v),
        }
    }
}

impl From<u64> for ExpectedVersion {
    /// `Exact(v)`; `0` is [`ExpectedVersion::NoStream`].
    fn from(v: u64) -> Self {
        if v == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(v)
        }
    }
}

/// What an append wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Appended {
    /// The stream's version after the append (the last event's).
    pub version: u64,
    /// Each event's id (its CloudEvents `id`, the outbox row's and the Kafka record's), in order.
    pub event_ids: Vec<Uuid>,
    /// Each event's global position, in order.
    pub positions: Vec<i64>,
}

/// A stored event of a known aggregate, decoded (and upcast).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Recorded<E> {
    /// The global position.
    pub position: i64,
    /// The version in its stream.
    pub version: u64,
    /// The CloudEvents id.
    pub event_id: Uuid,
    /// The schema version it was stored in (before an upcast).
    pub stored_schema_version: u32,
    /// The event, in the aggregate's current version.
    pub event: E,
}

/// A stored event, as a catch-up reader sees it (any aggregate, not decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredEvent {
    /// The global position: read again from `position` (exclusive) to catch up.
    pub position: i64,
    /// The aggregate type.
    pub stream_type: String,
    /// The aggregate id.
    pub stream_id: String,
    /// The version in its stream.
    pub version: u64,
    /// The CloudEvents id.
    pub event_id: Uuid,
    /// The CloudEvents type.
    pub event_type: String,
    /// The schema version.
    pub schema_version: u32,
    /// The CloudEvents attributes, as published (`ce_id`, `ce_source`, `ce_time`, …).
    pub headers: BTreeMap<String, String>,
    /// The payload (JSON).
    pub payload: Vec<u8>,
}

impl StoredEvent {
    /// Decodes it as an event of aggregate `A` (upcast when stored in an older version). `None`
    /// when it is not one of `A`'s events.
    pub fn decode<A: Aggregate>(&self) -> Option<Result<A::Event, serde_json::Error>> {
        if self.stream_type != A::TYPE {
            return None;
        }
        A::Event::__decode(&self.event_type, self.schema_version, &self.payload)
    }
}

/// The event store of service `S`, in the database of its bus's outbox.
///
/// ```no_run
/// # use eventbus::store::{Aggregate, EventStore, ExpectedVersion};
/// # async fn run<A: Aggregate<Service = S>, S: eventbus::Service>(bus: eventbus::EventBus<S>, id: uuid::Uuid, events: Vec<A::Event>) -> Result<(), Box<dyn std::error::Error>> {
/// let store = EventStore::new(&bus)?;
/// store.migrate().await?;
/// let (aggregate, version) = store.load::<A>(&id).await?;
/// // ... run a command on `aggregate`, which returns `events` ...
/// store.append::<A>(&id, version, &events).await?; // stored and published, or neither
/// # Ok(()) }
/// ```
pub struct EventStore<S: Service> {
    bus: EventBus<S>,
    outbox: OutboxStore,
    table: Arc<str>,
    sql: Arc<Statements>,
}

impl<S: Service> Clone for EventStore<S> {
    fn clone(&self) -> Self {
        EventStore {
            bus: self.bus.clone(),
            outbox: self.outbox.clone(),
            table: Arc::clone(&self.table),
            sql: Arc::clone(&self.sql),
        }
    }
}

impl<S: Service> std::fmt::Debug for EventStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore")
            .field("service", &S::NAME)
            .field("table", &self.table)
            .field("outbox", &self.outbox)
            .finish()
    }
}

impl<S: Service> EventStore<S> {
    /// The store [`DEFAULT_STORE`] in the database of `bus`'s outbox. `bus` must be in the
    /// Transactional mode: an append publishes through its outbox.
    pub fn new(bus: &EventBus<S>) -> Result<Self, ConfigError> {
        Self::named(bus, DEFAULT_STORE)
    }

    /// The store `store` (table `{store}_events`) in the database of `bus`'s outbox.
    pub fn named(bus: &EventBus<S>, store: &str) -> Result<Self, ConfigError> {
        check_store_name(store)?;
        let Some(outbox) = bus.outbox() else {
            return Err(ConfigError::invalid(
                "the event store",
                format!(
                    "needs a Transactional bus (its appends publish through the outbox, in the same transaction); this bus is in the {:?} mode",
                    bus.mode()
                ),
            ));
        };
        Ok(EventStore {
            bus: bus.clone(),
            outbox: outbox.clone(),
            table: eventbus_core::store::events_table(store).into(),
            sql: Arc::new(Statements::new(outbox.dialect(), store)),
        })
    }

    /// The events table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The database (the outbox's): begin the transactions of [`EventStore::append_in`] on it.
    pub fn database(&self) -> crate::Database {
        self.outbox.database()
    }

    /// Creates the tables (`{store}_events`, `_snapshots`, `_checkpoints`) if they do not exist.
    /// Safe to run from several processes at once.
    pub async fn migrate(&self) -> Result<(), sqlx::Error> {
        let store = self.table.strip_suffix("_events").unwrap_or(&self.table);
        let ddl = migration(self.outbox.dialect(), store)
            .map_err(|e| sqlx::Error::Configuration(Box::new(e)))?;
        match &self.outbox.db {
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7201604191)")
                    .execute(&mut *tx)
                    .await?;
                sqlx::raw_sql(AssertSqlSafe(ddl)).execute(&mut *tx).await?;
                tx.commit().await
            }
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => sqlx::raw_sql(AssertSqlSafe(ddl))
                .execute(pool)
                .await
                .map(|_| ()),
        }
    }

    fn db_error(&self, source: sqlx::Error) -> AppendError {
        AppendError::Database {
            table: self.table.to_string(),
            source,
        }
    }

    fn load_error(&self, source: sqlx::Error) -> LoadError {
        LoadError::Database {
            table: self.table.to_string(),
            source,
        }
    }

    /// Appends `events` to the stream of aggregate `A` with id `stream_id`, if it is at
    /// `expected`, in a transaction of its own, with their outbox rows: stored and published, or
    /// neither.
    pub async fn append<A>(
        &self,
        stream_id: &(impl PartitionKey + ?Sized),
        expected: impl Into<ExpectedVersion>,
        events: &[A::Event],
    ) -> Result<Appended, AppendError>
    where
        A: Aggregate<Service = S>,
    {
        let expected = expected.into();
        macro_rules! in_one_transaction {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await.map_err(|e| self.db_error(e))?;
                match self
                    .append_in::<A, _>(&mut tx, stream_id, expected, events)
                    .await
                {
                    Ok(appended) => {
                        tx.commit().await.map_err(|e| self.db_error(e))?;
                        Ok(appended)
                    }
                    Err(e) => {
                        let _ = tx.rollback().await;
                        Err(e)
                    }
                }
            }};
        }
        on_pool!(&self.outbox.db, pool => in_one_transaction!(pool))
    }

    /// Appends `events` inside the caller's transaction `tx` (begun on [`EventStore::database`]),
    /// with their outbox rows: they are stored and published if and only if `tx` commits. On
    /// error, roll `tx` back.
    pub async fn append_in<A, T>(
        &self,
        tx: &mut T,
        stream_id: &(impl PartitionKey + ?Sized),
        expected: impl Into<ExpectedVersion>,
        events: &[A::Event],
    ) -> Result<Appended, AppendError>
    where
        A: Aggregate<Service = S>,
        T: StoreTransaction,
    {
        let expected = expected.into();
        let stream = stream_id.partition_key().unwrap_or_default();
        if events.is_empty() {
            return Err(AppendError::NoEvents {
                stream_type: A::TYPE,
                stream_id: stream,
            });
        }
        if tx.dialect() != self.outbox.dialect() {
            return Err(AppendError::Publish(crate::PublishError::Invalid(format!(
                "the transaction is {:?} but the event store `{}` is {:?}: begin it on the store's database",
                tx.dialect(),
                self.table,
                self.outbox.dialect()
            ))));
        }
        // Build every envelope first: a serialization error writes nothing.
        let mut typed = Vec::with_capacity(events.len());
        for event in events {
            let found = event.stream_id();
            if found.as_deref() != Some(stream.as_str()) {
                return Err(AppendError::WrongStream {
                    stream_type: A::TYPE,
                    stream_id: stream,
                    event_type: event.event_type(),
                    found,
                });
            }
            typed.push(event.__typed(self.bus.context())?);
        }
        tx.lock(self.sql.lock_key)
            .await
            .map_err(|e| self.db_error(e))?;

        let conflict = |actual: u64, winner: Option<Uuid>| AppendError::Conflict {
            stream_type: A::TYPE,
            stream_id: stream.clone(),
            expected,
            actual,
            winner,
        };
        let mut appended = Appended {
            version: 0,
            event_ids: Vec::with_capacity(events.len()),
            positions: Vec::with_capacity(events.len()),
        };
        for (i, (event, t)) in events.iter().zip(&typed).enumerate() {
            let headers = crate::outbox::headers_json(&t.envelope);
            let row = StoreRow {
                stream_type: A::TYPE,
                stream_id: &stream,
                event_id: t.envelope.id,
                event_type: event.event_type(),
                schema_version: event.schema_version() as i32,
                headers: &headers,
                payload: &t.envelope.payload,
            };
            if i == 0 {
                let expected_db = expected.version().map(|v| v as i64);
                match tx
                    .append_first(&self.sql.append_first, row, expected_db)
                    .await
                {
                    Ok(Some((version, position))) => {
                        appended.version = version as u64;
                        appended.positions.push(position);
                    }
                    Ok(None) => {
                        let winner_version = expected.version().unwrap_or(0) as i64 + 1;
                        let (actual, winner) = tx
                            .head(&self.sql.head, A::TYPE, &stream, winner_version)
                            .await
                            .map_err(|e| self.db_error(e))?;
                        return Err(conflict(actual as u64, winner));
                    }
                    Err(e) if is_unique_violation(&e) => {
                        // A concurrent append took the version (a snapshot older than the
                        // winner's commit, as in REPEATABLE READ): it has committed, so read it
                        // outside this (possibly aborted) transaction.
                        let winner_version = expected.version().unwrap_or(0) as i64 + 1;
                        let (actual, winner) = self
                            .head_outside(A::TYPE, &stream, winner_version)
                            .await
                            .unwrap_or((0, None));
                        return Err(conflict(actual as u64, winner));
                    }
                    Err(e) => return Err(self.db_error(e)),
                }
            } else {
                appended.version += 1;
                let position = tx
                    .append_next(&self.sql.append_next, row, appended.version as i64)
                    .await
                    .map_err(|e| self.db_error(e))?;
                appended.positions.push(position);
            }
            appended.event_ids.push(t.envelope.id);
            self.bus.enqueue_built(tx, &t.envelope, t.generated).await?;
        }
        if let Some(policy) = A::SNAPSHOT {
            let before = appended.version - events.len() as u64;
            let every = policy.every.max(1);
            if appended.version / every > before / every {
                self.snapshot_in::<A, T>(tx, policy, &stream).await?;
            }
        }
        Ok(appended)
    }

    /// Writes the stream's snapshot at its version inside `tx`: the state rebuilt there (from
    /// the previous snapshot and the events after it, including the ones just appended).
    async fn snapshot_in<A, T>(
        &self,
        tx: &mut T,
        policy: SnapshotPolicy,
        stream: &str,
    ) -> Result<(), AppendError>
    where
        A: Aggregate<Service = S>,
        T: StoreTransaction,
    {
        let row = tx
            .snapshot_row(&self.sql.snapshot, A::TYPE, stream)
            .await
            .map_err(|e| self.db_error(e))?;
        let (mut aggregate, mut version) = restore::<A>(policy, row, stream).unwrap_or_default();
        let rows = tx
            .stream_rows(&self.sql.stream, A::TYPE, stream, version as i64)
            .await
            .map_err(|e| self.db_error(e))?;
        let recorded = match decode_rows::<A>(stream, rows) {
            Ok(recorded) => recorded,
            Err(e) => {
                tracing::warn!(error = %e, "eventbus: no snapshot taken: the stream does not load");
                return Ok(());
            }
        };
        for r in &recorded {
            aggregate.apply(&r.event);
            version = r.version;
        }
        let payload = match aggregate.__snapshot() {
            Some(Ok(payload)) => payload,
            Some(Err(e)) => {
                tracing::warn!(stream_type = A::TYPE, stream_id = stream, error = %e, "eventbus: no snapshot taken: the state does not serialize");
                return Ok(());
            }
            None => return Ok(()),
        };
        tx.save_snapshot(
            &self.sql.save_snapshot,
            A::TYPE,
            stream,
            version as i64,
            policy.version as i32,
            &payload,
        )
        .await
        .map_err(|e| self.db_error(e))
    }

    async fn head_outside(
        &self,
        stream_type: &str,
        stream_id: &str,
        winner_version: i64,
    ) -> Result<(i64, Option<Uuid>), sqlx::Error> {
        on_pool!(&self.outbox.db, pool => {
            sqlx::query_as(transaction::sql(&self.sql.head))
                .bind(stream_type)
                .bind(stream_id)
                .bind(winner_version)
                .fetch_one(pool)
                .await
        })
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}
