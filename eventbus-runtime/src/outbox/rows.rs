//! What the relay does to outbox rows: read them in commit order, mark them sent, schedule a
//! retry, move one to the dead table, purge the sent ones.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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
    pub(crate) headers: RowHeaders,
    pub(crate) payload: Vec<u8>,
    pub(crate) attempts: i32,
}

/// Where a drain's next read of the outbox resumes. The relay reads the next batch while the
/// current one is in flight, so a read must leave out the rows the drain read already.
///
/// PostgreSQL reads past the highest id read so far, and finds the rows below it that became
/// readable since the previous read through the xid index (see the fetch statement in
/// `statements.rs`): no scan steps over the rows in flight, acknowledged but not yet deleted, or
/// deleted but not yet vacuumed. SQLite (one writer, ids in commit order) leaves out the ids in
/// flight.
#[derive(Debug, Default)]
pub(crate) struct Resume {
    /// PostgreSQL: the highest id this drain read past (0 before its first read).
    pub(crate) after: i64,
    /// PostgreSQL: the xmin of the previous read's snapshot (none before the first read).
    pub(crate) xmin: Option<i64>,
    /// PostgreSQL: keys held back for the rest of the drain, because a row of theirs at or
    /// below `after` was left unread (an earlier row of the key backing off, not yet readable,
    /// or failed in a batch). Their rows wait for the next drain's first read.
    pub(crate) held: std::collections::HashSet<String>,
    /// Set when a read found more late rows than a batch holds: the drain ends after that
    /// batch, and the next drain's first read takes the rest in order.
    pub(crate) last: bool,
    /// SQLite: the ids read and not yet marked sent.
    pub(crate) in_flight: Vec<i64>,
}

/// Ids to delete (or mark sent) in one statement: the longest run of consecutive ids as its first
/// and last id, and every other id on its own. A relay's acknowledged rows are mostly one run (one
/// relay over its shards, ids in commit order); rows of other relays' shards, held keys and
/// failed rows break it.
#[cfg(feature = "postgres")]
#[derive(Debug)]
pub(crate) struct IdRuns {
    pub(crate) singles: Vec<i64>,
    /// The first and last id of the longest run, when it is at least [`IdRuns::MIN_RUN`] long.
    pub(crate) run: Option<(i64, i64)>,
}

#[cfg(feature = "postgres")]
impl IdRuns {
    /// A shorter run costs less as single ids.
    const MIN_RUN: usize = 4;

    pub(crate) fn of(ids: &[i64]) -> Self {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        // The longest run of consecutive ids, as a range of indexes into `sorted`.
        let (mut longest, mut start) = (0..0, 0);
        for end in 1..=sorted.len() {
            if end < sorted.len() && sorted[end] == sorted[end - 1] + 1 {
                continue;
            }
            if end - start > longest.len() {
                longest = start..end;
            }
            start = end;
        }
        if longest.len() < Self::MIN_RUN {
            return IdRuns {
                singles: sorted,
                run: None,
            };
        }
        let run = Some((sorted[longest.start], sorted[longest.end - 1]));
        sorted.drain(longest);
        IdRuns {
            singles: sorted,
            run,
        }
    }
}

/// The CloudEvents headers of a row: the JSON object of strings the outbox stores, kept as its
/// text and read when the record is built, borrowing each name and value that has no escape (no
/// map, no allocation per header on the relay's path).
#[derive(Debug, Clone)]
pub(crate) struct RowHeaders(pub(crate) String);

impl RowHeaders {
    /// The headers whose values are strings, in stored order (an unreadable object has none).
    pub(crate) fn pairs(&self) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
        serde_json::from_str::<Pairs<'_>>(&self.0)
            .map(|p| p.0)
            .unwrap_or_default()
    }

    /// The value of header `name`, when it is a string.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        self.pairs()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// A JSON object's string members.
struct Pairs<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de> Deserialize<'de> for Pairs<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Pairs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(10));
                while let Some(Text(name)) = map.next_key()? {
                    if let MaybeText(Some(value)) = map.next_value()? {
                        out.push((name, value));
                    }
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(Members)
    }
}

/// A string, borrowed from the input when it can be.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor)
            .map(|t| Text(t.unwrap_or_default()))
    }
}

/// A string member's value; another JSON value is skipped (`None`).
struct MaybeText<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for MaybeText<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor).map(MaybeText)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v)))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

impl OutboxStore {
    /// Up to `limit` rows ready to publish from `shards`, in commit order, without the rows
    /// this drain read already (`resume`, which the read moves on).
    pub(crate) async fn fetch(
        &self,
        shards: &[i32],
        limit: usize,
        resume: &mut Resume,
    ) -> Result<Vec<PendingRow>, sqlx::Error> {
        fn row<R: Row>(r: &R, from: usize) -> Result<PendingRow, sqlx::Error>
        where
            usize: sqlx::ColumnIndex<R>,
            i64: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
            i32: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
            Uuid: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
            String: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
            Option<String>: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
            Vec<u8>: sqlx::Type<R::Database> + for<'d> sqlx::Decode<'d, R::Database>,
        {
            Ok(PendingRow {
                id: r.try_get(from)?,
                event_id: r.try_get(from + 1)?,
                topic: r.try_get(from + 2)?,
                key: r.try_get(from + 3)?,
                headers: RowHeaders(r.try_get(from + 4)?),
                payload: r.try_get(from + 5)?,
                attempts: r.try_get(from + 6)?,
            })
        }
        let limit = limit as i64;
        let rows = match &self.db {
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                let fetched = sqlx::query(sql(&self.sql.fetch))
                    .bind(shards)
                    .bind(limit)
                    .bind(resume.after)
                    .bind(resume.xmin.map(|x| x.to_string()))
                    .fetch_all(pool)
                    .await?;
                let mut rows = Vec::with_capacity(fetched.len());
                let mut late = Vec::new();
                let mut held: std::collections::HashMap<String, i64> =
                    std::collections::HashMap::new();
                for r in &fetched {
                    match r.try_get::<i32, _>(0)? {
                        0 => rows.push(row(r, 1)?),
                        3 => late.push(row(r, 1)?),
                        1 => {
                            held.insert(r.try_get(4)?, r.try_get(1)?);
                        }
                        _ => resume.xmin = Some(r.try_get(1)?),
                    }
                }
                // `late` comes in id order (its `ORDER BY` in the statement).
                if late.len() as i64 >= limit {
                    // More late rows than a batch: the lowest of them in id order, and the
                    // drain ends after this batch (the rest may hold a key of any row past them).
                    rows = late;
                    resume.last = true;
                } else if !late.is_empty() {
                    rows.truncate(limit as usize - late.len());
                    late.append(&mut rows);
                    rows = late;
                }
                if let Some(last) = rows.last() {
                    resume.after = resume.after.max(last.id);
                }
                if !held.is_empty() || !resume.held.is_empty() {
                    rows.retain(|r| {
                        let Some(key) = r.key.as_ref() else {
                            return true;
                        };
                        !resume.held.contains(key)
                            && held.get(key).is_none_or(|first| r.id < *first)
                    });
                }
                // A key held now whose first held row is at or below the resume point stays held
                // for the rest of the drain: that row, and any of its later rows left out here,
                // are not read again before the next drain's first read.
                resume.held.extend(
                    held.into_iter()
                        .filter(|(_, first)| *first <= resume.after)
                        .map(|(key, _)| key),
                );
                rows
            }
            #[cfg(feature = "sqlite")]
            Db::Sqlite(pool) => sqlx::query(sql(&self.sql.fetch))
                .bind(now_ms())
                .bind(limit)
                .bind(serde_json::to_string(&resume.in_flight).unwrap_or_else(|_| "[]".into()))
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| row(r, 0))
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
                let runs = IdRuns::of(ids);
                sqlx::query(sql(statement))
                    .bind(&runs.singles)
                    .bind(runs.run.map(|(first, _)| first))
                    .bind(runs.run.map(|(_, last)| last))
                    .execute(pool)
                    .await?;
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

#[cfg(test)]
mod tests {
    use super::RowHeaders;

    #[test]
    fn row_headers_read_strings_in_order_and_skip_the_rest() {
        let h = RowHeaders(
            r#"{"ce_id":"a","ce_type":"x\"y","n":1,"o":{"k":[1,2]},"ce_source":"s","z":null}"#
                .to_owned(),
        );
        let pairs: Vec<(String, String)> = h
            .pairs()
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            pairs,
            [("ce_id", "a"), ("ce_type", "x\"y"), ("ce_source", "s")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(h.get("ce_type").as_deref(), Some("x\"y"));
        assert_eq!(h.get("n"), None);
        assert!(RowHeaders("not json".to_owned()).pairs().is_empty());
    }
}

/// The relay's resumed reads on a real PostgreSQL, step by step.
#[cfg(all(test, feature = "postgres"))]
mod resumed_reads;
