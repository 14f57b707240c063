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
#[derive(Clone, Debug)]
pub struct Inbox {
    db: InboxDb,
    table: Arc<str>,
    /// The statement that claims an event id, built once (it runs for every record).
    claim: Arc<str>,
}

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
            table: table.into(),
        })
    }

    /// The inbox `table` in a SQLite database.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(pool: SqlitePool, table: &str) -> Result<Self, ConfigError> {
        check_table_name(table)?;
        Ok(Inbox {
            db: InboxDb::Sqlite(pool),
            claim: claim_statement(table, "?1", "?2"),
            table: table.into(),
        })
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
