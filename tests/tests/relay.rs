//! The relay under load and under failure, on both layers (ARCHITECTURE.md, "One record, from `publish` to the offset commit"):
//! order and loss with concurrent writers and several relays, a relay crash, broker faults, and
//! a poison event.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventbus::config::Backoff;
use eventbus::dlq;
use eventbus::outbox::OutboxStore;
use eventbus::outbox::Replay;
use eventbus::relay::Relay;
use eventbus::relay::RelayHandle;
use eventbus::{Database, EventBus, KafkaConfig, OutboxConfig};
use eventbus_tests::{Blob, Letter, Petstore, Tick};
use support::{Layer, Reader, Record};

fn outbox(layer: &Layer) -> OutboxConfig {
    OutboxConfig {
        table: layer.table.clone(),
        batch_size: 500,
        poll_interval: Duration::from_millis(50),
        max_attempts: 3,
        backoff: Backoff {
            initial: Duration::from_millis(50),
            multiplier: 2.0,
            max: Duration::from_millis(400),
        },
        shards: 16,
        ..OutboxConfig::default()
    }
}

async fn writer_bus(layer: &Layer) -> EventBus<Petstore> {
    EventBus::builder(Petstore)
        .database(layer.store.database())
        .kafka(layer.kafka.clone())
        .outbox(outbox(layer))
        .without_relay()
        .build()
        .await
        .unwrap()
}

/// Writes to `layer`'s outbox (through a bus without a relay) an event of `key` over `limit`
/// bytes, the next event of its key, and 20 events of other keys of run `run`; returns a reader of
/// their topic from before they were written.
async fn write_oversized_and_others(layer: &Layer, run: &str, key: &str, limit: usize) -> Reader {
    let reader = Reader::at_end(&layer.kafka, Blob::TOPIC).await;
    let bus = writer_bus(layer).await;
    let big = Blob {
        key: key.to_owned(),
        data: "x".repeat(2 * limit),
    };
    let after_big = Blob {
        key: key.to_owned(),
        data: "after".into(),
    };
    bus.publish_all(&[big, after_big]).await.unwrap();
    let others: Vec<Blob> = (0..20)
        .map(|i| Blob {
            key: format!("{run}-k{i}"),
            data: "ok".into(),
        })
        .collect();
    bus.publish_all(&others).await.unwrap();
    reader
}

fn relay(store: &OutboxStore, kafka: &KafkaConfig, config: OutboxConfig) -> RelayHandle {
    Relay::new(store.clone(), kafka, config).unwrap().spawn()
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes `per_writer` ticks from each of `writers` concurrent writers over `keys` keys, 10 per
/// transaction. Each tick increments its key's counter row in the same transaction (locking it
/// in key order), so the counter value is the key's commit order.
async fn write_ticks(
    layer: &Layer,
    bus: &EventBus<Petstore>,
    run: &str,
    writers: u32,
    per_writer: u32,
    keys: u32,
) -> u64 {
    let counters = format!("c_{run}");
    match layer.store.database() {
        Database::Postgres(pool) => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE {counters} (key TEXT PRIMARY KEY, n BIGINT NOT NULL)"
            )))
            .execute(&pool)
            .await
            .unwrap();
        }
        Database::Sqlite(pool) => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE {counters} (key TEXT PRIMARY KEY, n INTEGER NOT NULL)"
            )))
            .execute(&pool)
            .await
            .unwrap();
        }
        Database::Url(_) => unreachable!(),
    }
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let bus = bus.clone();
        let db = layer.store.database();
        let counters = counters.clone();
        let run = run.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut written = 0;
            let mut rng = writer as u64 * 7919 + 17;
            while written < per_writer {
                let mut batch: Vec<String> = (0..10.min(per_writer - written))
                    .map(|_| {
                        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        format!("{run}-k{}", (rng >> 33) % u64::from(keys))
                    })
                    .collect();
                batch.sort();
                written += batch.len() as u32;
                let upsert = |p: &str| {
                    sqlx::AssertSqlSafe(format!(
                        "INSERT INTO {counters} (key, n) VALUES ({p}, 1) ON CONFLICT (key) DO UPDATE SET n = {counters}.n + 1 RETURNING n"
                    ))
                };
                // The same transaction on either database: tick each key's counter, enqueue.
                macro_rules! tick_all {
                    ($pool:expr, $param:literal) => {{
                        let mut tx = $pool.begin().await.unwrap();
                        for key in &batch {
                            let n: i64 = sqlx::query_scalar(upsert($param))
                                .bind(key)
                                .fetch_one(&mut *tx)
                                .await
                                .unwrap();
                            let tick = Tick { key: key.clone(), seq: n as u64, writer };
                            bus.enqueue(&mut tx, &tick).await.unwrap();
                        }
                        tx.commit().await.unwrap();
                    }};
                }
                match &db {
                    Database::Postgres(pool) => tick_all!(pool, "$1"),
                    Database::Sqlite(pool) => tick_all!(pool, "?1"),
                    Database::Url(_) => unreachable!(),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    u64::from(writers * per_writer)
}

/// Checks per-key order and completeness of the ticks of `run`; returns the duplicates seen.
fn check_ticks(name: &str, records: &[Record], run: &str, expected: u64) -> u64 {
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut seen: BTreeMap<(String, u64), u32> = BTreeMap::new();
    let mut duplicates = 0;
    for r in records {
        let tick: Tick = r.envelope().decode().unwrap();
        if !tick.key.starts_with(run) {
            continue;
        }
        let count = seen.entry((tick.key.clone(), tick.seq)).or_default();
        *count += 1;
        if *count > 1 {
            duplicates += 1;
            continue; // a redelivery after a crash: allowed, counted
        }
        let prev = last.entry(tick.key.clone()).or_default();
        assert_eq!(
            tick.seq,
            *prev + 1,
            "{name}: key {} out of commit order",
            tick.key
        );
        *prev = tick.seq;
    }
    assert_eq!(seen.len() as u64, expected, "{name}: every event arrives");
    duplicates
}

fn read_all(reader: &Reader, run: &str, expected: u64, timeout: Duration) -> Vec<Record> {
    let run = run.to_owned();
    tokio::task::block_in_place(|| {
        let mut distinct = std::collections::HashSet::new();
        let mut scanned = 0;
        reader.read(timeout, |got| {
            for r in &got[scanned..] {
                if let Ok(t) = r.envelope().decode::<Tick>()
                    && t.key.starts_with(&run)
                {
                    distinct.insert((t.key, t.seq));
                }
            }
            scanned = got.len();
            distinct.len() as u64 >= expected
        })
    })
}

/// Starts a relay on `layer`'s outbox with `kafka` and waits until it has buried a row.
async fn relay_until_one_is_dead(layer: &Layer, kafka: &KafkaConfig) -> RelayHandle {
    let handle = relay(&layer.store, kafka, outbox(layer));
    let stats = handle.stats();
    wait_until("a row is dead", Duration::from_secs(60), async || {
        stats.dead_lettered() >= 1
    })
    .await;
    handle
}

/// The records of run `run` (their keys start with it) once `reader` has seen `count` of them.
fn records_of_run(reader: &Reader, run: &str, count: usize) -> Vec<Record> {
    let ours = |r: &Record| r.key.as_deref().is_some_and(|k| k.starts_with(run));
    let got = tokio::task::block_in_place(|| {
        reader.read(Duration::from_secs(30), |got| {
            got.iter().filter(|r| ours(r)).count() >= count
        })
    });
    got.into_iter().filter(|r| ours(r)).collect()
}

/// Puts the dead event `event_id` back into the outbox; how many events went back.
async fn replay(store: &OutboxStore, event_id: uuid::Uuid) -> u64 {
    store.replay(Replay::Events(vec![event_id])).await.unwrap()
}

fn run_id(name: &str) -> String {
    format!("{name}{}", uuid::Uuid::now_v7().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_and_loss_with_concurrent_writers_and_three_relays() {
    for layer in support::layers().await {
        // SQLite has one writer at a time and runs one relay per database; PostgreSQL gets three
        // relays sharing the shards.
        let (writers, per_writer, relays) = match layer.name {
            "real" => (8, 2000, 3),
            _ => (8, 500, 1),
        };
        let run = run_id("order");
        let reader = Reader::at_end(&layer.kafka, Tick::TOPIC).await;
        let bus = writer_bus(&layer).await;
        let handles: Vec<RelayHandle> = (0..relays)
            .map(|_| relay(&layer.store, &layer.kafka, outbox(&layer)))
            .collect();
        let started = Instant::now();
        let expected = write_ticks(&layer, &bus, &run, writers, per_writer, 50).await;
        let records = read_all(&reader, &run, expected, Duration::from_secs(120));
        let duplicates = check_ticks(layer.name, &records, &run, expected);
        assert_eq!(duplicates, 0, "{}: no crash, no duplicate", layer.name);
        let published: u64 = handles.iter().map(|h| h.stats().published()).sum();
        eprintln!(
            "{}: {expected} events by {writers} writers through {relays} relay(s) in {:?} (relays published {published})",
            layer.name,
            started.elapsed()
        );
        if relays > 1 {
            let busy = handles.iter().filter(|h| h.stats().published() > 0).count();
            assert!(
                busy > 1,
                "{}: the relays share the work ({busy} of {relays} published)",
                layer.name
            );
        }
        for h in handles {
            h.shutdown().await.unwrap();
        }
    }
}

/// A transaction that took its outbox id before the relay read past it, and commits while the
/// relay's pipelined reads go on beyond that id: its event, and a later event of its key, still
/// go out in commit order (PostgreSQL; SQLite has one writer, so ids are in commit order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_below_the_relays_read_keeps_its_key_in_order() {
    for layer in support::layers().await {
        let Database::Postgres(pool) = layer.store.database() else {
            continue;
        };
        let run = run_id("late");
        let reader = Reader::at_end(&layer.kafka, Tick::TOPIC).await;
        let bus = writer_bus(&layer).await;
        let tick = |key: &str, seq: u64| Tick {
            key: key.to_owned(),
            seq,
            writer: 0,
        };
        // The older transaction takes its xid first; the late one then writes its event (a
        // lower id); the older one writes the filler (higher ids) and commits. While the late
        // one runs, the relay can read the filler (older xids) but not the late event.
        let mut older = pool.begin().await.unwrap();
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut *older)
            .await
            .unwrap();
        let late_key = format!("{run}-late");
        let mut late = pool.begin().await.unwrap();
        bus.enqueue(&mut late, &tick(&late_key, 1)).await.unwrap();
        // Fewer filler rows than one drain reads (`MAX_PIPELINED` batches of 10): the reads
        // reach the later event of the late key in the drain whose first read saw the late
        // transaction running.
        let filler = 250u64;
        let mut seqs: HashMap<String, u64> = HashMap::new();
        for i in 0..filler {
            let key = format!("{run}-k{}", i % 40);
            let seq = seqs.entry(key.clone()).or_default();
            *seq += 1;
            bus.enqueue(&mut older, &tick(&key, *seq)).await.unwrap();
        }
        older.commit().await.unwrap();
        // Small batches: a drain reads many batches, each past the one in flight.
        let handle = relay(
            &layer.store,
            &layer.kafka,
            OutboxConfig {
                batch_size: 10,
                ..outbox(&layer)
            },
        );
        let stats = handle.stats();
        let deadline = Instant::now() + Duration::from_secs(60);
        while stats.published() == 0 {
            assert!(Instant::now() < deadline, "the relay publishes the filler");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The late event commits, then a later event of its key, while the drain goes on.
        late.commit().await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        bus.enqueue(&mut tx, &tick(&late_key, 2)).await.unwrap();
        tx.commit().await.unwrap();
        let expected = filler + 2;
        let records = read_all(&reader, &run, expected, Duration::from_secs(60));
        let duplicates = check_ticks(layer.name, &records, &run, expected);
        assert_eq!(duplicates, 0, "{}: no crash, no duplicate", layer.name);
        handle.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_crash_loses_nothing() {
    for layer in support::layers().await {
        let run = run_id("crash");
        let reader = Reader::at_end(&layer.kafka, Tick::TOPIC).await;
        let bus = writer_bus(&layer).await;
        let expected = write_ticks(&layer, &bus, &run, 2, 2000, 20).await;
        let config = OutboxConfig {
            batch_size: 100,
            ..outbox(&layer)
        };
        let first = relay(&layer.store, &layer.kafka, config.clone());
        let stats = first.stats();
        wait_until(
            "the first relay is mid-way",
            Duration::from_secs(60),
            async || stats.published() >= expected / 4,
        )
        .await;
        first.abort(); // a crash: no shutdown, batch in hand abandoned
        let second = relay(&layer.store, &layer.kafka, config);
        let records = read_all(&reader, &run, expected, Duration::from_secs(120));
        let duplicates = check_ticks(layer.name, &records, &run, expected);
        eprintln!(
            "{}: crash after {} events; {duplicates} duplicates redelivered",
            layer.name,
            stats.published()
        );
        wait_until(
            "the outbox is drained",
            Duration::from_secs(30),
            async || layer.store.pending().await.unwrap() == 0,
        )
        .await;
        second.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_faults_are_survived() {
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    let mock = MockCluster::new(1).unwrap();
    let embedded = support::embedded().await;
    // The relay ignores a message timeout (a record timed out in the producer's queue could be
    // overtaken by a later one of its key): this one, shorter than the outage below, must not
    // make any record fail.
    let kafka =
        KafkaConfig::new(&mock.bootstrap_servers()).with_property("message.timeout.ms", "1000");
    let layer = Layer {
        kafka: kafka.clone(),
        ..embedded
    };
    let run = run_id("faults");
    let reader = Reader::at_end(&kafka, Tick::TOPIC).await;
    let bus = writer_bus(&layer).await;
    let handle = relay(
        &layer.store,
        &kafka,
        OutboxConfig {
            max_attempts: 50,
            ..outbox(&layer)
        },
    );

    // Retriable produce errors: the idempotent producer retries them.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 5],
    );
    let first = write_ticks(&layer, &bus, &run, 1, 200, 10).await;
    // The broker goes down for longer than the configured message timeout: the relay's records
    // wait in the producer's queue, in order, and nothing is failed or retried.
    mock.broker_down(1).unwrap();
    let run2 = format!("{run}b");
    let second = write_ticks(&layer, &bus, &run2, 1, 200, 10).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        layer.store.pending().await.unwrap() > 0,
        "the events wait in the outbox while the broker is down"
    );
    mock.broker_up(1).unwrap();

    // `run` prefixes `run2`: one read sees both writes.
    let records = read_all(&reader, &run, first + second, Duration::from_secs(60));
    check_ticks("faults", &records, &run, first + second);
    wait_until(
        "the outbox is drained",
        Duration::from_secs(30),
        async || layer.store.pending().await.unwrap() == 0,
    )
    .await;
    assert_eq!(
        layer.store.dead().await.unwrap().len(),
        0,
        "nothing died of a transient fault"
    );
    assert_eq!(
        handle.stats().retried(),
        0,
        "no record timed out in the producer's queue"
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_goes_dead_while_other_keys_flow_and_replays() {
    for layer in support::layers().await {
        let run = run_id("poison");
        let limit = 100_000;
        // Embedded: the producer refuses records over its limit. Real: the broker refuses them
        // (the topic's max.message.bytes); raising the limit afterwards lets the replay through.
        let topic = Blob::TOPIC;
        let (relay_kafka, raised_kafka) = if layer.name == "real" {
            set_topic_limit(&layer.kafka, topic, limit).await;
            (layer.kafka.clone(), layer.kafka.clone())
        } else {
            (
                layer
                    .kafka
                    .clone()
                    .with_property("message.max.bytes", limit.to_string()),
                layer
                    .kafka
                    .clone()
                    .with_property("message.max.bytes", "2000000"),
            )
        };
        let poison_key = format!("{run}-poison");
        let reader = write_oversized_and_others(&layer, &run, &poison_key, limit).await;

        let handle = relay_until_one_is_dead(&layer, &relay_kafka).await;
        let dead = layer.store.dead().await.unwrap();
        assert_eq!(dead.len(), 1, "{}", layer.name);
        assert_eq!(dead[0].key.as_deref(), Some(poison_key.as_str()));
        assert_eq!(
            dead[0].attempts, 3,
            "{}: dead after max_attempts",
            layer.name
        );
        assert!(
            dead[0].error.to_lowercase().contains("size") || dead[0].error.contains("large"),
            "{}",
            dead[0].error
        );

        let flowed = records_of_run(&reader, &run, 21);
        assert_eq!(
            flowed.len(),
            21,
            "{}: the other keys, and the poison key's next event, flow",
            layer.name
        );
        handle.shutdown().await.unwrap();

        // Raise the limit, replay the dead row: it is delivered.
        if layer.name == "real" {
            set_topic_limit(&layer.kafka, topic, 4 * limit).await;
        }
        assert_eq!(replay(&layer.store, dead[0].event_id).await, 1);
        assert!(layer.store.dead().await.unwrap().is_empty());
        let handle = relay(&layer.store, &raised_kafka, outbox(&layer));
        assert!(
            records_of_run(&reader, &run, 1)
                .iter()
                .any(|r| r.payload.len() > limit),
            "{}: the replay delivers it",
            layer.name
        );
        handle.shutdown().await.unwrap();
    }
}

/// Two batches are in the producer at a time: a row the producer refuses holds its key at once,
/// so the next batch (already read) does not send the key's later row ahead of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_holds_its_key_in_the_next_batch() {
    for layer in support::layers().await {
        let run = run_id("refused");
        let limit = 100_000;
        // The producer refuses records over its limit, on both layers.
        let kafka = layer
            .kafka
            .clone()
            .with_property("message.max.bytes", limit.to_string());
        let key = format!("{run}-refused");
        let reader = write_oversized_and_others(&layer, &run, &key, limit).await;

        // One row per batch: the refused row is batch 1, its key's next row batch 2. A second
        // attempt 2 s later buries it.
        let config = OutboxConfig {
            batch_size: 1,
            max_attempts: 2,
            backoff: Backoff {
                initial: Duration::from_secs(2),
                multiplier: 1.0,
                max: Duration::from_secs(2),
            },
            ..outbox(&layer)
        };
        let handle = relay(&layer.store, &kafka, config);
        let stats = handle.stats();
        let first = records_of_run(&reader, &run, 20);
        assert_eq!(
            stats.dead_lettered(),
            0,
            "{}: the other keys flowed before the refused row's second attempt",
            layer.name
        );
        assert!(
            stats.retried() >= 1,
            "{}: the refused row failed",
            layer.name
        );
        assert!(
            !first.iter().any(|r| r.key.as_deref() == Some(key.as_str())),
            "{}: the refused row's key sent nothing while its first row waits",
            layer.name
        );
        wait_until(
            "the refused row is dead",
            Duration::from_secs(30),
            async || stats.dead_lettered() >= 1,
        )
        .await;
        let rest = tokio::task::block_in_place(|| {
            reader.read(Duration::from_secs(30), |got| {
                got.iter().any(|r| r.key.as_deref() == Some(key.as_str()))
            })
        });
        let of_key: Vec<_> = rest
            .iter()
            .filter(|r| r.key.as_deref() == Some(key.as_str()))
            .collect();
        assert_eq!(of_key.len(), 1, "{}", layer.name);
        assert!(
            of_key[0].payload.len() < 100,
            "{}: the key's next row flows once the refused one is dead",
            layer.name
        );
        handle.shutdown().await.unwrap();
    }
}

/// The headers column is JSON; a table an earlier version made has JSONB there. Writing,
/// relaying, dead-lettering and replaying work on such a table unchanged (PostgreSQL only: the
/// SQLite column is TEXT in both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_with_the_earlier_jsonb_headers_still_works() {
    let Some(layer) = support::real().await else {
        return;
    };
    let Database::Postgres(pool) = layer.store.database() else {
        panic!("the real layer is PostgreSQL");
    };
    let column_type = async |table: &str| -> String {
        sqlx::query_scalar(
            "SELECT data_type FROM information_schema.columns \
             WHERE table_name = $1 AND column_name = 'headers'",
        )
        .bind(table)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(
        column_type(&layer.table).await,
        "json",
        "a new table's headers"
    );
    for table in [
        layer.table.clone(),
        format!("{}_dead", layer.table),
        format!("{}_discarded", layer.table),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {table} ALTER COLUMN headers TYPE jsonb USING headers::jsonb"
        )))
        .execute(&pool)
        .await
        .unwrap();
        assert_eq!(column_type(&table).await, "jsonb");
    }

    // Under the topic limits other tests set on this topic: the producer refuses the big one.
    let run = run_id("jsonb");
    let limit = 10_000;
    let reader = write_oversized_and_others(&layer, &run, &format!("{run}-big"), limit).await;
    let refusing = layer
        .kafka
        .clone()
        .with_property("message.max.bytes", limit.to_string());
    let handle = relay_until_one_is_dead(&layer, &refusing).await;
    let flowed = records_of_run(&reader, &run, 21);
    assert_eq!(flowed.len(), 21, "the other events flow");
    for record in &flowed {
        let envelope = record.envelope();
        assert_eq!(
            envelope.event_type,
            Blob::EVENT_TYPE,
            "{:?}",
            record.headers
        );
    }
    handle.shutdown().await.unwrap();

    let dead = layer.store.dead().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].class.is_some(),
        "the class is kept in the JSONB headers"
    );
    assert_eq!(replay(&layer.store, dead[0].event_id).await, 1);
    let handle = relay(&layer.store, &layer.kafka, outbox(&layer));
    let replayed = records_of_run(&reader, &run, 1)
        .into_iter()
        .find(|r| r.payload.len() > limit)
        .expect("the replay delivers it");
    assert!(
        !replayed.headers.iter().any(|(k, _)| k == dlq::CLASS),
        "the replay takes the class out of the headers: {:?}",
        replayed.headers
    );
    assert_eq!(replayed.envelope().id, dead[0].event_id);
    handle.shutdown().await.unwrap();
}

/// The relay and the consumers dead-letter with one vocabulary: what the relay gives up on, the
/// replay API puts back on its topic. Embedded: the mock broker refuses the first produce request;
/// real: the topic's size limit refuses the record until it is raised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_dead_letter_is_replayed_by_the_replay_api() {
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    let mock = MockCluster::new(1).unwrap();
    let embedded = support::embedded().await;
    let on_mock = Layer {
        kafka: KafkaConfig::new(&mock.bootstrap_servers()),
        ..embedded
    };
    let mut layers = vec![(on_mock, Some(&mock))];
    if let Some(real) = support::real().await {
        layers.push((real, None));
    }
    for (layer, mock) in layers {
        let run = run_id("letter");
        let dead_letters = format!("eventbus.tests.dead-letters.{run}");
        let limit = 2_000;
        let letter = Letter {
            key: format!("{run}-k"),
            data: "x".repeat(2 * limit),
        };
        match mock {
            Some(mock) => mock.request_errors(
                RDKafkaApiKey::Produce,
                &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
            ),
            None => set_topic_limit(&layer.kafka, Letter::TOPIC, limit).await,
        }
        let dlq_reader = Reader::at_end(&layer.kafka, &dead_letters).await;
        let reader = Reader::at_end(&layer.kafka, Letter::TOPIC).await;
        let notices = Reader::at_end(&layer.kafka, dlq::DeadLettered::TOPIC).await;
        let bus = writer_bus(&layer).await;
        let receipt = bus.publish(&letter).await.unwrap();
        let hooked: Arc<Mutex<Vec<dlq::DeadLettered>>> = Arc::default();
        let hook = Arc::clone(&hooked);
        let handle = Relay::new(
            layer.store.clone(),
            &layer.kafka,
            OutboxConfig {
                max_attempts: 1,
                dead_letter_topic: Some(dead_letters.clone()),
                ..outbox(&layer)
            },
        )
        .unwrap()
        .on_dead_letter(move |n| hook.lock().unwrap().push(n.clone()))
        .spawn();
        let stats = handle.stats();
        wait_until(
            "the relay dead-letters the event",
            Duration::from_secs(60),
            async || stats.dead_lettered() >= 1,
        )
        .await;
        handle.shutdown().await.unwrap();
        let ours = |r: &Record| r.key.as_deref() == Some(letter.key.as_str());
        let dead = tokio::task::block_in_place(|| {
            dlq_reader.read(Duration::from_secs(30), |got| got.iter().any(ours))
        });
        let dead = dead
            .iter()
            .find(|r| ours(r))
            .unwrap_or_else(|| panic!("{}: the dead letter reaches {dead_letters}", layer.name));
        assert_eq!(
            dead.header(dlq::ORIGINAL_TOPIC).as_deref(),
            Some(Letter::TOPIC)
        );
        assert_eq!(dead.header(dlq::FAILED_IN).as_deref(), Some(dlq::RELAY));
        assert_eq!(dead.header(dlq::ATTEMPTS).as_deref(), Some("1"));
        assert!(
            dead.header(dlq::ERROR).is_some(),
            "{}: the error travels",
            layer.name
        );
        assert_eq!(dead.envelope().id, receipt.event_id);
        // Its class travels with it: the header, the dead row, the counter, the notification.
        let refused = dlq::ErrorClass::BrokerRefused;
        assert_eq!(dead.header(dlq::CLASS).as_deref(), Some("broker_refused"));
        assert_eq!(stats.dead_lettered_by(refused), 1, "{}", layer.name);
        let row = layer.store.dead().await.unwrap();
        assert_eq!(row.len(), 1, "{}", layer.name);
        assert_eq!(row[0].class, Some(refused), "{}", layer.name);
        let id = receipt.event_id.to_string();
        let announced = tokio::task::block_in_place(|| support::notifications(&notices, &id));
        assert_eq!(announced.len(), 1, "{}: one notification", layer.name);
        let notice = &announced[0];
        assert_eq!(notice.class, refused);
        assert_eq!(notice.failed_in, dlq::RELAY);
        assert_eq!(notice.topic, Letter::TOPIC);
        assert_eq!(notice.table.as_deref(), Some(layer.table.as_str()));
        assert_eq!(
            notice.dead_letter_topic.as_deref(),
            Some(dead_letters.as_str())
        );
        assert_eq!(notice.event_type.as_deref(), Some(Letter::EVENT_TYPE));
        assert_eq!(notice.attempts, 1);
        assert_eq!(
            *hooked.lock().unwrap(),
            announced,
            "{}: the hook, once",
            layer.name
        );

        // The cause is fixed; the replay API puts the event back where it was bound.
        if mock.is_none() {
            set_topic_limit(&layer.kafka, Letter::TOPIC, 100 * limit).await;
        }
        let replayed = dlq::replay(
            &layer.kafka,
            &dead_letters,
            dlq::Which::Events(vec![receipt.event_id]),
        )
        .await
        .unwrap();
        assert_eq!(
            replayed, 1,
            "{}: the relay's dead letter is replayable",
            layer.name
        );
        let arrived = tokio::task::block_in_place(|| {
            reader.read(Duration::from_secs(30), |got| got.iter().any(ours))
        });
        let arrived = arrived.iter().find(|r| ours(r)).unwrap_or_else(|| {
            panic!(
                "{}: the replayed event arrives on {}",
                layer.name,
                Letter::TOPIC
            )
        });
        assert_eq!(arrived.envelope().id, receipt.event_id);
        assert_eq!(arrived.envelope().decode::<Letter>().unwrap(), letter);
        assert!(
            arrived.header(dlq::ORIGINAL_TOPIC).is_none(),
            "{}: the dead-letter headers are gone",
            layer.name
        );
    }
}

async fn set_topic_limit(kafka: &KafkaConfig, topic: &str, bytes: usize) {
    use rdkafka::admin::{
        AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
    };
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers.join(","))
        .create()
        .unwrap();
    let value = bytes.to_string();
    let _ =
        admin
            .create_topics(
                &[NewTopic::new(topic, 8, TopicReplication::Fixed(1))
                    .set("max.message.bytes", &value)],
                &AdminOptions::new(),
            )
            .await;
    let results = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic(topic)).set("max.message.bytes", &value)],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    for r in results {
        r.unwrap();
    }
}
