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
                late.sort_unstable_by_key(|r| r.id);
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
                rows.retain(|r| {
                    let Some(key) = r.key.as_ref() else {
                        return true;
                    };
                    !resume.held.contains(key) && held.get(key).is_none_or(|first| r.id < *first)
                });
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

/// The relay's resumed reads on a real PostgreSQL (`EVENTBUS_TEST_DATABASE_URL`, started by
/// `scripts/services`), step by step: which rows each read returns when a transaction below
/// the resume point commits between two reads.
#[cfg(all(test, feature = "postgres"))]
mod resumed_reads {
    use super::{OutboxStore, Resume};
    use sqlx::PgPool;

    /// One test at a time: a transaction left running by one holds back every later one's rows
    /// (readability is cluster-wide), which would make another's reads depend on timing.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// The test database, or `None` (the test says it did not run) when the services are not
    /// required.
    async fn database() -> Option<PgPool> {
        let required = std::env::var("EVENTBUS_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        let Ok(url) = std::env::var("EVENTBUS_TEST_DATABASE_URL") else {
            assert!(
                !required,
                "EVENTBUS_REQUIRE_SERVICES=1 but EVENTBUS_TEST_DATABASE_URL is not set"
            );
            eprintln!("not run: start the services with `scripts/services start`");
            return None;
        };
        Some(PgPool::connect(&url).await.expect("the test database"))
    }

    async fn store(pool: &PgPool) -> OutboxStore {
        let table = format!("resume_{}", uuid::Uuid::now_v7().simple());
        let store = OutboxStore::postgres(pool.clone(), &table).expect("a valid table name");
        store.migrate().await.expect("the outbox's tables");
        store
    }

    async fn insert<'c, E: sqlx::PgExecutor<'c>>(db: E, table: &str, key: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} (event_id, topic, partition_key, event_type, version, headers, payload, shard) \
             VALUES ($1, 't', $2, 'e', 1, '{{}}', '\\x00', 0) RETURNING id"
        )))
        .bind(uuid::Uuid::now_v7())
        .bind(key)
        .fetch_one(db)
        .await
        .expect("an outbox row")
    }

    fn ids(rows: &[super::PendingRow]) -> Vec<i64> {
        rows.iter().map(|r| r.id).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_row_committed_below_the_resume_point_comes_in_the_next_read_before_its_key() {
        let _one = ONE_AT_A_TIME.lock().await;
        let Some(pool) = database().await else { return };
        let store = store(&pool).await;
        let reader = store.relay_reader();
        let t = store.table().to_owned();
        // The older transaction takes its xid first; the late one writes its row (the lowest
        // id); the older one writes ten rows above it and commits. While the late one runs,
        // its row is not readable and the ten are.
        let mut older = pool.begin().await.unwrap();
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut *older)
            .await
            .unwrap();
        let mut late = pool.begin().await.unwrap();
        let late_id = insert(&mut *late, &t, "a").await;
        let mut filler = Vec::new();
        for i in 0..10 {
            filler.push(insert(&mut *older, &t, &format!("f{i}")).await);
        }
        older.commit().await.unwrap();

        let mut resume = Resume::default();
        let first = reader.fetch(&[0], 4, &mut resume).await.unwrap();
        assert_eq!(
            ids(&first),
            filler[..4],
            "the first read: the filler, from the start"
        );
        assert_eq!(resume.after, filler[3]);

        // The late row commits below the resume point, then a later row of its key.
        late.commit().await.unwrap();
        let later_id = insert(&pool, &t, "a").await;
        let second = reader.fetch(&[0], 4, &mut resume).await.unwrap();
        assert_eq!(
            ids(&second),
            [late_id, filler[4], filler[5], filler[6]],
            "the late row first, then the reads go on past the resume point"
        );
        let third = reader.fetch(&[0], 4, &mut resume).await.unwrap();
        assert_eq!(ids(&third), [filler[7], filler[8], filler[9], later_id]);
        let fourth = reader.fetch(&[0], 4, &mut resume).await.unwrap();
        assert!(
            fourth.is_empty(),
            "nothing is read twice: {:?}",
            ids(&fourth)
        );
        assert!(resume.held.is_empty() && !resume.last);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_held_below_the_resume_point_waits_for_the_next_drain() {
        let _one = ONE_AT_A_TIME.lock().await;
        let Some(pool) = database().await else { return };
        let store = store(&pool).await;
        let reader = store.relay_reader();
        let t = store.table().to_owned();
        // A running transaction (its xid below the next writes') holds back every later xid;
        // a committed row of key "a" after it is visible but not readable, so "a" is held.
        let mut running = pool.begin().await.unwrap();
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut *running)
            .await
            .unwrap();
        let mut committed = pool.begin().await.unwrap();
        let a1 = insert(&mut *committed, &t, "a").await;
        let b1 = insert(&mut *committed, &t, "b").await;
        committed.commit().await.unwrap();
        let mut resume = Resume::default();
        assert!(
            reader
                .fetch(&[0], 10, &mut resume)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            resume.held.is_empty(),
            "a held row past the resume point is read in order later"
        );
        running.commit().await.unwrap();

        // Now both are readable: "a" goes first (a1, then b1), a later "a" past them too.
        let a2 = insert(&pool, &t, "a").await;
        let second = reader.fetch(&[0], 10, &mut resume).await.unwrap();
        assert_eq!(ids(&second), [a1, b1, a2]);

        // A row of "c" backing off, then one ready after it: "c" is held; its first held row is
        // past the resume point, so the drain keeps reading it while it backs off.
        let c1 = insert(&pool, &t, "c").await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {t} SET next_attempt_at = now() + interval '1 hour' WHERE id = $1"
        )))
        .bind(c1)
        .execute(&pool)
        .await
        .unwrap();
        let c2 = insert(&pool, &t, "c").await;
        let d1 = insert(&pool, &t, "d").await;
        let third = reader.fetch(&[0], 10, &mut resume).await.unwrap();
        assert_eq!(ids(&third), [d1], "c2 waits behind c1, backing off");
        assert!(
            resume.held.contains("c"),
            "c1 is below the resume point now: c is held for the rest of the drain"
        );
        // c1's backoff ends mid-drain: the drain does not go back for it, so c2 is not sent
        // either; the next drain's first read takes both, in order.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {t} SET next_attempt_at = now() WHERE id = $1"
        )))
        .bind(c1)
        .execute(&pool)
        .await
        .unwrap();
        let c3 = insert(&pool, &t, "c").await;
        assert!(
            reader
                .fetch(&[0], 10, &mut resume)
                .await
                .unwrap()
                .is_empty()
        );
        let mut next_drain = Resume::default();
        let rows = reader.fetch(&[0], 10, &mut next_drain).await.unwrap();
        // The rows read earlier were not deleted here: the next drain reads them again too.
        let c: Vec<i64> = rows
            .iter()
            .filter(|r| r.key.as_deref() == Some("c"))
            .map(|r| r.id)
            .collect();
        assert_eq!(c, [c1, c2, c3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn more_late_rows_than_a_batch_end_the_drain_in_id_order() {
        let _one = ONE_AT_A_TIME.lock().await;
        let Some(pool) = database().await else { return };
        let store = store(&pool).await;
        let reader = store.relay_reader();
        let t = store.table().to_owned();
        let mut older = pool.begin().await.unwrap();
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut *older)
            .await
            .unwrap();
        let mut late = pool.begin().await.unwrap();
        let mut late_ids = Vec::new();
        for i in 0..6 {
            late_ids.push(insert(&mut *late, &t, &format!("l{}", i % 2)).await);
        }
        let filler = insert(&mut *older, &t, "f").await;
        older.commit().await.unwrap();
        let mut resume = Resume::default();
        assert_eq!(
            ids(&reader.fetch(&[0], 4, &mut resume).await.unwrap()),
            [filler]
        );
        late.commit().await.unwrap();
        let after = insert(&pool, &t, "l0").await;
        let rows = reader.fetch(&[0], 4, &mut resume).await.unwrap();
        assert_eq!(
            ids(&rows),
            late_ids[..4],
            "the lowest late rows, in id order"
        );
        assert!(resume.last, "the drain ends after this batch");
        let mut next_drain = Resume::default();
        let mut rest = ids(&reader.fetch(&[0], 10, &mut next_drain).await.unwrap());
        rest.retain(|id| !late_ids[..4].contains(id) && *id != filler);
        assert_eq!(rest, [late_ids[4], late_ids[5], after]);
    }
}
