//! The transactional outbox (AD-001, AD-003): tables, migrations, and the statements the bus and
//! the relay run, for PostgreSQL and SQLite (features `postgres`, `sqlite`).
//!
//! A row is written by `EventBus::enqueue` inside the caller's transaction, with the statement the
//! derive generated (`Event::OUTBOX_INSERT_POSTGRES` / `_SQLITE`); the relay reads rows in commit
//! order, publishes them, and deletes them (or marks them sent, with a retention). After
//! `max_attempts` a row moves to `{table}_dead`, from which it can be replayed.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | [`OutboxStore`], the migration, what an operator reads: backlog, dead rows, replay |
//! | `statements.rs` | every statement, per dialect, built once per table |
//! | `transaction.rs` | writing rows: [`OutboxTransaction`], the generated INSERT, one transaction of their own |
//! | `rows.rs` | what the relay does to rows: fetch in commit order, mark sent, retry, move to dead |
//! | `connect.rs` | [`connect`]: a store from a [`Database`](crate::config::Database) |

use std::sync::Arc;

use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

mod connect;
mod rows;
mod statements;
mod transaction;

pub use connect::connect;
pub(crate) use rows::{PendingRow, Resume, RowHeaders};
pub(crate) use transaction::{Generated, WriteError, headers_json};
pub use transaction::{NewRow, OutboxTransaction};

use crate::error::ConfigError;
use statements::Statements;

const POSTGRES_DDL: &str = include_str!("../../migrations/postgres.sql");
const SQLITE_DDL: &str = include_str!("../../migrations/sqlite.sql");

pub use eventbus_core::outbox::Dialect;

/// The migration creating the outbox, the dead table, their indexes and (PostgreSQL) the
/// notification trigger, for `table`. Idempotent.
pub fn migration(dialect: Dialect, table: &str) -> Result<String, ConfigError> {
    crate::config::check_table_name(table)?;
    let ddl = match dialect {
        Dialect::Postgres => POSTGRES_DDL,
        Dialect::Sqlite => SQLITE_DDL,
    };
    Ok(ddl.replace(crate::config::DEFAULT_OUTBOX_TABLE, table))
}

/// A stable shard for `key` (FNV-1a, 64 bits): the same key lands on the same shard in every
/// process and version. Rows without a key are spread by event id.
pub fn shard_of(key: Option<&str>, event_id: &Uuid, shards: u32) -> i32 {
    let bytes: &[u8] = match key {
        Some(k) => k.as_bytes(),
        None => event_id.as_bytes(),
    };
    (crate::event::fnv1a(bytes) % u64::from(shards.max(1))) as i32
}

/// What waits in an outbox (the seed's AD-007 "queue depth"): for a health check or a gauge.
///
/// Also exported through the `metrics` facade as gauges labelled `table`, read every 5 s by each
/// relay and by each [`EventBus::health`](crate::EventBus::health):
///
/// | metric | what |
/// |---|---|
/// | `eventbus_outbox_pending` | rows waiting |
/// | `eventbus_outbox_oldest_pending_seconds` | the oldest waiting row's age |
/// | `eventbus_outbox_dead` | rows in the dead table |
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
    /// The class of the last error (`None`: dead-lettered by a version that did not keep it).
    pub class: Option<crate::dlq::ErrorClass>,
    /// How long ago it went dead.
    pub dead_for: std::time::Duration,
}

/// A dead row with what it would publish: [`OutboxStore::dead_record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadRecord {
    /// What [`OutboxStore::dead`] lists.
    pub event: DeadEvent,
    /// The CloudEvents headers, a JSON object.
    pub headers: String,
    /// The record value.
    pub payload: Vec<u8>,
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
    pub(super) sql: Arc<Statements>,
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
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
}

pub(super) fn sql(s: &str) -> AssertSqlSafe<String> {
    // Every statement is built from constants and a validated table name.
    AssertSqlSafe(s.to_owned())
}

pub(super) fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

impl OutboxStore {
    /// The outbox in `pool`'s PostgreSQL database.
    #[cfg(feature = "postgres")]
    pub fn postgres(pool: sqlx::PgPool, table: &str) -> Result<Self, ConfigError> {
        crate::config::check_table_name(table)?;
        Ok(OutboxStore {
            db: Db::Postgres(pool),
            table: table.into(),
            sql: Arc::new(Statements::new(Dialect::Postgres, table)),
        })
    }

    /// The same outbox, read through connections of its own on which PostgreSQL plans the
    /// relay's read the one way that stays fast whatever the table's statistics say: the pending
    /// index in id order, stopping at the batch size (sequential scans, bitmap scans, sorts,
    /// JIT and parallel workers are off for these sessions; the statement in `statements.rs`
    /// says why). The relay deletes (or marks) the rows Kafka acknowledged on them too, so that
    /// delete also stays on the primary key's index. Two connections (a read and a delete at a
    /// time), made when first used, from the store's own connection settings. SQLite: the same
    /// store.
    pub(crate) fn relay_reader(&self) -> OutboxStore {
        let db = match &self.db {
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                let options = (*pool.connect_options()).clone().options([
                    ("enable_seqscan", "off"),
                    ("enable_bitmapscan", "off"),
                    ("enable_sort", "off"),
                    // The one sort left (the late rows, see `statements.rs`) costs the plan the
                    // penalty of a disabled sort, far above `jit_above_cost`: JIT would compile
                    // the read at every execution (250-450 ms, against 3 ms to run it).
                    ("jit", "off"),
                    // A read takes one batch through an index: parallel workers only add their
                    // start (two processes forked per read). With the statistics of a large
                    // table, PostgreSQL planned the held keys' scans in parallel.
                    ("max_parallel_workers_per_gather", "0"),
                ]);
                Db::Postgres(
                    sqlx::postgres::PgPoolOptions::new()
                        .max_connections(2)
                        .acquire_timeout(std::time::Duration::from_secs(10))
                        .connect_lazy_with(options),
                )
            }
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => Db::Sqlite(pool.clone()),
        };
        OutboxStore {
            db,
            table: Arc::clone(&self.table),
            sql: Arc::clone(&self.sql),
        }
    }

    /// The outbox in `pool`'s SQLite database.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(pool: sqlx::SqlitePool, table: &str) -> Result<Self, ConfigError> {
        crate::config::check_table_name(table)?;
        Ok(OutboxStore {
            db: Db::Sqlite(pool),
            table: table.into(),
            sql: Arc::new(Statements::new(Dialect::Sqlite, table)),
        })
    }

    /// The database, to build a bus or begin transactions on.
    pub fn database(&self) -> crate::config::Database {
        match &self.db {
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => crate::config::Database::Postgres(pool.clone()),
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => crate::config::Database::Sqlite(pool.clone()),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        match self.db {
            #[cfg(feature = "postgres")]
            Db::Postgres(_) => Dialect::Postgres,
            #[cfg(feature = "sqlite")]
            Db::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Creates the tables if they do not exist. Safe to run from several processes at once.
    pub async fn migrate(&self) -> Result<(), sqlx::Error> {
        let ddl = migration(self.dialect(), &self.table)
            .map_err(|e| sqlx::Error::Configuration(Box::new(e)))?;
        match &self.db {
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                // Serialize concurrent migrations (CREATE ... IF NOT EXISTS races otherwise).
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7201604190)")
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

    /// Puts dead rows back into the outbox (at its end, with fresh attempts); returns how many.
    pub async fn replay(&self, which: Replay) -> Result<u64, sqlx::Error> {
        match (&self.db, which) {
            #[cfg(feature = "postgres")]
            (Db::Postgres(pool), Replay::All) => Ok(sqlx::query(sql(&self.sql.replay_all[0]))
                .execute(pool)
                .await?
                .rows_affected()),
            #[cfg(feature = "postgres")]
            (Db::Postgres(pool), Replay::Events(ids)) => {
                Ok(sqlx::query(sql(&self.sql.replay_some[0]))
                    .bind(ids)
                    .execute(pool)
                    .await?
                    .rows_affected())
            }
            #[cfg(feature = "sqlite")]
            (Db::Sqlite(pool), Replay::All) => {
                let [insert, delete] = &self.sql.replay_all[..] else {
                    unreachable!("SQLite replays in two statements")
                };
                let mut tx = pool.begin().await?;
                let replayed = sqlx::query(sql(insert))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query(sql(delete)).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(replayed)
            }
            #[cfg(feature = "sqlite")]
            (Db::Sqlite(pool), Replay::Events(ids)) => {
                let [insert, delete] = &self.sql.replay_some[..] else {
                    unreachable!("SQLite replays in two statements")
                };
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

    /// Discards a dead row: moves it to the audit table `{table}_discarded` with `reason` (and
    /// the time). False when `event_id` is not in the dead table.
    pub async fn discard(&self, event_id: Uuid, reason: &str) -> Result<bool, sqlx::Error> {
        match &self.db {
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => Ok(sqlx::query(sql(&self.sql.discard[0]))
                .bind(event_id)
                .bind(reason)
                .execute(pool)
                .await?
                .rows_affected()
                > 0),
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => {
                let [insert, delete] = &self.sql.discard[..] else {
                    unreachable!("SQLite discards in two statements")
                };
                let mut tx = pool.begin().await?;
                let moved = sqlx::query(sql(insert))
                    .bind(event_id)
                    .bind(reason)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query(sql(delete))
                    .bind(event_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(moved > 0)
            }
        }
    }

    /// One dead row with its headers and payload; `None` when `event_id` is not dead.
    pub async fn dead_record(&self, event_id: Uuid) -> Result<Option<DeadRecord>, sqlx::Error> {
        match &self.db {
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => sqlx::query(sql(&self.sql.dead_one))
                .bind(event_id)
                .fetch_optional(pool)
                .await?
                .map(|r| dead_record(&r))
                .transpose(),
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => sqlx::query(sql(&self.sql.dead_one))
                .bind(event_id)
                .fetch_optional(pool)
                .await?
                .map(|r| dead_record(&r))
                .transpose(),
        }
    }

    /// The dead rows, oldest first.
    pub async fn dead(&self) -> Result<Vec<DeadEvent>, sqlx::Error> {
        let rows = match &self.db {
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => sqlx::query(sql(&self.sql.dead))
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|r| dead_row(&r))
                .collect::<Result<Vec<_>, _>>()?,
            #[cfg(feature = "sqlite")]
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
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                sqlx::query_scalar(sql(&self.sql.pending))
                    .fetch_one(pool)
                    .await
            }
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => {
                sqlx::query_scalar(sql(&self.sql.pending))
                    .fetch_one(pool)
                    .await
            }
        }
    }
}

impl OutboxStore {
    /// The dead rows per class, with the age of the oldest of each (for the relay's gauges).
    pub(crate) async fn dead_counts(&self) -> Result<Vec<crate::metrics::DeadCount>, sqlx::Error> {
        let rows: Vec<(String, i64, Option<f64>)> = match &self.db {
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                sqlx::query_as(sql(&self.sql.dead_counts))
                    .fetch_all(pool)
                    .await?
            }
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => {
                sqlx::query_as(sql(&self.sql.dead_counts))
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|(class, count, oldest)| crate::metrics::DeadCount {
                class,
                count,
                oldest: std::time::Duration::from_secs_f64(oldest.unwrap_or(0.0).max(0.0)),
            })
            .collect())
    }

    /// PostgreSQL: when the table and its indexes take more than `above` bytes and it holds no
    /// row, truncates it (giving the disk space back: deleted rows leave the table and its
    /// indexes at their high-water mark until a `VACUUM FULL`). The lock is waited for at most
    /// 50 ms (writers wait behind it that long at most), and emptiness is checked under it, so
    /// no row written meanwhile can be lost. Returns the bytes freed, `None` when nothing was
    /// done (too small, not empty, the lock busy, SQLite).
    pub async fn compact(&self, above: u64) -> Result<Option<u64>, sqlx::Error> {
        #[cfg(feature = "postgres")]
        if let Db::Postgres(pool) = &self.db {
            let t = self.table();
            let size: i64 = sqlx::query_scalar(sql(&format!(
                "SELECT pg_total_relation_size('{t}'::regclass)"
            )))
            .fetch_one(pool)
            .await?;
            if above == 0 || (size as u64) <= above {
                return Ok(None);
            }
            let mut tx = pool.begin().await?;
            sqlx::query("SET LOCAL lock_timeout = '50ms'")
                .execute(&mut *tx)
                .await?;
            let locked = sqlx::query(sql(&format!("LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE")))
                .execute(&mut *tx)
                .await;
            match locked {
                Ok(_) => {}
                // 55P03 lock_not_available: writers are busy; another time.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
            let any: bool = sqlx::query_scalar(sql(&format!("SELECT EXISTS (SELECT 1 FROM {t})")))
                .fetch_one(&mut *tx)
                .await?;
            if any {
                return Ok(None);
            }
            // Identity continues: ids keep growing, as the relay's order needs.
            sqlx::query(sql(&format!("TRUNCATE {t} CONTINUE IDENTITY")))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            let after: i64 = sqlx::query_scalar(sql(&format!(
                "SELECT pg_total_relation_size('{t}'::regclass)"
            )))
            .fetch_one(pool)
            .await?;
            return Ok(Some(size.saturating_sub(after) as u64));
        }
        let _ = above;
        Ok(None)
    }

    /// What waits: pending rows, the age of the oldest, dead rows (one statement).
    pub async fn backlog(&self) -> Result<Backlog, sqlx::Error> {
        let (pending, oldest, dead): (i64, Option<f64>, i64) = match &self.db {
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                sqlx::query_as(sql(&self.sql.backlog))
                    .fetch_one(pool)
                    .await?
            }
            #[cfg(feature = "sqlite")]
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
    f64: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
{
    let dead_for: Option<f64> = r.try_get(6usize)?;
    let class: Option<String> = r.try_get(7usize)?;
    Ok(DeadEvent {
        class: class.as_deref().and_then(crate::dlq::ErrorClass::from_name),
        event_id: r.try_get(0usize)?,
        topic: r.try_get(1usize)?,
        event_type: r.try_get(2usize)?,
        key: r.try_get(3usize)?,
        attempts: r.try_get(4usize)?,
        error: r.try_get(5usize)?,
        dead_for: std::time::Duration::from_secs_f64(dead_for.unwrap_or(0.0).max(0.0)),
    })
}

fn dead_record<R: Row>(r: &R) -> Result<DeadRecord, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    usize: sqlx::ColumnIndex<R>,
    Uuid: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
    String: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
    Option<String>: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
    i32: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
    f64: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
    Vec<u8>: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
{
    Ok(DeadRecord {
        event: dead_row(r)?,
        headers: r.try_get(8usize)?,
        payload: r.try_get(9usize)?,
    })
}
