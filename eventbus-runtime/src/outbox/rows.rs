//! What the relay does to outbox rows: read them in commit order, mark them sent, schedule a
//! retry, move one to the dead table, purge the sent ones.

use std::time::Duration;

use sqlx::Row;
use uuid::Uuid;

use super::{Db, OutboxStore, now_ms, sql};

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

impl OutboxStore {
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
            #[cfg(feature = "postgres")]
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
            #[cfg(feature = "sqlite")]
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
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                sqlx::query(sql(statement)).bind(ids).execute(pool).await?;
            }
            #[cfg(feature = "sqlite")]
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
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                sqlx::query(sql(&self.sql.retry))
                    .bind(id)
                    .bind(error)
                    .bind(delay.as_secs_f64())
                    .bind(counts)
                    .execute(pool)
                    .await?;
            }
            #[cfg(feature = "sqlite")]
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

    /// Moves a row to the dead table with its last error and its class, in one transaction.
    pub(crate) async fn kill(
        &self,
        id: i64,
        error: &str,
        class: crate::dlq::ErrorClass,
    ) -> Result<(), sqlx::Error> {
        macro_rules! in_one_transaction {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                // Each statement binds the row id first, the error second and the class third
                // (unused by a DELETE, so only bound where they appear).
                for statement in &self.sql.to_dead {
                    let query = sqlx::query(sql(statement)).bind(id);
                    let query = if statement.contains("last_error") {
                        query.bind(error).bind(class.as_str())
                    } else {
                        query
                    };
                    query.execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }};
        }
        match &self.db {
            #[cfg(feature = "postgres")]
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => in_one_transaction!(pool),
            #[cfg(feature = "sqlite")]
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => in_one_transaction!(pool),
        }
        Ok(())
    }

    /// Deletes sent rows older than `retention`.
    pub(crate) async fn purge(&self, retention: Duration) -> Result<u64, sqlx::Error> {
        let done = match &self.db {
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => sqlx::query(sql(&self.sql.purge))
                .bind(retention.as_secs_f64())
                .execute(pool)
                .await?
                .rows_affected(),
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => sqlx::query(sql(&self.sql.purge))
                .bind(retention.as_secs() as i64)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        Ok(done)
    }
}
