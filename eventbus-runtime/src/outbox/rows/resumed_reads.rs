//! The relay's resumed reads on a real PostgreSQL (`EVENTBUS_TEST_DATABASE_URL`, started by
//! `scripts/services`), step by step: which rows each read returns when a transaction below
//! the resume point commits between two reads, and which rows go once they were sent.

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

/// One test's outbox: a new table, read through the relay's read sessions, while the test holds
/// [`ONE_AT_A_TIME`].
struct Case {
    _one: tokio::sync::MutexGuard<'static, ()>,
    pool: PgPool,
    reader: OutboxStore,
    table: String,
}

/// A new case, or `None` when the services are not there (and not required).
async fn case() -> Option<Case> {
    let one = ONE_AT_A_TIME.lock().await;
    let pool = database().await?;
    let table = format!("resume_{}", uuid::Uuid::now_v7().simple());
    let store = OutboxStore::postgres(pool.clone(), &table).expect("a valid table name");
    store.migrate().await.expect("the outbox's tables");
    Some(Case {
        _one: one,
        pool,
        reader: store.relay_reader(),
        table,
    })
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

/// A transaction that has taken its xid: every transaction after it is younger.
async fn with_xid(pool: &PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.expect("a transaction");
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *tx)
        .await
        .expect("an xid");
    tx
}

/// Sets when row `id` of `table` may be tried again (`at`: an SQL timestamp expression).
async fn retry_at(pool: &PgPool, table: &str, id: i64, at: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET next_attempt_at = {at} WHERE id = $1"
    )))
    .bind(id)
    .execute(pool)
    .await
    .expect("the row's next attempt");
}

fn ids(rows: &[super::PendingRow]) -> Vec<i64> {
    rows.iter().map(|r| r.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_committed_below_the_resume_point_comes_in_the_next_read_before_its_key() {
    let Some(Case {
        _one,
        pool,
        reader,
        table: t,
    }) = case().await
    else {
        return;
    };
    // The older transaction takes its xid first; the late one writes its row (the lowest
    // id); the older one writes ten rows above it and commits. While the late one runs,
    // its row is not readable and the ten are.
    let mut older = with_xid(&pool).await;
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
    let Some(Case {
        _one,
        pool,
        reader,
        table: t,
    }) = case().await
    else {
        return;
    };
    // A running transaction (its xid below the next writes') holds back every later xid;
    // a committed row of key "a" after it is visible but not readable, so "a" is held.
    let running = with_xid(&pool).await;
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
    retry_at(&pool, &t, c1, "now() + interval '1 hour'").await;
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
    retry_at(&pool, &t, c1, "now()").await;
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
    let Some(Case {
        _one,
        pool,
        reader,
        table: t,
    }) = case().await
    else {
        return;
    };
    let mut older = with_xid(&pool).await;
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

/// The relay's read sessions leave the planner one way to read a batch (the fetch statement in
/// `statements.rs`): no sequential or bitmap scans, no sorts, no JIT, no parallel workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_sessions_turn_off_what_would_slow_a_read() {
    let Some(case) = case().await else {
        return;
    };
    let crate::outbox::Db::Postgres(reader) = &case.reader.db else {
        panic!("a PostgreSQL reader");
    };
    for (setting, expected) in [
        ("enable_seqscan", "off"),
        ("enable_bitmapscan", "off"),
        ("enable_sort", "off"),
        ("jit", "off"),
        ("max_parallel_workers_per_gather", "0"),
    ] {
        let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
            .fetch_one(reader)
            .await
            .expect("a setting");
        assert_eq!(value, expected, "{setting} on the relay's read sessions");
        let default: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
            .fetch_one(&case.pool)
            .await
            .expect("a setting");
        assert_ne!(
            default, expected,
            "{setting}: only the read sessions change it"
        );
    }
}

/// The rows a drain sent go in one statement, as runs of consecutive ids and single ids: exactly
/// those rows, whether deleted or (with a retention) marked sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_rows_go_by_runs_and_single_ids_and_no_other_row_does() {
    let Some(case) = case().await else {
        return;
    };
    let store = OutboxStore::postgres(case.pool.clone(), &case.table).expect("a valid table name");
    let mut all = Vec::new();
    for _ in 0..25 {
        all.push(insert(&case.pool, &case.table, "k").await);
    }
    let left = |sent: bool| {
        let (pool, table) = (case.pool.clone(), case.table.clone());
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM {table} WHERE (sent_at IS NOT NULL) = $1 ORDER BY id"
            )))
            .bind(sent)
            .fetch_all(&pool)
            .await
            .expect("the rows")
        }
    };
    let at = |i: &[usize]| i.iter().map(|&i| all[i]).collect::<Vec<_>>();
    // A run of five, a single id, a run of two, a run of eight (the longest, one range); out of
    // order and one repeated.
    let sent = at(&[12, 13, 6, 0, 1, 2, 3, 4, 8, 9, 14, 15, 16, 17, 18, 19, 13]);
    let runs = super::IdRuns::of(&sent);
    assert_eq!(runs.run, Some((all[12], all[19])));
    assert_eq!(runs.singles, at(&[0, 1, 2, 3, 4, 6, 8, 9]));
    store.sent(&sent, false).await.expect("deleted");
    assert_eq!(left(false).await, at(&[5, 7, 10, 11, 20, 21, 22, 23, 24]));
    // With a retention: a single id and a run are marked, the rest stays pending.
    store
        .sent(&at(&[7, 20, 21, 22, 23]), true)
        .await
        .expect("marked");
    assert_eq!(left(true).await, at(&[7, 20, 21, 22, 23]));
    assert_eq!(left(false).await, at(&[5, 10, 11, 24]));
    // No run: single ids only (the range's bounds are NULL).
    assert_eq!(super::IdRuns::of(&at(&[5, 10, 11])).run, None);
    store.sent(&at(&[5, 10, 11]), false).await.expect("deleted");
    assert_eq!(left(false).await, at(&[24]));
}

/// On the relay's sessions, the delete (or mark) of sent rows stays on the primary key's index
/// even when the table's statistics say it is empty (analyzed empty, then filled, as a queue's
/// often are). Run bounds PostgreSQL could not see got a sequential scan of the whole table in
/// the soak bench.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delete_of_sent_rows_stays_on_the_primary_key_whatever_the_statistics() {
    let Some(case) = case().await else {
        return;
    };
    let t = &case.table;
    sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {t}")))
        .execute(&case.pool)
        .await
        .expect("analyzed while empty");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {t} (event_id, topic, partition_key, event_type, version, headers, payload, shard) \
         SELECT gen_random_uuid(), 't', 'k' || g, 'e', 1, '{{}}', '\\x00', 0 \
         FROM generate_series(1, 50000) g"
    )))
    .execute(&case.pool)
    .await
    .expect("50,000 rows");
    let crate::outbox::Db::Postgres(reader) = &case.reader.db else {
        panic!("a PostgreSQL reader");
    };
    for statement in [&case.reader.sql.delete_sent, &case.reader.sql.mark_sent] {
        let plan: Vec<String> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN {statement}")))
                .bind(vec![1_i64, 3])
                .bind(Some(10_i64))
                .bind(Some(40_009_i64))
                .fetch_all(reader)
                .await
                .expect("a plan");
        let plan = plan.join("\n");
        assert!(
            !plan.contains("Seq Scan") && !plan.contains("Bitmap"),
            "the sent rows are found through an index scan:\n{plan}"
        );
        assert_eq!(
            plan.matches(&format!("Index Scan using {t}_pkey")).count(),
            2,
            "one index scan for the single ids, one for the run:\n{plan}"
        );
    }
}
