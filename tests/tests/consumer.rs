//! Typed consumers on both layers: dead letters and replay, the inbox across a crash, a consumer
//! group across a rebalance, filters (on the fast path and through envelopes), per-key order with
//! handlers that finish at once, wait or fail.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventbus::dlq;
use eventbus::{
    Category, Database, EventBus, EventContext, EventFilter, Inbox, InboxTx, RetryPolicy,
};
use eventbus_tests::{Job, JobTopic, OrderPlaced, OrderPlacedTopic, Petstore};
use support::{Layer, Reader, direct_bus};
use uuid::Uuid;

fn run_id() -> String {
    Uuid::now_v7().simple().to_string()
}

fn jobs(run: &str, n: u64, keys: u64) -> Vec<Job> {
    (0..n)
        .map(|i| Job {
            key: format!("{run}-{}", i % keys),
            run: run.to_owned(),
            n: i,
            poison: false,
        })
        .collect()
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The dead letter of event `id`: exactly one arrives (within 30 s).
fn dead_letter(reader: &Reader, id: &str, layer: &str) -> support::Record {
    let is_it = |r: &support::Record| r.header("ce_id").as_deref() == Some(id);
    let dead = tokio::task::block_in_place(|| {
        reader.read(Duration::from_secs(30), |got| got.iter().any(is_it))
    });
    let mut dead: Vec<_> = dead.into_iter().filter(is_it).collect();
    assert_eq!(dead.len(), 1, "{layer}: one dead letter of {id}");
    dead.remove(0)
}

/// Handled jobs of this run, by number, in handling order.
type Seen = Arc<Mutex<Vec<(String, u64)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_goes_to_the_dlq_while_other_keys_flow_and_replays_once_fixed() {
    for layer in support::layers().await {
        let run = run_id();
        let bus = direct_bus(&layer).await;
        let dlq_reader = Reader::at_end(&layer.kafka, "eventbus.tests.jobs.dlq").await;
        let notices = Reader::at_end(&layer.kafka, dlq::DeadLettered::TOPIC).await;
        let seen: Seen = Arc::default();
        let fixed = Arc::new(AtomicBool::new(false));
        let (seen2, fixed2, run2) = (Arc::clone(&seen), Arc::clone(&fixed), run.clone());
        let hooked: Arc<Mutex<Vec<dlq::DeadLettered>>> = Arc::default();
        let hook = Arc::clone(&hooked);
        let consumer = bus
            .consumer(&format!("poison-{run}"))
            .on_dead_letter(move |n| hook.lock().unwrap().push(n.clone()))
            .subscribe::<JobTopic>()
            .on::<Job, _>(move |job: Job| {
                let (seen, fixed, run) = (Arc::clone(&seen2), Arc::clone(&fixed2), run2.clone());
                async move {
                    if job.run != run {
                        return Ok(()); // another run's record
                    }
                    if job.poison && !fixed.load(Ordering::SeqCst) {
                        return Err(format!("job {} is poison", job.n));
                    }
                    seen.lock().unwrap().push((job.key, job.n));
                    Ok(())
                }
            })
            .retry(
                RetryPolicy::exponential(Duration::from_millis(20), Duration::from_millis(100))
                    .max_attempts(3),
            )
            .start()
            .await
            .unwrap();
        let stats = consumer.stats();

        let mut batch = jobs(&run, 60, 6);
        batch[7].poison = true; // key 1
        let poison_key = batch[7].key.clone();
        let receipts = bus.publish_all(&batch).await.unwrap();
        let poison_id = receipts[7].event_id;

        wait_until("59 jobs are handled", Duration::from_secs(60), || {
            seen.lock().unwrap().len() >= 59
        })
        .await;
        let d = &dead_letter(&dlq_reader, &poison_id.to_string(), layer.name);
        assert_eq!(
            d.header(dlq::ORIGINAL_TOPIC).as_deref(),
            Some("eventbus.tests.jobs")
        );
        assert_eq!(d.header(dlq::ATTEMPTS).as_deref(), Some("3"));
        assert!(d.header(dlq::ERROR).unwrap().contains("job 7 is poison"));
        assert!(
            d.header(dlq::ORIGINAL_OFFSET).is_some() && d.header(dlq::ORIGINAL_PARTITION).is_some()
        );
        assert!(d.header(dlq::FAILED_IN).is_some());
        assert_eq!(d.header(dlq::CLASS).as_deref(), Some("handler"));
        assert_eq!(stats.dead_lettered(), 1);
        assert_eq!(stats.dead_lettered_by(dlq::ErrorClass::Handler), 1);
        assert!(stats.retried() >= 2);
        let announced = tokio::task::block_in_place(|| {
            support::notifications(&notices, &poison_id.to_string())
        });
        assert_eq!(announced.len(), 1, "{}: one notification", layer.name);
        let notice = &announced[0];
        assert_eq!(notice.class, dlq::ErrorClass::Handler);
        assert_eq!(notice.topic, "eventbus.tests.jobs");
        assert_eq!(
            notice.group.as_deref(),
            Some(format!("poison-{run}").as_str())
        );
        assert_eq!(notice.service.as_deref(), Some("petstore"));
        assert_eq!(
            notice.dead_letter_topic.as_deref(),
            Some("eventbus.tests.jobs.dlq")
        );
        assert_eq!(notice.attempts, 3);
        assert!(notice.error.contains("job 7 is poison"));
        assert_eq!(
            notice.partition.map(|p| p.to_string()),
            d.header(dlq::ORIGINAL_PARTITION)
        );
        assert_eq!(
            *hooked.lock().unwrap(),
            announced,
            "{}: the hook, once",
            layer.name
        );
        {
            let seen = seen.lock().unwrap();
            // The poison key's later jobs were handled after it went dead, in order.
            let key1: Vec<u64> = seen
                .iter()
                .filter(|(k, _)| *k == poison_key)
                .map(|(_, n)| *n)
                .collect();
            assert_eq!(
                key1,
                vec![1, 13, 19, 25, 31, 37, 43, 49, 55],
                "{}",
                layer.name
            );
        }

        // Fix the handler, replay the dead letter: it is handled once.
        fixed.store(true, Ordering::SeqCst);
        let replayed = dlq::replay(
            &layer.kafka,
            "eventbus.tests.jobs.dlq",
            dlq::Which::Events(vec![poison_id]),
        )
        .await
        .unwrap();
        assert_eq!(replayed, 1);
        wait_until(
            "the replayed job is handled",
            Duration::from_secs(30),
            || seen.lock().unwrap().iter().any(|(_, n)| *n == 7),
        )
        .await;
        assert_eq!(
            seen.lock().unwrap().len(),
            60,
            "{}: every job handled once",
            layer.name
        );
        consumer.shutdown().await;
    }
}

/// Creates an effects table and returns the consumer's inbox on the layer's database.
async fn effects_and_inbox(layer: &Layer, run: &str) -> (Inbox, String) {
    let effects = format!("fx_{run}");
    match layer.store.database() {
        Database::Postgres(pool) => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE {effects} (n BIGINT NOT NULL)"
            )))
            .execute(&pool)
            .await
            .unwrap();
            (Inbox::postgres(pool, "eventbus_inbox").unwrap(), effects)
        }
        Database::Sqlite(pool) => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE {effects} (n INTEGER NOT NULL)"
            )))
            .execute(&pool)
            .await
            .unwrap();
            (Inbox::sqlite(pool, "eventbus_inbox").unwrap(), effects)
        }
        Database::Url(_) => unreachable!(),
    }
}

async fn effects(layer: &Layer, table: &str) -> (i64, i64) {
    let q = format!("SELECT count(*), count(DISTINCT n) FROM {table}");
    match layer.store.database() {
        Database::Postgres(pool) => sqlx::query_as(sqlx::AssertSqlSafe(q))
            .fetch_one(&pool)
            .await
            .unwrap(),
        Database::Sqlite(pool) => sqlx::query_as(sqlx::AssertSqlSafe(q))
            .fetch_one(&pool)
            .await
            .unwrap(),
        Database::Url(_) => unreachable!(),
    }
}

/// A consumer that writes one effect row per job inside the inbox transaction.
fn effect_consumer(
    bus: &EventBus<Petstore>,
    group: &str,
    inbox: &Inbox,
    table: &str,
    run: &str,
    slow: Duration,
) -> eventbus::consumer::Consumer<Petstore, JobTopic> {
    let (table, run) = (table.to_owned(), run.to_owned());
    bus.consumer(group)
        .subscribe::<JobTopic>()
        .inbox(inbox.clone())
        .on_tx::<Job, _>(move |job: Job, mut tx: InboxTx| {
            let (table, run) = (table.clone(), run.clone());
            async move {
                if job.run == run {
                    let insert =
                        sqlx::AssertSqlSafe(format!("INSERT INTO {table} (n) VALUES ({})", job.n));
                    match &mut tx {
                        InboxTx::Postgres(_) => {
                            sqlx::query(insert).execute(tx.postgres()?).await?;
                        }
                        InboxTx::Sqlite(_) => {
                            sqlx::query(insert).execute(tx.sqlite()?).await?;
                        }
                    }
                    tokio::time::sleep(slow).await; // a slow handler: the crash lands mid-handler
                }
                Ok::<_, eventbus::HandlerError>(tx)
            }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_inbox_a_crash_mid_handler_has_its_effects_exactly_once() {
    for layer in support::layers().await {
        let run = run_id();
        let group = format!("inbox-{run}");
        let bus = direct_bus(&layer).await;
        let (inbox, table) = effects_and_inbox(&layer, &run).await;
        bus.publish_all(&jobs(&run, 200, 20)).await.unwrap();

        let first = effect_consumer(
            &bus,
            &group,
            &inbox,
            &table,
            &run,
            Duration::from_millis(20),
        )
        .start()
        .await
        .unwrap();
        let first_stats = first.stats();
        wait_until(
            "the first consumer is mid-way",
            Duration::from_secs(60),
            || first_stats.handled() >= 50,
        )
        .await;
        first.abort(); // a crash: handlers in the middle of their transaction never commit

        let second = effect_consumer(&bus, &group, &inbox, &table, &run, Duration::ZERO)
            .start()
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        while effects(&layer, &table).await.1 < 200 {
            assert!(
                Instant::now() < deadline,
                "{}: every job's effect lands",
                layer.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (rows, distinct) = effects(&layer, &table).await;
        assert_eq!(
            (rows, distinct),
            (200, 200),
            "{}: each effect exactly once",
            layer.name
        );
        eprintln!(
            "{}: first consumer handled {} before the crash; the second skipped {} redeliveries",
            layer.name,
            first_stats.handled(),
            second.stats().duplicates()
        );
        assert!(inbox.processed(&group).await.unwrap() >= 200);
        second.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_batch_commits_around_a_failing_record_in_order_and_exactly_once() {
    for layer in support::layers().await {
        let name = layer.name;
        let run = run_id();
        let bus = direct_bus(&layer).await;
        let table = format!("fx_batch_{run}");
        let (inbox, create) = match layer.store.database() {
            Database::Postgres(pool) => (
                Inbox::postgres(pool, "eventbus_inbox").unwrap(),
                format!(
                    "CREATE TABLE {table} (at BIGSERIAL PRIMARY KEY, k TEXT NOT NULL, n BIGINT NOT NULL)"
                ),
            ),
            Database::Sqlite(pool) => (
                Inbox::sqlite(pool, "eventbus_inbox").unwrap(),
                format!(
                    "CREATE TABLE {table} (at INTEGER PRIMARY KEY AUTOINCREMENT, k TEXT NOT NULL, n INTEGER NOT NULL)"
                ),
            ),
            Database::Url(_) => unreachable!(),
        };
        run_sql(&layer, &create).await;
        // 400 jobs over 8 keys, in batches of up to 64. Jobs 7, 57, 107, ... fail their first two
        // attempts (the batch's and one alone), job 123 fails every one (a dead letter).
        let total = 400;
        bus.publish_all(&jobs(&run, total, 8)).await.unwrap();
        let attempts: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
        let (fx, seen, wanted_run) = (table.clone(), Arc::clone(&attempts), run.clone());
        let consumer = bus
            .consumer(&format!("batch-{run}"))
            .subscribe::<JobTopic>()
            .inbox(inbox.batch(64))
            .retry(
                RetryPolicy::exponential(Duration::from_millis(5), Duration::from_millis(20))
                    .max_attempts(4),
            )
            .on_tx::<Job, _>(move |job: Job, mut tx: InboxTx| {
                let (fx, seen, wanted_run) = (fx.clone(), Arc::clone(&seen), wanted_run.clone());
                async move {
                    if job.run != wanted_run {
                        return Ok(tx);
                    }
                    let attempt = {
                        let mut seen = seen.lock().unwrap();
                        let a = seen.entry(job.n).or_default();
                        *a += 1;
                        *a
                    };
                    let insert = sqlx::AssertSqlSafe(format!(
                        "INSERT INTO {fx} (k, n) VALUES ('{}', {})",
                        job.key, job.n
                    ));
                    match &mut tx {
                        InboxTx::Postgres(_) => {
                            sqlx::query(insert).execute(tx.postgres()?).await?;
                        }
                        InboxTx::Sqlite(_) => {
                            sqlx::query(insert).execute(tx.sqlite()?).await?;
                        }
                    }
                    if job.n == 123 || (job.n % 50 == 7 && attempt <= 2) {
                        return Err(format!("job {} fails attempt {attempt}", job.n).into());
                    }
                    Ok::<_, eventbus::HandlerError>(tx)
                }
            })
            .start()
            .await
            .unwrap();
        let stats = consumer.stats();
        // (The topic may hold other runs' jobs: the handler skips them, the stats count them.)
        wait_until("job 123 is dead-lettered", Duration::from_secs(60), || {
            stats.dead_lettered() >= 1
        })
        .await;
        let effects = async || -> Vec<(String, i64)> {
            let q = format!("SELECT k, n FROM {table} ORDER BY at");
            match layer.store.database() {
                Database::Postgres(pool) => sqlx::query_as(sqlx::AssertSqlSafe(q))
                    .fetch_all(&pool)
                    .await
                    .unwrap(),
                Database::Sqlite(pool) => sqlx::query_as(sqlx::AssertSqlSafe(q))
                    .fetch_all(&pool)
                    .await
                    .unwrap(),
                Database::Url(_) => unreachable!(),
            }
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while (effects().await.len() as u64) < total - 1 {
            assert!(
                Instant::now() < deadline,
                "{name}: every job's effect lands"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(stats.dead_lettered(), 1, "{name}: job 123 only");
        // Committed effects: every job but 123, once each, and per key in publish order.
        let rows = effects().await;
        assert_eq!(
            rows.len() as u64,
            total - 1,
            "{name}: one effect per handled job"
        );
        let mut last: HashMap<String, i64> = HashMap::new();
        for (k, n) in &rows {
            assert_ne!(*n, 123, "{name}: the dead job's effects were rolled back");
            if let Some(prev) = last.insert(k.clone(), *n) {
                assert!(
                    prev < *n,
                    "{name}: key {k}: job {n} committed after job {prev}"
                );
            }
        }
        // The failing jobs were retried: each of 7, 57, ... ran at least three times.
        let attempts = attempts.lock().unwrap().clone();
        for n in (7..total).step_by(50) {
            assert!(
                attempts[&n] >= 3,
                "{name}: job {n} ran {} times",
                attempts[&n]
            );
        }
        eprintln!(
            "{name}: {} handled, {} dead, {} handler runs for {total} jobs",
            stats.handled(),
            stats.dead_lettered(),
            attempts.values().sum::<u32>()
        );
        consumer.shutdown().await;
    }
}

async fn run_sql(layer: &Layer, statement: &str) {
    let statement = sqlx::AssertSqlSafe(statement.to_owned());
    match layer.store.database() {
        Database::Postgres(pool) => {
            sqlx::raw_sql(statement).execute(&pool).await.unwrap();
        }
        Database::Sqlite(pool) => {
            sqlx::raw_sql(statement).execute(&pool).await.unwrap();
        }
        Database::Url(_) => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_of_a_group_split_partitions_across_a_rebalance() {
    for layer in support::layers().await {
        two_consumers_across_a_rebalance(&layer).await;
    }
    // The KIP-848 group protocol (the embedded layer's) on the real broker too: its rebalances are
    // incremental, and the revoke hook must still commit before partitions move.
    if let Some(mut layer) = support::real().await {
        layer.name = "real, group.protocol=consumer";
        layer.kafka = layer.kafka.with_property("group.protocol", "consumer");
        two_consumers_across_a_rebalance(&layer).await;
    }
}

async fn two_consumers_across_a_rebalance(layer: &Layer) {
    let run = run_id();
    let group = format!("group-{run}");
    let bus = direct_bus(layer).await;
    let (inbox, table) = effects_and_inbox(layer, &run).await;
    let one = effect_consumer(&bus, &group, &inbox, &table, &run, Duration::from_millis(5))
        .start()
        .await
        .unwrap();
    bus.publish_all(&jobs(&run, 200, 40)).await.unwrap();
    let one_stats = one.stats();
    wait_until(
        "the first member is working",
        Duration::from_secs(60),
        || one_stats.handled() >= 20,
    )
    .await;
    // A second member joins: the partitions are split (a rebalance).
    let two = effect_consumer(&bus, &group, &inbox, &table, &run, Duration::from_millis(5))
        .start()
        .await
        .unwrap();
    let two_stats = two.stats();
    let more: Vec<Job> = (200..400)
        .map(|i| Job {
            key: format!("{run}-{}", i % 40),
            run: run.clone(),
            n: i,
            poison: false,
        })
        .collect();
    // The split is done once the new member has partitions (with KIP-848 that takes a few
    // heartbeats: the first member gives up partitions before the second is given them).
    assert!(
        two.ready(Duration::from_secs(60)).await,
        "{}: the second member is assigned partitions",
        layer.name
    );
    bus.publish_all(&more).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while effects(layer, &table).await.1 < 400 {
        assert!(
            Instant::now() < deadline,
            "{}: every job is handled across the rebalance",
            layer.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The first member leaves (a second rebalance); nothing is lost or doubled.
    one.shutdown().await;
    let (rows, distinct) = effects(layer, &table).await;
    assert_eq!(
        (rows, distinct),
        (400, 400),
        "{}: at least once, and exactly once with the inbox",
        layer.name
    );
    assert!(
        two_stats.handled() > 0,
        "{}: the second member got partitions",
        layer.name
    );
    eprintln!(
        "{}: member one handled {}, member two {}",
        layer.name,
        one_stats.handled(),
        two_stats.handled()
    );
    two.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_excludes_what_it_should_and_nothing_else() {
    // On a Testing bus and on Kafka, the same filter gives the same deliveries.
    let layers = support::layers().await;
    let mut buses = vec![("testing", EventBus::testing(Petstore))];
    for layer in &layers {
        buses.push((layer.name, direct_bus(layer).await));
    }
    for (name, bus) in buses {
        let run = run_id();
        // Two filters: one with a payload predicate (each record becomes an envelope first), one
        // on headers only (the Kafka consumer decides from the raw headers).
        let by_headers = EventFilter::new()
            .category(Category::Domain)
            .source_service("petstore")
            .tenant_id("acme")
            .tag(&run);
        let with_payload = by_headers
            .clone()
            .payload_field("/total_cents", |v| v.as_u64().is_some_and(|c| c >= 100));
        let mut consumers = Vec::new();
        for (filter_name, filter) in [("headers", by_headers), ("payload", with_payload)] {
            let seen: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
            let seen2 = Arc::clone(&seen);
            let consumer = bus
                .consumer(&format!("filter-{filter_name}-{run}"))
                .subscribe::<OrderPlacedTopic>()
                .on::<OrderPlaced, _>(move |e: OrderPlaced| {
                    let seen = Arc::clone(&seen2);
                    async move {
                        seen.lock()
                            .unwrap()
                            .insert(e.order_id.to_string(), e.total_cents);
                    }
                })
                .filter(filter)
                .start()
                .await
                .unwrap();
            consumers.push((filter_name, consumer, seen, Vec::new()));
        }
        // (tenant, tagged, cents, wanted by the headers filter, wanted by the payload filter)
        let cases = [
            ("acme", true, 150, true, true),    // matches
            ("acme", true, 50, true, false),    // payload predicate fails
            ("other", true, 150, false, false), // another tenant
            ("acme", false, 150, false, false), // not tagged with this run
        ];
        for (tenant, tagged, cents, by_headers, by_payload) in cases {
            let mut ctx = EventContext::default().with_tenant(tenant);
            if tagged {
                ctx = ctx.with_tag(&run);
            }
            let e = OrderPlaced {
                order_id: Uuid::now_v7(),
                total_cents: cents,
            };
            bus.with_context(ctx).publish_domain(&e).await.unwrap();
            for (wanted, expected) in [by_headers, by_payload]
                .into_iter()
                .zip(consumers.iter_mut().map(|c| &mut c.3))
            {
                if wanted {
                    expected.push(e.order_id.to_string());
                }
            }
        }
        // A matching event published last: when it arrives, everything before it has been seen.
        let last = OrderPlaced {
            order_id: Uuid::now_v7(),
            total_cents: 100,
        };
        bus.with_context(EventContext::default().with_tenant("acme").with_tag(&run))
            .publish_domain(&last)
            .await
            .unwrap();
        let last_id = last.order_id.to_string();
        for (filter_name, consumer, seen, mut expected) in consumers {
            expected.push(last_id.clone());
            // Keys spread the events over partitions, so the last one published may arrive first:
            // wait for every matching one, then a little longer for any that should not come.
            wait_until(
                "every matching event arrives",
                Duration::from_secs(30),
                || {
                    let seen = seen.lock().unwrap();
                    expected.iter().all(|id| seen.contains_key(id))
                },
            )
            .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut got: Vec<String> = seen.lock().unwrap().keys().cloned().collect();
            got.sort();
            expected.sort();
            assert_eq!(
                got, expected,
                "{name}, filter on {filter_name}: exactly the matching events"
            );
            consumer.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_pauses_instead_of_burning_retries() {
    let layer = support::embedded().await;
    let run = run_id();
    let bus = direct_bus(&layer).await;
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let healthy = Arc::new(AtomicBool::new(false));
    let (c, h, r) = (Arc::clone(&calls), Arc::clone(&healthy), run.clone());
    let consumer = bus
        .consumer(&format!("breaker-{run}"))
        .subscribe::<JobTopic>()
        .on::<Job, _>(move |job: Job| {
            let (calls, healthy, run) = (Arc::clone(&c), Arc::clone(&h), r.clone());
            async move {
                if job.run != run {
                    return Ok(());
                }
                calls.fetch_add(1, Ordering::SeqCst);
                if healthy.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("downstream is down")
                }
            }
        })
        .retry(
            RetryPolicy::exponential(Duration::from_millis(5), Duration::from_millis(10))
                .max_attempts(1000),
        )
        .circuit_breaker(3, Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    assert!(consumer.ready(Duration::from_secs(30)).await);
    let stats = consumer.stats();
    bus.publish_all(&jobs(&run, 1, 1)).await.unwrap();
    wait_until("the circuit opens", Duration::from_secs(30), || {
        calls.load(Ordering::SeqCst) >= 3
    })
    .await;
    let at_open = calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        calls.load(Ordering::SeqCst) <= at_open + 1,
        "while open, no retry burns: {} calls after {at_open}",
        calls.load(Ordering::SeqCst)
    );
    healthy.store(true, Ordering::SeqCst);
    wait_until(
        "the job is handled after the cooldown",
        Duration::from_secs(10),
        || stats.handled() >= 1,
    )
    .await;
    assert_eq!(stats.dead_lettered(), 0);
    consumer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_that_wait_or_fail_keep_each_keys_order() {
    // Three kinds of handling interleave on every key: at once (in the poll loop), after waiting
    // (the record continues on a worker, the key's next records queue behind it), and after a
    // failure (retried with backoff). Every key must still see its records in order, each once.
    for layer in support::layers().await {
        let run = run_id();
        let bus = direct_bus(&layer).await;
        let seen: Seen = Arc::default();
        let failed_once: Arc<Mutex<std::collections::HashSet<u64>>> = Arc::default();
        let (s, f, r) = (Arc::clone(&seen), Arc::clone(&failed_once), run.clone());
        let consumer = bus
            .consumer(&format!("order-{run}"))
            .subscribe::<JobTopic>()
            .retry(RetryPolicy::exponential(
                Duration::from_millis(5),
                Duration::from_millis(20),
            ))
            .on::<Job, _>(move |job: Job| {
                let (seen, failed_once, run) = (Arc::clone(&s), Arc::clone(&f), r.clone());
                async move {
                    if job.run != run {
                        return Ok(());
                    }
                    match job.n % 5 {
                        1 => tokio::time::sleep(Duration::from_millis(3)).await,
                        2 => tokio::task::yield_now().await,
                        3 if failed_once.lock().unwrap().insert(job.n) => {
                            return Err(eventbus::HandlerError::from("failing once"));
                        }
                        _ => {}
                    }
                    seen.lock().unwrap().push((job.key, job.n));
                    Ok::<_, eventbus::HandlerError>(())
                }
            })
            .start()
            .await
            .unwrap();
        assert!(
            consumer.ready(Duration::from_secs(30)).await,
            "{}",
            layer.name
        );
        let total = 600;
        let batch = jobs(&run, total, 12);
        for chunk in batch.chunks(100) {
            bus.publish_all(chunk).await.unwrap();
        }
        wait_until("every job is handled", Duration::from_secs(60), || {
            seen.lock().unwrap().len() as u64 >= total
        })
        .await;
        let seen = seen.lock().unwrap().clone();
        let mut by_key: HashMap<String, Vec<u64>> = HashMap::new();
        for (key, n) in &seen {
            by_key.entry(key.clone()).or_default().push(*n);
        }
        assert_eq!(seen.len() as u64, total, "{}: each job once", layer.name);
        assert_eq!(by_key.len(), 12, "{}", layer.name);
        for (key, ns) in by_key {
            let mut sorted = ns.clone();
            sorted.sort_unstable();
            assert_eq!(ns, sorted, "{}: key {key} in order", layer.name);
        }
        let stats = consumer.stats();
        assert_eq!(
            stats.retried(),
            total / 5,
            "{}: one retry per failing job",
            layer.name
        );
        consumer.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_its_attempts_and_the_consumer_goes_on() {
    a_bad_handler_dead_letters_its_record(
        Poison::Panics,
        "the handler panicked: job 4 cannot be handled",
        dlq::ErrorClass::Panic,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_the_attempt_timeout_fails_and_its_key_goes_on() {
    a_bad_handler_dead_letters_its_record(
        Poison::Hangs,
        "did not finish within 100ms",
        dlq::ErrorClass::Timeout,
    )
    .await;
}

/// How the poisoned job's handler misbehaves.
#[derive(Clone, Copy)]
enum Poison {
    Panics,
    Hangs,
}

/// One job's handler panics or never finishes: the record goes to the dead-letter topic after its
/// attempts with `error` in its headers, while the consumer handles every other job, of the same
/// key too, and jobs published later.
async fn a_bad_handler_dead_letters_its_record(
    poison: Poison,
    error: &str,
    class: dlq::ErrorClass,
) {
    for layer in support::layers().await {
        let run = run_id();
        let bus = direct_bus(&layer).await;
        let dlq_reader = Reader::at_end(&layer.kafka, "eventbus.tests.jobs.dlq").await;
        let notices = Reader::at_end(&layer.kafka, dlq::DeadLettered::TOPIC).await;
        let seen: Seen = Arc::default();
        let (s, r) = (Arc::clone(&seen), run.clone());
        let consumer = bus
            .consumer(&format!("bad-handler-{run}"))
            .subscribe::<JobTopic>()
            .retry(
                RetryPolicy::exponential(Duration::from_millis(5), Duration::from_millis(20))
                    .max_attempts(3)
                    .attempt_timeout(Duration::from_millis(100)),
            )
            .on::<Job, _>(move |job: Job| {
                let (seen, run) = (Arc::clone(&s), r.clone());
                async move {
                    if job.run != run {
                        return;
                    }
                    match (job.poison, poison) {
                        (true, Poison::Panics) => panic!("job {} cannot be handled", job.n),
                        (true, Poison::Hangs) => std::future::pending::<()>().await,
                        (false, _) => {}
                    }
                    seen.lock().unwrap().push((job.key, job.n));
                }
            })
            .start()
            .await
            .unwrap();
        let stats = consumer.stats();
        let mut batch = jobs(&run, 30, 3);
        batch[4].poison = true;
        let receipts = bus.publish_all(&batch).await.unwrap();
        let poison_id = receipts[4].event_id.to_string();
        // The consumer outlives the bad job: every other job, and jobs published afterwards, are
        // handled.
        wait_until("29 jobs are handled", Duration::from_secs(60), || {
            seen.lock().unwrap().len() >= 29
        })
        .await;
        let later: Vec<Job> = (30..40)
            .map(|n| Job {
                key: format!("{run}-{}", n % 3),
                run: run.clone(),
                n,
                poison: false,
            })
            .collect();
        bus.publish_all(&later).await.unwrap();
        wait_until(
            "the later jobs are handled",
            Duration::from_secs(60),
            || seen.lock().unwrap().len() >= 39,
        )
        .await;
        let dead = dead_letter(&dlq_reader, &poison_id, layer.name);
        assert_eq!(dead.header(dlq::ATTEMPTS).as_deref(), Some("3"));
        let got = dead.header(dlq::ERROR).unwrap();
        assert!(got.contains(error), "{}: {got}", layer.name);
        assert_eq!(dead.header(dlq::CLASS).as_deref(), Some(class.as_str()));
        assert_eq!(stats.dead_lettered(), 1, "{}", layer.name);
        assert_eq!(stats.dead_lettered_by(class), 1, "{}", layer.name);
        let announced =
            tokio::task::block_in_place(|| support::notifications(&notices, &poison_id));
        assert_eq!(announced.len(), 1, "{}: one notification", layer.name);
        assert_eq!(announced[0].class, class, "{}", layer.name);
        assert_eq!(seen.lock().unwrap().len(), 39, "{}", layer.name);
        consumer.shutdown().await;
    }
}
