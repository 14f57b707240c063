//! Writing rows: the [`OutboxTransaction`] a caller's sqlx transaction is, the INSERT the code
//! generator emitted for each event type ([`Generated`]), and writes in a transaction of their
//! own. Typed events, enqueued or published, go through the generated statement; only events
//! built at run time use the outbox's own INSERT.

use sqlx::AssertSqlSafe;

use super::{Db, Dialect, OutboxStore, shard_of, sql};
use crate::BoxFuture;
use crate::envelope::Envelope;
use crate::event::Event;

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

/// The headers as a PostgreSQL `json` parameter: the column's type, so the server only checks
/// the text (a `jsonb` parameter, sqlx's `Json`, would be converted to its binary form and back).
/// Into a JSONB column of an earlier version's table it is cast on assignment.
#[cfg(feature = "postgres")]
struct PgJson<'a>(&'a serde_json::Value);

#[cfg(feature = "postgres")]
impl sqlx::Type<sqlx::Postgres> for PgJson<'_> {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        /// `json`'s fixed OID (`pg_type.h`).
        const JSON: sqlx::postgres::types::Oid = sqlx::postgres::types::Oid(114);
        sqlx::postgres::PgTypeInfo::with_oid(JSON)
    }
}

#[cfg(feature = "postgres")]
impl sqlx::Encode<'_, sqlx::Postgres> for PgJson<'_> {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        // `json`'s binary form is its text.
        serde_json::to_writer(&mut **buf, self.0)?;
        Ok(sqlx::encode::IsNull::No)
    }
}

/// The headers as a SQLite parameter: JSON text.
#[cfg(feature = "sqlite")]
fn sqlite_json(headers: &serde_json::Value) -> sqlx::types::Json<&serde_json::Value> {
    sqlx::types::Json(headers)
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

    /// Runs the outbox's own INSERT (all eight values bound) for an event whose type is not
    /// known at compile time.
    #[doc(hidden)]
    fn insert_any<'a>(
        &'a mut self,
        statement: &'a str,
        row: NewRow<'a>,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>>;
}

/// The statement for `table`: the generated one when the table is the default.
fn statement_for(
    statement: &'static str,
    table: &str,
) -> AssertSqlSafe<std::borrow::Cow<'static, str>> {
    if table == crate::config::DEFAULT_OUTBOX_TABLE {
        AssertSqlSafe(std::borrow::Cow::Borrowed(statement))
    } else {
        // `table` was validated as a plain identifier when the bus was built.
        AssertSqlSafe(std::borrow::Cow::Owned(statement.replacen(
            crate::config::DEFAULT_OUTBOX_TABLE,
            table,
            1,
        )))
    }
}

/// The same INSERTs, bound the same way, for each dialect's transaction.
macro_rules! outbox_transaction {
    ($($feature:literal: $db:ident => $dialect:ident, $json:path),*) => {$(
        #[cfg(feature = $feature)]
        impl OutboxTransaction for sqlx::Transaction<'_, sqlx::$db> {
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
                        .bind($json(&row.headers))
                        .bind(row.envelope.payload.as_slice())
                        .bind(row.shard)
                        .execute(&mut **self)
                        .await
                        .map(|_| ())
                })
            }

            fn insert_any<'a>(
                &'a mut self,
                statement: &'a str,
                row: NewRow<'a>,
            ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
                Box::pin(async move {
                    let envelope = row.envelope;
                    sqlx::query(sql(statement))
                        .bind(envelope.id)
                        .bind(&envelope.topic)
                        .bind(envelope.key.as_deref())
                        .bind(&envelope.event_type)
                        .bind(envelope.version as i32)
                        .bind($json(&row.headers))
                        .bind(envelope.payload.as_slice())
                        .bind(row.shard)
                        .execute(&mut **self)
                        .await
                        .map(|_| ())
                })
            }
        }
    )*};
}

outbox_transaction!("postgres": Postgres => Postgres, PgJson, "sqlite": Sqlite => Sqlite, sqlite_json);

/// The outbox INSERT the code generator emitted for an event type, in both dialects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Generated {
    postgres: &'static str,
    sqlite: &'static str,
}

impl Generated {
    /// The statements of `E`.
    pub(crate) fn of<E: Event>() -> Self {
        Generated {
            postgres: E::OUTBOX_INSERT_POSTGRES,
            sqlite: E::OUTBOX_INSERT_SQLITE,
        }
    }

    fn of_dialect(self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Postgres => self.postgres,
            Dialect::Sqlite => self.sqlite,
        }
    }
}

/// Why a row was not written.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The transaction is of another dialect than the store.
    Dialect(String),
    /// The database refused it.
    Database(sqlx::Error),
}

impl From<sqlx::Error> for WriteError {
    fn from(e: sqlx::Error) -> Self {
        WriteError::Database(e)
    }
}

impl OutboxStore {
    /// Writes the row of `envelope` into `tx`: with `generated` (the statement of its type), or,
    /// for an event built at run time, the outbox's own INSERT.
    pub(crate) async fn insert<T: OutboxTransaction + ?Sized>(
        &self,
        tx: &mut T,
        envelope: &Envelope,
        generated: Option<Generated>,
        shards: u32,
    ) -> Result<(), WriteError> {
        if tx.dialect() != self.dialect() {
            return Err(WriteError::Dialect(format!(
                "the transaction is {:?} but the outbox `{}` is {:?}: begin it on the bus's database",
                tx.dialect(),
                self.table,
                self.dialect()
            )));
        }
        let row = NewRow::new(envelope, shards);
        match generated {
            Some(g) => {
                tx.insert(g.of_dialect(tx.dialect()), &self.table, row)
                    .await?
            }
            None => tx.insert_any(&self.sql.insert, row).await?,
        }
        Ok(())
    }

    /// Writes `envelopes` in one transaction of their own; on error, the index of the envelope
    /// that failed (0 when the transaction itself failed).
    pub(crate) async fn write(
        &self,
        envelopes: &[Envelope],
        generated: Option<Generated>,
        shards: u32,
    ) -> Result<(), (usize, WriteError)> {
        macro_rules! in_one_transaction {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await.map_err(|e| (0, e.into()))?;
                for (i, envelope) in envelopes.iter().enumerate() {
                    self.insert(&mut tx, envelope, generated, shards)
                        .await
                        .map_err(|e| (i, e))?;
                }
                tx.commit().await.map_err(|e| (0, e.into()))
            }};
        }
        match &self.db {
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => in_one_transaction!(pool),
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => in_one_transaction!(pool),
        }
    }
}
