//! The inbox: an idempotent-consumer table, so a redelivered event has its effects once.
//!
//! Before a handler runs, the consumer inserts `(consumer group, event id)` into the inbox in a
//! new transaction; a conflict means the event was processed already and the handler is skipped.
//! Handlers registered with `on_tx` receive that transaction and write their effects in it: the
//! effects and the inbox row commit together, so a crash at any point leaves either both or
//! neither, and the redelivery does the work exactly once.

use std::sync::Arc;
use std::time::Duration;

use sqlx::AssertSqlSafe;
#[cfg(feature = "postgres")]
use sqlx::{PgPool, Postgres, postgres::PgConnection};
#[cfg(feature = "sqlite")]
use sqlx::{Sqlite, SqlitePool, sqlite::SqliteConnection};
use uuid::Uuid;

use crate::config::check_table_name;
use crate::error::{ConfigError, HandlerError};

/// The inbox table of a consumer's database.
///
/// A Kafka consumer with an inbox handles the records of a partition in batches of up to
/// [`Inbox::batch`] records (256 by default): one transaction claims every event id of the batch
/// in one statement, runs the handlers one after another in it (an `on_tx` handler writes its
/// effects there), and commits once. When a handler fails, the batch is rolled back, the records
/// before the failing one are committed again without it, and the failing record continues alone
/// with its retries (and its dead letter): exactly-once effects and per-key order hold, and one
/// bad record costs one re-run of its predecessors' handlers. `batch(1)` is one transaction per
/// record, with the keys of a partition handled in parallel (worth it when handlers wait on I/O).
#[derive(Clone, Debug)]
pub struct Inbox {
    db: InboxDb,
    table: Arc<str>,
    /// The statement that claims an event id, built once (it runs for every record).
    claim: Arc<str>,
    /// The statement that claims the event ids of a batch.
    claim_many: Arc<str>,
    /// Records per transaction.
    batch: usize,
}

/// The default of [`Inbox::batch`].
pub const DEFAULT_BATCH: usize = 256;

#[derive(Clone, Debug)]
enum InboxDb {
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
    #[cfg(feature = "sqlite")]
    Sqlite(SqlitePool),
}

/// The transaction an inbox-backed handler writes its effects in.
#[derive(Debug)]
pub enum InboxTx {
    /// On PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(sqlx::Transaction<'static, Postgres>),
    /// On SQLite.
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::Transaction<'static, Sqlite>),
}

impl InboxTx {
    /// The PostgreSQL connection of the transaction.
    #[cfg(feature = "postgres")]
    pub fn postgres(&mut self) -> Result<&mut PgConnection, HandlerError> {
        match self {
            #[cfg(feature = "postgres")]
            InboxTx::Postgres(tx) => Ok(&mut **tx),
            #[cfg(feature = "sqlite")]
            InboxTx::Sqlite(_) => Err("the inbox is on SQLite, not PostgreSQL".into()),
        }
    }

    /// The SQLite connection of the transaction.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(&mut self) -> Result<&mut SqliteConnection, HandlerError> {
        match self {
            #[cfg(feature = "sqlite")]
            InboxTx::Sqlite(tx) => Ok(&mut **tx),
            #[cfg(feature = "postgres")]
            InboxTx::Postgres(_) => Err("the inbox is on PostgreSQL, not SQLite".into()),
        }
    }

    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            #[cfg(feature = "postgres")]
            InboxTx::Postgres(tx) => tx.commit().await,
            #[cfg(feature = "sqlite")]
            InboxTx::Sqlite(tx) => tx.commit().await,
        }
    }
}

/// The statement that claims an event for a consumer; `a` and `b` are the dialect's placeholders.
fn claim_statement(table: &str, a: &str, b: &str) -> Arc<str> {
    format!("INSERT INTO {table} (consumer, event_id) VALUES ({a}, {b}) ON CONFLICT DO NOTHING")
        .into()
}

fn sql(s: String) -> AssertSqlSafe<String> {
    // Built from constants and a validated table name.
    AssertSqlSafe(s)
}

impl Inbox {
    /// The inbox `table` (e.g. `eventbus_inbox`) in a PostgreSQL database.
    #[cfg(feature = "postgres")]
    pub fn postgres(pool: PgPool, table: &str) -> Result<Self, ConfigError> {
        check_table_name(table)?;
        Ok(Inbox {
            db: InboxDb::Postgres(pool),
            claim: claim_statement(table, "$1", "$2"),
            claim_many: format!(
                "INSERT INTO {table} (consumer, event_id) SELECT $1, unnest($2::uuid[]) \
                 ON CONFLICT DO NOTHING RETURNING event_id"
            )
            .into(),
            table: table.into(),
            batch: DEFAULT_BATCH,
        })
    }

    /// The inbox `table` in a SQLite database.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(pool: SqlitePool, table: &str) -> Result<Self, ConfigError> {
        check_table_name(table)?;
        Ok(Inbox {
            db: InboxDb::Sqlite(pool),
            claim: claim_statement(table, "?1", "?2"),
            // `WHERE true`: SQLite's parser needs it before an upsert clause after a SELECT.
            claim_many: format!(
                "INSERT INTO {table} (consumer, event_id) SELECT ?1, unhex(value) \
                 FROM json_each(?2) WHERE true ON CONFLICT DO NOTHING RETURNING event_id"
            )
            .into(),
            table: table.into(),
            batch: DEFAULT_BATCH,
        })
    }

    /// Handles up to `records` records of a partition in one transaction (at least 1; default
    /// [`DEFAULT_BATCH`]; see [`Inbox`]). The consumer's `concurrency` also bounds a batch.
    pub fn batch(mut self, records: usize) -> Self {
        self.batch = records.max(1);
        self
    }

    /// Records per transaction.
    pub(crate) fn batch_size(&self) -> usize {
        self.batch
    }

    /// Creates the table if it does not exist.
    pub async fn migrate(&self) -> Result<(), sqlx::Error> {
        let t = &self.table;
        match &self.db {
            #[cfg(feature = "postgres")]
            InboxDb::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7201604191)").execute(&mut *tx).await?;
                sqlx::raw_sql(sql(format!(
                    "CREATE TABLE IF NOT EXISTS {t} (consumer TEXT NOT NULL, event_id UUID NOT NULL, \
                     processed_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (consumer, event_id)); \
                     CREATE INDEX IF NOT EXISTS {t}_processed ON {t} (processed_at)"
                )))
                .execute(&mut *tx)
                .await?;
                tx.commit().await
            }
            #[cfg(feature = "sqlite")]
            InboxDb::Sqlite(pool) => sqlx::raw_sql(sql(format!(
                "CREATE TABLE IF NOT EXISTS {t} (consumer TEXT NOT NULL, event_id BLOB NOT NULL, \
                 processed_at INTEGER NOT NULL DEFAULT (unixepoch()), PRIMARY KEY (consumer, event_id)); \
                 CREATE INDEX IF NOT EXISTS {t}_processed ON {t} (processed_at)"
            )))
            .execute(pool)
            .await
            .map(|_| ()),
        }
    }

    /// Begins the transaction of `event_id` for `consumer`: `None` when it was processed already.
    pub(crate) async fn begin(
        &self,
        consumer: &str,
        event_id: Uuid,
    ) -> Result<Option<InboxTx>, sqlx::Error> {
        // The same steps on either pool; only the transaction's type differs.
        macro_rules! claim {
            ($pool:expr, $variant:path) => {{
                let mut tx = $pool.begin().await?;
                let fresh = sqlx::query(AssertSqlSafe(self.claim.to_string()))
                    .bind(consumer)
                    .bind(event_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                Ok(fresh.then_some($variant(tx)))
            }};
        }
        match &self.db {
            #[cfg(feature = "postgres")]
            InboxDb::Postgres(pool) => claim!(pool, InboxTx::Postgres),
            #[cfg(feature = "sqlite")]
            InboxDb::Sqlite(pool) => claim!(pool, InboxTx::Sqlite),
        }
    }

    /// Begins the transaction of a batch: claims every id of `event_ids` for `consumer` in one
    /// statement and says which are fresh. An id that appears twice (a redelivery inside the
    /// batch) is fresh at its first place only.
    pub(crate) async fn begin_batch(
        &self,
        consumer: &str,
        event_ids: &[Uuid],
    ) -> Result<(InboxTx, Vec<bool>), sqlx::Error> {
        let (tx, mut claimed): (InboxTx, std::collections::HashSet<Uuid>) = match &self.db {
            #[cfg(feature = "postgres")]
            InboxDb::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let ids: Vec<Uuid> = sqlx::query_scalar(AssertSqlSafe(self.claim_many.to_string()))
                    .bind(consumer)
                    .bind(event_ids)
                    .fetch_all(&mut *tx)
                    .await?;
                (InboxTx::Postgres(tx), ids.into_iter().collect())
            }
            #[cfg(feature = "sqlite")]
            InboxDb::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let hex: Vec<String> = event_ids.iter().map(|id| id.simple().to_string()).collect();
                let ids: Vec<Uuid> = sqlx::query_scalar(AssertSqlSafe(self.claim_many.to_string()))
                    .bind(consumer)
                    .bind(serde_json::to_string(&hex).unwrap_or_default())
                    .fetch_all(&mut *tx)
                    .await?;
                (InboxTx::Sqlite(tx), ids.into_iter().collect())
            }
        };
        let fresh = event_ids.iter().map(|id| claimed.remove(id)).collect();
        Ok((tx, fresh))
    }

    /// Forgets processed ids older than `age` (a redelivery older than that would run again).
    pub async fn purge(&self, age: Duration) -> Result<u64, sqlx::Error> {
        let t = &self.table;
        Ok(match &self.db {
            #[cfg(feature = "postgres")]
            InboxDb::Postgres(pool) => sqlx::query(sql(format!(
                "DELETE FROM {t} WHERE processed_at < now() - make_interval(secs => $1)"
            )))
            .bind(age.as_secs_f64())
            .execute(pool)
            .await?
            .rows_affected(),
            #[cfg(feature = "sqlite")]
            InboxDb::Sqlite(pool) => sqlx::query(sql(format!(
                "DELETE FROM {t} WHERE processed_at < unixepoch() - ?1"
            )))
            .bind(age.as_secs() as i64)
            .execute(pool)
            .await?
            .rows_affected(),
        })
    }

    /// How many events `consumer` has processed (and not yet purged).
    pub async fn processed(&self, consumer: &str) -> Result<i64, sqlx::Error> {
        let t = &self.table;
        match &self.db {
            #[cfg(feature = "postgres")]
            InboxDb::Postgres(pool) => {
                sqlx::query_scalar(sql(format!("SELECT count(*) FROM {t} WHERE consumer = $1")))
                    .bind(consumer)
                    .fetch_one(pool)
                    .await
            }
            #[cfg(feature = "sqlite")]
            InboxDb::Sqlite(pool) => {
                sqlx::query_scalar(sql(format!("SELECT count(*) FROM {t} WHERE consumer = ?1")))
                    .bind(consumer)
                    .fetch_one(pool)
                    .await
            }
        }
    }
}
