//! The transactional outbox (AD-001, AD-003): tables, migrations, and the statements the bus and
//! the relay run, for PostgreSQL and SQLite.
//!
//! A row is written by `EventBus::enqueue` inside the caller's transaction, with the statement the
//! derive generated (`Event::OUTBOX_INSERT_POSTGRES` / `_SQLITE`); the relay reads rows in commit
//! order, publishes them, and deletes them (or marks them sent, with a retention). After
//! `max_attempts` a row moves to `{table}_dead`, from which it can be replayed.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{AssertSqlSafe, PgPool, Postgres, Row, Sqlite, SqlitePool};
use uuid::Uuid;

use crate::envelope::Envelope;
use crate::error::ConfigError;
use crate::publisher::BoxFuture;

/// The SQL dialects the outbox speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL 13 or newer.
    Postgres,
    /// SQLite 3.35 or newer.
    Sqlite,
}

const DEFAULT_TABLE: &str = "eventbus_outbox";
const POSTGRES_DDL: &str = include_str!("../migrations/postgres.sql");
const SQLITE_DDL: &str = include_str!("../migrations/sqlite.sql");

/// Checks an outbox table name: a lower-case SQL identifier, so it needs no quoting in any
/// dialect, and short enough for PostgreSQL (63 bytes, with `_dead` and index suffixes).
pub fn check_table_name(name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            "outbox table",
            format!(
                "{name:?} is not a plain SQL identifier: use 1 to 40 characters of `a-z`, `0-9` and `_`, not starting with a digit"
            ),
        ))
    }
}

/// The migration creating the outbox, the dead table, their indexes and (PostgreSQL) the
/// notification trigger, for `table`. Idempotent.
pub fn migration(dialect: Dialect, table: &str) -> Result<String, ConfigError> {
    check_table_name(table)?;
    let ddl = match dialect {
        Dialect::Postgres => POSTGRES_DDL,
        Dialect::Sqlite => SQLITE_DDL,
    };
    Ok(ddl.replace("eventbus_outbox", table))
}

/// A stable shard for `key` (FNV-1a, 64 bits): the same key lands on the same shard in every
/// process and version. Rows without a key are spread by event id.
pub fn shard_of(key: Option<&str>, event_id: &Uuid, shards: u32) -> i32 {
    let bytes: &[u8] = match key {
        Some(k) => k.as_bytes(),
        None => event_id.as_bytes(),
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(shards.max(1))) as i32
}

/// The headers column: the envelope's CloudEvents headers as a JSON object.
pub(crate) fn headers_json(envelope: &Envelope) -> serde_json::Value {
    serde_json::Value::Object(
        envelope
            .headers()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v)))
            .collect(),
    )
}

/// One row to insert.
#[doc(hidden)]
#[derive(Debug)]
pub struct NewRow<'a> {
    pub(crate) envelope: &'a Envelope,
    pub(crate) headers: serde_json::Value,
    pub(crate) shard: i32,
}

impl<'a> NewRow<'a> {
    /// The row of `envelope` in an outbox of `shards` shards.
    pub(crate) fn new(envelope: &'a Envelope, shards: u32) -> Self {
        NewRow {
            headers: headers_json(envelope),
            shard: shard_of(envelope.key.as_deref(), &envelope.id, shards),
            envelope,
        }
    }
}

/// A transaction the outbox can write into: `sqlx::Transaction` of PostgreSQL or SQLite.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a transaction the outbox can write into",
    note = "pass the sqlx transaction itself: `let mut tx = pool.begin().await?; bus.enqueue(&mut tx, &event).await?; tx.commit().await?;` (PostgreSQL or SQLite)"
)]
pub trait OutboxTransaction: Send {
    /// The transaction's dialect.
    fn dialect(&self) -> Dialect;

    /// Runs the outbox INSERT for one row.
    #[doc(hidden)]
    fn insert<'a>(
        &'a mut self,
        statement: &'static str,
        table: &'a str,
        row: NewRow<'a>,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>>;
}

/// The statement for `table`: the generated one when the table is the default.
fn statement_for(
    statement: &'static str,
    table: &str,
) -> AssertSqlSafe<std::borrow::Cow<'static, str>> {
    if table == DEFAULT_TABLE {
        AssertSqlSafe(std::borrow::Cow::Borrowed(statement))
    } else {
        // `table` was validated as a plain identifier when the bus was built.
        AssertSqlSafe(std::borrow::Cow::Owned(statement.replacen(
            DEFAULT_TABLE,
            table,
            1,
        )))
    }
}

/// The same INSERT, bound the same way, for each dialect's transaction.
macro_rules! outbox_transaction {
    ($($db:ident => $dialect:ident),*) => {$(
        impl OutboxTransaction for sqlx::Transaction<'_, $db> {
            fn dialect(&self) -> Dialect {
                Dialect::$dialect
            }

            fn insert<'a>(
                &'a mut self,
                statement: &'static str,
                table: &'a str,
                row: NewRow<'a>,
            ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
                Box::pin(async move {
                    sqlx::query(statement_for(statement, table))
                        .bind(row.envelope.id)
                        .bind(row.envelope.key.as_deref())
                        .bind(sqlx::types::Json(&row.headers))
                        .bind(row.envelope.payload.as_slice())
                        .bind(row.shard)
                        .execute(&mut **self)
                        .await
                        .map(|_| ())
                })
            }
        }
    )*};
}

outbox_transaction!(Postgres => Postgres, Sqlite => Sqlite);

/// A row the relay publishes.
#[derive(Debug, Clone)]
pub(crate) struct PendingRow {
    pub(crate) id: i64,
    pub(crate) event_id: Uuid,
    pub(crate) topic: String,
    pub(crate) key: Option<String>,
    pub(crate) headers: serde_json::Value,
    pub(crate) payload: Vec<u8>,
    pub(crate) attempts: i32,
}

/// What waits in an outbox (the seed's AD-007 "queue depth"): for a health check or a gauge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    /// Rows not yet published.
    pub pending: i64,
    /// How long the oldest of them has waited; `None` when nothing waits. A relay that keeps up
    /// holds this under a second; one that grows means the relay is down or failing.
    pub oldest_pending: Option<std::time::Duration>,
    /// Rows in the dead table, waiting for an operator (`eventbus-relay dead`, `replay`).
    pub dead: i64,
}

/// A dead row, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadEvent {
    /// The event id.
    pub event_id: Uuid,
    /// Its topic.
    pub topic: String,
    /// Its CloudEvents type.
    pub event_type: String,
    /// Its partition key.
    pub key: Option<String>,
    /// Attempts made.
    pub attempts: i32,
    /// The last error.
    pub error: String,
}

/// Which dead rows to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Every dead row.
    All,
    /// These events.
    Events(Vec<Uuid>),
}

/// The database an outbox lives in, with its statements for one table.
#[derive(Clone)]
pub struct OutboxStore {
    pub(crate) db: Db,
    pub(crate) table: Arc<str>,
    sql: Arc<Statements>,
}

impl std::fmt::Debug for OutboxStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxStore")
            .field("dialect", &self.dialect())
            .field("table", &self.table)
            .finish()
    }
}

/// A connection pool of either dialect.
#[derive(Clone, Debug)]
pub(crate) enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Every statement the relay runs, for one table, built once.
struct Statements {
    blocked: String,
    fetch: String,
    delete_sent: String,
    mark_sent: String,
    retry: String,
    to_dead: String,
    purge: String,
    replay_all: String,
    replay_some: String,
    dead: String,
    pending: String,
    backlog: String,
    insert: String,
}

impl Statements {
    fn new(dialect: Dialect, t: &str) -> Self {
        let cols = "event_id, topic, partition_key, event_type, version, headers, payload, created_at, attempts, shard";
        match dialect {
            Dialect::Postgres => Statements {
                // Commit order (DESIGN.md): only rows of transactions older than every running one
                // (xid below the snapshot's xmin), in id order. A key whose earlier row is backing
                // off or not yet readable (`blocked`, read in the same snapshot) holds its later
                // rows back; other keys flow. Two cheap statements beat one anti-join.
                blocked: format!(
                    "SELECT partition_key, min(id) FROM {t} \
                     WHERE sent_at IS NULL AND shard = ANY($1) AND partition_key IS NOT NULL \
                       AND (next_attempt_at > now() OR xid >= pg_snapshot_xmin(pg_current_snapshot())) \
                     GROUP BY partition_key"
                ),
                fetch: format!(
                    "SELECT id, event_id, topic, partition_key, headers, payload, attempts FROM {t} \
                     WHERE sent_at IS NULL AND shard = ANY($1) AND next_attempt_at <= now() \
                       AND xid < pg_snapshot_xmin(pg_current_snapshot()) AND NOT (id = ANY($3)) \
                     ORDER BY id LIMIT $2"
                ),
                delete_sent: format!("DELETE FROM {t} WHERE id = ANY($1)"),
                mark_sent: format!("UPDATE {t} SET sent_at = now() WHERE id = ANY($1)"),
                retry: format!(
                    "UPDATE {t} SET attempts = attempts + $4, last_error = $2, \
                     next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1"
                ),
                to_dead: format!(
                    "WITH moved AS (DELETE FROM {t} WHERE id = $1 RETURNING *) \
                     INSERT INTO {t}_dead (id, {cols}, last_error) \
                     SELECT id, {cols_moved}, $2 FROM moved",
                    cols_moved = cols.replace("attempts", "attempts + 1")
                ),
                purge: format!(
                    "DELETE FROM {t} WHERE sent_at IS NOT NULL AND sent_at < now() - make_interval(secs => $1)"
                ),
                replay_all: format!(
                    "WITH moved AS (DELETE FROM {t}_dead RETURNING *) \
                     INSERT INTO {t} (event_id, topic, partition_key, event_type, version, headers, payload, shard) \
                     SELECT event_id, topic, partition_key, event_type, version, headers, payload, shard FROM moved ORDER BY id"
                ),
                replay_some: format!(
                    "WITH moved AS (DELETE FROM {t}_dead WHERE event_id = ANY($1) RETURNING *) \
                     INSERT INTO {t} (event_id, topic, partition_key, event_type, version, headers, payload, shard) \
                     SELECT event_id, topic, partition_key, event_type, version, headers, payload, shard FROM moved ORDER BY id"
                ),
                dead: format!(
                    "SELECT event_id, topic, event_type, partition_key, attempts, last_error FROM {t}_dead ORDER BY id"
                ),
                pending: format!("SELECT count(*) FROM {t} WHERE sent_at IS NULL"),
                backlog: format!(
                    "SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at))::float8, \
                     (SELECT count(*) FROM {t}_dead) FROM {t} WHERE sent_at IS NULL"
                ),
                insert: format!(
                    "INSERT INTO {t} (event_id, topic, partition_key, event_type, version, headers, payload, shard) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ),
            },
            Dialect::Sqlite => Statements {
                blocked: String::new(),
                // SQLite has one writer at a time: ids are in commit order.
                fetch: format!(
                    "SELECT o.id, o.event_id, o.topic, o.partition_key, o.headers, o.payload, o.attempts \
                     FROM {t} o \
                     WHERE o.sent_at IS NULL AND o.next_attempt_at <= ?1 \
                       AND (o.partition_key IS NULL OR NOT EXISTS ( \
                         SELECT 1 FROM {t} p WHERE p.sent_at IS NULL \
                           AND p.partition_key = o.partition_key AND p.id < o.id \
                           AND p.next_attempt_at > ?1)) \
                       AND o.id NOT IN (SELECT value FROM json_each(?3)) \
                     ORDER BY o.id LIMIT ?2"
                ),
                delete_sent: format!(
                    "DELETE FROM {t} WHERE id IN (SELECT value FROM json_each(?1))"
                ),
                mark_sent: format!(
                    "UPDATE {t} SET sent_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                     WHERE id IN (SELECT value FROM json_each(?1))"
                ),
                retry: format!(
                    "UPDATE {t} SET attempts = attempts + ?4, last_error = ?2, next_attempt_at = ?3 WHERE id = ?1"
                ),
                to_dead: format!(
                    "INSERT INTO {t}_dead (id, {cols}, last_error) \
                     SELECT id, {cols_moved}, ?2 FROM {t} WHERE id = ?1; \
                     DELETE FROM {t} WHERE id = ?1",
                    cols_moved = cols.replace("attempts", "attempts + 1")
                ),
                purge: format!(
                    "DELETE FROM {t} WHERE sent_at IS NOT NULL \
                     AND sent_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || ?1 || ' seconds')"
                ),
                replay_all: format!(
                    "INSERT INTO {t} (event_id, topic, partition_key, event_type, version, headers, payload, shard) \
                     SELECT event_id, topic, partition_key, event_type, version, headers, payload, shard FROM {t}_dead ORDER BY id; \
                     DELETE FROM {t}_dead"
                ),
                // One event per execution (SQLite stores ids as blobs): insert, then delete.
                replay_some: format!(
                    "INSERT INTO {t} (event_id, topic, partition_key, event_type, version, headers, payload, shard) \
                     SELECT event_id, topic, partition_key, event_type, version, headers, payload, shard FROM {t}_dead \
                     WHERE event_id = ?1; \
                     DELETE FROM {t}_dead WHERE event_id = ?1"
                ),
                dead: format!(
                    "SELECT event_id, topic, event_type, partition_key, attempts, last_error FROM {t}_dead ORDER BY id"
                ),
                pending: format!("SELECT count(*) FROM {t} WHERE sent_at IS NULL"),
                backlog: format!(
                    "SELECT count(*), (julianday('now') - julianday(min(created_at))) * 86400.0, \
                     (SELECT count(*) FROM {t}_dead) FROM {t} WHERE sent_at IS NULL"
                ),
                insert: format!(
                    "INSERT INTO {t} (event_id, topic, partition_key, event_type, version, headers, payload, shard) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
            },
        }
    }
}

fn sql(s: &str) -> AssertSqlSafe<String> {
    // Every statement is built from constants and a validated table name.
    AssertSqlSafe(s.to_owned())
}

fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

impl OutboxStore {
    /// The outbox in `pool`'s PostgreSQL database.
    pub fn postgres(pool: PgPool, table: &str) -> Result<Self, ConfigError> {
        check_table_name(table)?;
        Ok(OutboxStore {
            db: Db::Postgres(pool),
            table: table.into(),
            sql: Arc::new(Statements::new(Dialect::Postgres, table)),
        })
    }

    /// The outbox in `pool`'s SQLite database.
    pub fn sqlite(pool: SqlitePool, table: &str) -> Result<Self, ConfigError> {
        check_table_name(table)?;
        Ok(OutboxStore {
            db: Db::Sqlite(pool),
            table: table.into(),
            sql: Arc::new(Statements::new(Dialect::Sqlite, table)),
        })
    }

    /// The database, to build a bus or begin transactions on.
    pub fn database(&self) -> crate::Database {
        match &self.db {
            Db::Postgres(pool) => crate::Database::Postgres(pool.clone()),
            Db::Sqlite(pool) => crate::Database::Sqlite(pool.clone()),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        match self.db {
            Db::Postgres(_) => Dialect::Postgres,
            Db::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Creates the tables if they do not exist. Safe to run from several processes at once.
    pub async fn migrate(&self) -> Result<(), sqlx::Error> {
        let ddl = migration(self.dialect(), &self.table)
            .map_err(|e| sqlx::Error::Configuration(Box::new(e)))?;
        match &self.db {
            Db::Postgres(pool) => {
                // Serialize concurrent migrations (CREATE ... IF NOT EXISTS races otherwise).
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7201604190)")
                    .execute(&mut *tx)
                    .await?;
                sqlx::raw_sql(AssertSqlSafe(ddl)).execute(&mut *tx).await?;
                tx.commit().await
            }
            Db::Sqlite(pool) => sqlx::raw_sql(AssertSqlSafe(ddl))
                .execute(pool)
                .await
                .map(|_| ()),
        }
    }

    /// Writes one envelope in a transaction of its own (publishing in the Transactional mode
    /// without a caller's transaction, and events built at run time).
    pub(crate) async fn write(&self, envelope: &Envelope, shards: u32) -> Result<(), sqlx::Error> {
        let row = NewRow::new(envelope, shards);
        macro_rules! insert {
            ($pool:expr) => {
                sqlx::query(sql(&self.sql.insert))
                    .bind(envelope.id)
                    .bind(&envelope.topic)
                    .bind(envelope.key.as_deref())
                    .bind(&envelope.event_type)
                    .bind(envelope.version as i32)
                    .bind(sqlx::types::Json(&row.headers))
                    .bind(envelope.payload.as_slice())
                    .bind(row.shard)
                    .execute($pool)
                    .await
                    .map(|_| ())
            };
        }
        match &self.db {
            Db::Postgres(pool) => insert!(pool),
            Db::Sqlite(pool) => insert!(pool),
        }
    }

    /// Up to `limit` rows ready to publish from `shards`, in commit order.
    pub(crate) async fn fetch(
        &self,
        shards: &[i32],
        limit: usize,
        in_flight: &[i64],
    ) -> Result<Vec<PendingRow>, sqlx::Error> {
        fn row<R: Row>(r: R) -> Result<PendingRow, sqlx::Error>
        where
            usize: sqlx::ColumnIndex<R>,
            i64: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
            i32: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
            Uuid: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
            String: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
            Option<String>: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
            Vec<u8>: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
            sqlx::types::Json<serde_json::Value>:
                sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
        {
            Ok(PendingRow {
                id: r.try_get(0usize)?,
                event_id: r.try_get(1usize)?,
                topic: r.try_get(2usize)?,
                key: r.try_get(3usize)?,
                headers: r
                    .try_get::<sqlx::types::Json<serde_json::Value>, _>(4usize)?
                    .0,
                payload: r.try_get(5usize)?,
                attempts: r.try_get(6usize)?,
            })
        }
        let limit = limit as i64;
        let rows = match &self.db {
            Db::Postgres(pool) => {
                // One snapshot for both statements.
                let mut tx = pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await?;
                let blocked: std::collections::HashMap<String, i64> =
                    sqlx::query_as(sql(&self.sql.blocked))
                        .bind(shards)
                        .fetch_all(&mut *tx)
                        .await?
                        .into_iter()
                        .collect();
                let rows = sqlx::query(sql(&self.sql.fetch))
                    .bind(shards)
                    .bind(limit)
                    .bind(in_flight)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                let mut rows = rows.into_iter().map(row).collect::<Result<Vec<_>, _>>()?;
                if !blocked.is_empty() {
                    rows.retain(|r| {
                        r.key
                            .as_ref()
                            .and_then(|k| blocked.get(k))
                            .is_none_or(|first| r.id < *first)
                    });
                }
                rows
            }
            Db::Sqlite(pool) => sqlx::query(sql(&self.sql.fetch))
                .bind(now_ms())
                .bind(limit)
                .bind(serde_json::to_string(in_flight).unwrap_or_else(|_| "[]".into()))
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(row)
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(rows)
    }

    /// Deletes (or, with a retention, marks) published rows, in one statement.
    pub(crate) async fn sent(&self, ids: &[i64], keep: bool) -> Result<(), sqlx::Error> {
        if ids.is_empty() {
            return Ok(());
        }
        let statement = if keep {
            &self.sql.mark_sent
        } else {
            &self.sql.delete_sent
        };
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query(sql(statement)).bind(ids).execute(pool).await?;
            }
            Db::Sqlite(pool) => {
                let list = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
                sqlx::query(sql(statement)).bind(list).execute(pool).await?;
            }
        }
        Ok(())
    }

    /// Records a failure; the row is retried after `delay`. `counts`: the failure uses up one of
    /// the event's attempts (an outage does not).
    pub(crate) async fn retry_later(
        &self,
        id: i64,
        error: &str,
        delay: Duration,
        counts: bool,
    ) -> Result<(), sqlx::Error> {
        let counts = i32::from(counts);
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query(sql(&self.sql.retry))
                    .bind(id)
                    .bind(error)
                    .bind(delay.as_secs_f64())
                    .bind(counts)
                    .execute(pool)
                    .await?;
            }
            Db::Sqlite(pool) => {
                sqlx::query(sql(&self.sql.retry))
                    .bind(id)
                    .bind(error)
                    .bind(now_ms() + delay.as_millis() as i64)
                    .bind(counts)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Moves a row to the dead table with its last error.
    pub(crate) async fn kill(&self, id: i64, error: &str) -> Result<(), sqlx::Error> {
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query(sql(&self.sql.to_dead))
                    .bind(id)
                    .bind(error)
                    .execute(pool)
                    .await?;
            }
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::raw_sql(AssertSqlSafe(
                    self.sql
                        .to_dead
                        .replace("?1", &id.to_string())
                        .replace("?2", &sqlite_literal(error)),
                ))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Deletes sent rows older than `retention`.
    pub(crate) async fn purge(&self, retention: Duration) -> Result<u64, sqlx::Error> {
        let done = match &self.db {
            Db::Postgres(pool) => sqlx::query(sql(&self.sql.purge))
                .bind(retention.as_secs_f64())
                .execute(pool)
                .await?
                .rows_affected(),
            Db::Sqlite(pool) => sqlx::query(sql(&self.sql.purge))
                .bind(retention.as_secs() as i64)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        Ok(done)
    }

    /// Puts dead rows back into the outbox (at its end, with fresh attempts); returns how many.
    pub async fn replay(&self, which: Replay) -> Result<u64, sqlx::Error> {
        match (&self.db, which) {
            (Db::Postgres(pool), Replay::All) => Ok(sqlx::query(sql(&self.sql.replay_all))
                .execute(pool)
                .await?
                .rows_affected()),
            (Db::Postgres(pool), Replay::Events(ids)) => {
                Ok(sqlx::query(sql(&self.sql.replay_some))
                    .bind(ids)
                    .execute(pool)
                    .await?
                    .rows_affected())
            }
            (Db::Sqlite(pool), Replay::All) => {
                let mut tx = pool.begin().await?;
                let result = sqlx::raw_sql(sql(&self.sql.replay_all))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                // Both statements count: inserted rows equal deleted rows.
                Ok(result.rows_affected() / 2)
            }
            (Db::Sqlite(pool), Replay::Events(ids)) => {
                let (insert, delete) = self
                    .sql
                    .replay_some
                    .split_once("; ")
                    .unwrap_or((self.sql.replay_some.as_str(), ""));
                let mut tx = pool.begin().await?;
                let mut replayed = 0;
                for id in ids {
                    replayed += sqlx::query(sql(insert))
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    sqlx::query(sql(delete)).bind(id).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(replayed)
            }
        }
    }

    /// The dead rows, oldest first.
    pub async fn dead(&self) -> Result<Vec<DeadEvent>, sqlx::Error> {
        let rows = match &self.db {
            Db::Postgres(pool) => sqlx::query(sql(&self.sql.dead))
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|r| dead_row(&r))
                .collect::<Result<Vec<_>, _>>()?,
            Db::Sqlite(pool) => sqlx::query(sql(&self.sql.dead))
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|r| dead_row(&r))
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(rows)
    }

    /// Rows not yet published.
    pub async fn pending(&self) -> Result<i64, sqlx::Error> {
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_scalar(sql(&self.sql.pending))
                    .fetch_one(pool)
                    .await
            }
            Db::Sqlite(pool) => {
                sqlx::query_scalar(sql(&self.sql.pending))
                    .fetch_one(pool)
                    .await
            }
        }
    }
}

impl OutboxStore {
    /// What waits: pending rows, the age of the oldest, dead rows (one statement).
    pub async fn backlog(&self) -> Result<Backlog, sqlx::Error> {
        let (pending, oldest, dead): (i64, Option<f64>, i64) = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_as(sql(&self.sql.backlog))
                    .fetch_one(pool)
                    .await?
            }
            Db::Sqlite(pool) => {
                sqlx::query_as(sql(&self.sql.backlog))
                    .fetch_one(pool)
                    .await?
            }
        };
        Ok(Backlog {
            pending,
            oldest_pending: oldest.map(|s| std::time::Duration::from_secs_f64(s.max(0.0))),
            dead,
        })
    }
}

fn dead_row<R: Row>(r: &R) -> Result<DeadEvent, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    usize: sqlx::ColumnIndex<R>,
    Uuid: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
    String: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
    Option<String>: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
    i32: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
{
    Ok(DeadEvent {
        event_id: r.try_get(0usize)?,
        topic: r.try_get(1usize)?,
        event_type: r.try_get(2usize)?,
        key: r.try_get(3usize)?,
        attempts: r.try_get(4usize)?,
        error: r.try_get(5usize)?,
    })
}

/// A string as an SQLite literal (for the multi-statement scripts, which take no parameters).
fn sqlite_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
