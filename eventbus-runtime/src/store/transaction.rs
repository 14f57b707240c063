//! The statements of one store, per dialect, and [`StoreTransaction`]: running them inside a
//! transaction (the store's own, or the caller's for `append_in`).

use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::BoxFuture;
use crate::outbox::{Dialect, OutboxTransaction};

/// Every statement is built from constants and a validated store name.
pub(super) fn sql(s: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(s.to_owned())
}

/// The statements of one store.
#[derive(Debug)]
pub(super) struct Statements {
    pub(super) append_first: String,
    pub(super) append_next: String,
    /// The stream's version and the event id at a version: binds type, id, version.
    pub(super) head: String,
    /// A stream's events after a version: binds type, id, version.
    pub(super) stream: String,
    pub(super) all: String,
    /// A stream's snapshot: binds type, id.
    pub(super) snapshot: String,
    pub(super) save_snapshot: String,
    /// Creates a projection's checkpoint at 0 if it has none: binds the projection.
    pub(super) checkpoint_init: String,
    /// A projection's checkpoint: binds the projection.
    pub(super) checkpoint: String,
    /// Moves a checkpoint: binds the projection, the position it is at, the new one.
    pub(super) checkpoint_advance: String,
    /// Sets a checkpoint: binds the projection, the position.
    pub(super) checkpoint_reset: String,
    /// The key of the advisory lock that orders a PostgreSQL store's appends.
    pub(super) lock_key: i64,
}

impl Statements {
    pub(super) fn new(dialect: Dialect, store: &str) -> Self {
        use eventbus_core::store::{
            advance_checkpoint, append_first, append_next, checkpoints_table, events_table,
            save_snapshot, snapshots_table,
        };
        let t = events_table(store);
        let snapshots = snapshots_table(store);
        let checkpoints = checkpoints_table(store);
        let p = |n| dialect.placeholder(n);
        let headers = match dialect {
            Dialect::Postgres => "headers::text",
            Dialect::Sqlite => "headers",
        };
        Statements {
            append_first: append_first(dialect, store),
            append_next: append_next(dialect, store),
            head: format!(
                "SELECT COALESCE(MAX(version), 0), \
                   (SELECT event_id FROM {t} WHERE stream_type = {p1} AND stream_id = {p2} AND version = {p3}) \
                 FROM {t} WHERE stream_type = {p1} AND stream_id = {p2}",
                p1 = p(1),
                p2 = p(2),
                p3 = p(3)
            ),
            stream: format!(
                "SELECT position, version, event_id, event_type, schema_version, payload FROM {t} \
                 WHERE stream_type = {} AND stream_id = {} AND version > {} ORDER BY version",
                p(1),
                p(2),
                p(3)
            ),
            all: format!(
                "SELECT position, stream_type, stream_id, version, event_id, event_type, schema_version, {headers}, payload \
                 FROM {t} WHERE position > {} ORDER BY position LIMIT {}",
                p(1),
                p(2)
            ),
            snapshot: format!(
                "SELECT version, snapshot_version, payload FROM {snapshots} \
                 WHERE stream_type = {} AND stream_id = {}",
                p(1),
                p(2)
            ),
            save_snapshot: save_snapshot(dialect, store),
            checkpoint_init: format!(
                "INSERT INTO {checkpoints} (projection, position) VALUES ({}, 0) ON CONFLICT DO NOTHING",
                p(1)
            ),
            checkpoint: format!(
                "SELECT position FROM {checkpoints} WHERE projection = {}",
                p(1)
            ),
            checkpoint_advance: advance_checkpoint(dialect, store),
            checkpoint_reset: format!(
                "UPDATE {checkpoints} SET position = {} WHERE projection = {}",
                p(2),
                p(1)
            ),
            lock_key: eventbus_core::fnv1a(format!("eventbus store {t}").as_bytes()) as i64,
        }
    }
}

/// A snapshot's row: version, snapshot version, payload.
#[doc(hidden)]
pub(super) type SnapshotRow = (i64, i32, Vec<u8>);

/// A stream's event: position, version, event id, type, schema version, payload.
#[doc(hidden)]
pub(super) type StreamRow = (i64, i64, Uuid, String, i32, Vec<u8>);

/// One event's row.
#[doc(hidden)]
#[derive(Debug)]
pub struct StoreRow<'a> {
    pub(super) stream_type: &'a str,
    pub(super) stream_id: &'a str,
    pub(super) event_id: Uuid,
    pub(super) event_type: &'a str,
    pub(super) schema_version: i32,
    pub(super) headers: &'a serde_json::Value,
    pub(super) payload: &'a [u8],
}

/// A transaction the event store can append in: `sqlx::Transaction` of PostgreSQL or SQLite
/// (also an [`OutboxTransaction`]: the events' outbox rows go into it too).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a transaction the event store can append in",
    note = "pass the sqlx transaction itself: `let mut tx = pool.begin().await?; store.append_in::<Order, _>(&mut tx, &id, version, &events).await?; tx.commit().await?;` (PostgreSQL or SQLite)"
)]
pub trait StoreTransaction: OutboxTransaction {
    /// Takes the store's append lock until the transaction ends (PostgreSQL; SQLite has one
    /// writer at a time anyway).
    #[doc(hidden)]
    fn lock(&mut self, key: i64) -> BoxFuture<'_, Result<(), sqlx::Error>>;

    /// Writes the first event if the stream is at `expected`: its version and position.
    #[doc(hidden)]
    fn append_first<'a>(
        &'a mut self,
        statement: &'a str,
        row: StoreRow<'a>,
        expected: Option<i64>,
    ) -> BoxFuture<'a, Result<Option<(i64, i64)>, sqlx::Error>>;

    /// Writes a next event at `version`: its position.
    #[doc(hidden)]
    fn append_next<'a>(
        &'a mut self,
        statement: &'a str,
        row: StoreRow<'a>,
        version: i64,
    ) -> BoxFuture<'a, Result<i64, sqlx::Error>>;

    /// A stream's snapshot row: version, snapshot version, payload.
    #[doc(hidden)]
    fn snapshot_row<'a>(
        &'a mut self,
        statement: &'a str,
        stream_type: &'a str,
        stream_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SnapshotRow>, sqlx::Error>>;

    /// A stream's events after `version`.
    #[doc(hidden)]
    fn stream_rows<'a>(
        &'a mut self,
        statement: &'a str,
        stream_type: &'a str,
        stream_id: &'a str,
        after: i64,
    ) -> BoxFuture<'a, Result<Vec<StreamRow>, sqlx::Error>>;

    /// Writes a stream's snapshot.
    #[doc(hidden)]
    fn save_snapshot<'a>(
        &'a mut self,
        statement: &'a str,
        stream_type: &'a str,
        stream_id: &'a str,
        version: i64,
        snapshot_version: i32,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), sqlx::Error>>;

    /// The stream's version, and the id of its event at `version`.
    #[doc(hidden)]
    fn head<'a>(
        &'a mut self,
        statement: &'a str,
        stream_type: &'a str,
        stream_id: &'a str,
        version: i64,
    ) -> BoxFuture<'a, Result<(i64, Option<Uuid>), sqlx::Error>>;
}

macro_rules! store_transaction {
    ($($feature:literal: $db:ident => $lock:expr),*) => {$(
        #[cfg(feature = $feature)]
        impl StoreTransaction for sqlx::Transaction<'_, sqlx::$db> {
            fn lock(&mut self, key: i64) -> BoxFuture<'_, Result<(), sqlx::Error>> {
                Box::pin(async move {
                    if let Some(statement) = $lock {
                        sqlx::query(statement).bind(key).execute(&mut **self).await?;
                    }
                    Ok(())
                })
            }

            fn append_first<'a>(
                &'a mut self,
                statement: &'a str,
                row: StoreRow<'a>,
                expected: Option<i64>,
            ) -> BoxFuture<'a, Result<Option<(i64, i64)>, sqlx::Error>> {
                Box::pin(async move {
                    sqlx::query_as(sql(statement))
                        .bind(row.stream_type)
                        .bind(row.stream_id)
                        .bind(row.event_id)
                        .bind(row.event_type)
                        .bind(row.schema_version)
                        .bind(sqlx::types::Json(row.headers))
                        .bind(row.payload)
                        .bind(expected)
                        .fetch_optional(&mut **self)
                        .await
                })
            }

            fn append_next<'a>(
                &'a mut self,
                statement: &'a str,
                row: StoreRow<'a>,
                version: i64,
            ) -> BoxFuture<'a, Result<i64, sqlx::Error>> {
                Box::pin(async move {
                    sqlx::query_scalar(sql(statement))
                        .bind(row.stream_type)
                        .bind(row.stream_id)
                        .bind(version)
                        .bind(row.event_id)
                        .bind(row.event_type)
                        .bind(row.schema_version)
                        .bind(sqlx::types::Json(row.headers))
                        .bind(row.payload)
                        .fetch_one(&mut **self)
                        .await
                })
            }

            fn snapshot_row<'a>(
                &'a mut self,
                statement: &'a str,
                stream_type: &'a str,
                stream_id: &'a str,
            ) -> BoxFuture<'a, Result<Option<SnapshotRow>, sqlx::Error>> {
                Box::pin(async move {
                    sqlx::query_as(sql(statement))
                        .bind(stream_type)
                        .bind(stream_id)
                        .fetch_optional(&mut **self)
                        .await
                })
            }

            fn stream_rows<'a>(
                &'a mut self,
                statement: &'a str,
                stream_type: &'a str,
                stream_id: &'a str,
                after: i64,
            ) -> BoxFuture<'a, Result<Vec<StreamRow>, sqlx::Error>> {
                Box::pin(async move {
                    sqlx::query_as(sql(statement))
                        .bind(stream_type)
                        .bind(stream_id)
                        .bind(after)
                        .fetch_all(&mut **self)
                        .await
                })
            }

            fn save_snapshot<'a>(
                &'a mut self,
                statement: &'a str,
                stream_type: &'a str,
                stream_id: &'a str,
                version: i64,
                snapshot_version: i32,
                payload: &'a [u8],
            ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
                Box::pin(async move {
                    sqlx::query(sql(statement))
                        .bind(stream_type)
                        .bind(stream_id)
                        .bind(version)
                        .bind(snapshot_version)
                        .bind(payload)
                        .execute(&mut **self)
                        .await
                        .map(|_| ())
                })
            }

            fn head<'a>(
                &'a mut self,
                statement: &'a str,
                stream_type: &'a str,
                stream_id: &'a str,
                version: i64,
            ) -> BoxFuture<'a, Result<(i64, Option<Uuid>), sqlx::Error>> {
                Box::pin(async move {
                    sqlx::query_as(sql(statement))
                        .bind(stream_type)
                        .bind(stream_id)
                        .bind(version)
                        .fetch_one(&mut **self)
                        .await
                })
            }
        }
    )*};
}

store_transaction!(
    "postgres": Postgres => Some("SELECT pg_advisory_xact_lock($1)"),
    "sqlite": Sqlite => None::<&'static str>
);
