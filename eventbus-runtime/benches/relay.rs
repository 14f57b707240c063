//! Relay benchmark on real PostgreSQL + Kafka (not a timed test: run it by hand or in CI's bench
//! step, and read the figures it prints).
//!
//! ```sh
//! eval "$(scripts/services start)"
//! cargo bench -p eventbus --bench relay
//! ```
//!
//! It reports, in one run:
//! 1. **drain throughput**: N rows pre-filled in the outbox, drained by the relay(s) to Kafka
//!    (acknowledged, rows deleted), beside a raw rdkafka producer sending the same records with
//!    the same settings (idempotent, acks=all). Neither is timed until its producer has its
//!    idempotent producer id (a new producer waits about 500 ms for it here). Each phase lasts
//!    about a second, and the raw producer alone varies by a third from one second to the next on
//!    a 2-core machine, so the two alternate over `EVENTBUS_BENCH_ROUNDS` rounds (default 3;
//!    which goes first alternates too, each round on a freshly filled table), and the ratio is
//!    that of their medians;
//! 2. **commit-to-ack latency** at a steady 1,000 events/s: one event per committed transaction,
//!    timed from the commit's return to the relay's acknowledgement by Kafka (as observed by a
//!    consumer, so the figure includes the consumer's fetch: an upper bound).
//!
//! The latency run has an outbox table of its own (`EVENTBUS_BENCH_LATENCY_AFTER_DRAIN=1`: the
//! drained one, with the drain's dead rows not yet vacuumed), and splits each event's time at the
//! record's CreateTime: the relay's share (commit to producer) and Kafka's (producer to consumer).
//!
//! Settings: `EVENTBUS_BENCH_EVENTS` (default 200000), `EVENTBUS_BENCH_RELAYS` (default 1),
//! `EVENTBUS_BENCH_BATCH` (default 5000), `EVENTBUS_BENCH_RATE` (default 1000),
//! `EVENTBUS_BENCH_KAFKA_PROPS` (librdkafka producer properties for both producers, `k=v,k=v`),
//! `EVENTBUS_BENCH_SECONDS` (default 10), `EVENTBUS_BENCH_ROUNDS` (default 3). The last line,
//! `RESULT drain_eps=… raw_eps=… p50_ms=… p95_ms=… p99_ms=… max_ms=… events=… latency_events=…`
//! (the drain figures are the medians of the rounds), repeats the figures for scripts
//! (`benches/peers/run` sets them beside Watermill's).

#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use support::{Cpu, env};

use eventbus::outbox::OutboxStore;
use eventbus::relay::Relay;
use eventbus::{Database, KafkaConfig, OutboxConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::{AssertSqlSafe, PgPool, Row};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let (url, brokers) = support::services("relay");
    let events: i64 = env("EVENTBUS_BENCH_EVENTS", 200_000);
    let relays: usize = env("EVENTBUS_BENCH_RELAYS", 1);
    let batch: usize = env("EVENTBUS_BENCH_BATCH", 5000);
    let rate: u64 = env("EVENTBUS_BENCH_RATE", 1000);
    let seconds: u64 = env("EVENTBUS_BENCH_SECONDS", 10);
    // Producer settings to try, on the raw producer and the relays alike:
    // EVENTBUS_BENCH_KAFKA_PROPS="linger.ms=5,batch.size=1000000".
    let kafka = std::env::var("EVENTBUS_BENCH_KAFKA_PROPS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .fold(KafkaConfig::new(&brokers), |k, (key, value)| {
            k.with_property(key.trim(), value.trim())
        });
    let run = uuid::Uuid::now_v7().simple().to_string();
    let table = format!("bench_{}", &run[20..]);
    let topic = format!("eventbus.bench.{}", &run[20..]);
    let store = eventbus::outbox::connect(Database::Url(url), &table)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let Database::Postgres(pool) = store.database() else {
        panic!("the bench runs on PostgreSQL")
    };
    create_topic(&kafka, &topic).await;
    warm_topic(&kafka, &topic).await;
    let config = OutboxConfig {
        table: table.clone(),
        batch_size: batch,
        poll_interval: Duration::from_millis(100),
        ..OutboxConfig::default()
    };

    // 1. Drain throughput, beside a raw producer sending the same records: `rounds` rounds, each
    // on a freshly filled table, the raw producer and the relays alternating which goes first.
    // One phase lasts about a second, and the raw producer alone varies by a third from one
    // second to the next here: the ratio is that of the medians.
    let rounds: usize = env("EVENTBUS_BENCH_ROUNDS", 3).max(1);
    let after_drain = std::env::var_os("EVENTBUS_BENCH_LATENCY_AFTER_DRAIN").is_some();
    let (mut raw_rates, mut drain_rates) = (Vec::new(), Vec::new());
    let mut size = 0;
    for round in 1..=rounds {
        let round_table = format!("{table}_r{round}");
        let round_store = eventbus::outbox::connect(Database::Postgres(pool.clone()), &round_table)
            .await
            .unwrap();
        round_store.migrate().await.unwrap();
        prefill(&pool, &round_table, &topic, events).await;
        let records = load(&pool, &round_table).await;
        size = records[0].2.len();
        let round_config = OutboxConfig {
            table: round_table.clone(),
            ..config.clone()
        };
        let mut phases = Vec::new();
        for raw_first in [round % 2 == 1, round % 2 == 0] {
            if raw_first {
                let before = Cpu::sample();
                let raw = raw_producer(&kafka, &records).await;
                let cpu = before.used_until(&Cpu::sample());
                phases.push(format!(
                    "  round {round}: raw rdkafka producer: {raw:>9.0} events/s\n    cpu: {cpu}"
                ));
                raw_rates.push(raw);
            } else {
                let (drain, before, after) =
                    drain(&round_store, &kafka, &round_config, relays, events as u64).await;
                phases.push(format!(
                    "  round {round}: relay drain:          {drain:>9.0} events/s\n    cpu: {}",
                    before.used_until(&after)
                ));
                drain_rates.push(drain);
            }
        }
        let (raw, drain) = (raw_rates[round - 1], drain_rates[round - 1]);
        for phase in phases {
            println!("{phase}");
        }
        println!("  round {round}: relay / raw: {:.2}", drain / raw);
        if !(after_drain && round == rounds) {
            drop_tables(&pool, &round_table).await;
        }
    }
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let (raw, drain) = (median(&mut raw_rates), median(&mut drain_rates));
    println!("relay bench: {events} events of {size} bytes, {relays} relay(s), batch {batch}");
    println!("  raw rdkafka producer, median of {rounds}: {raw:>9.0} events/s");
    println!(
        "  relay drain, median of {rounds}:          {drain:>9.0} events/s ({:.2} of raw)",
        drain / raw
    );

    // 2. Commit-to-ack latency at a steady rate, on a table of its own: the drained one holds the
    // drain's dead rows until autovacuum's next nap (up to a minute), and the relay's index scans
    // step over them meanwhile. `EVENTBUS_BENCH_LATENCY_AFTER_DRAIN=1` measures on it instead.
    let (lat_store, lat_config) = if after_drain {
        // The last round's table, drained, as the drain left it.
        let drained = format!("{table}_r{rounds}");
        (
            eventbus::outbox::connect(Database::Postgres(pool.clone()), &drained)
                .await
                .unwrap(),
            OutboxConfig {
                table: drained,
                ..config.clone()
            },
        )
    } else {
        let lat_table = format!("{table}_lat");
        let lat_store = eventbus::outbox::connect(Database::Postgres(pool.clone()), &lat_table)
            .await
            .unwrap();
        lat_store.migrate().await.unwrap();
        let lat_config = OutboxConfig {
            table: lat_table,
            ..config.clone()
        };
        (lat_store, lat_config)
    };
    let measured = latency(
        &lat_store,
        &pool,
        &kafka,
        &lat_config,
        &topic,
        rate,
        seconds,
    )
    .await;
    if after_drain {
        println!("  (latency on the drained table, before autovacuum)");
    }
    let at = |v: &[f64], p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    let latencies = &measured.total;
    let pct = |p: f64| at(latencies, p);
    println!(
        "  commit-to-ack at {rate}/s over {seconds}s ({} events): p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        pct(0.50),
        pct(0.95),
        pct(0.99),
        latencies[latencies.len() - 1]
    );
    for (stage, v) in [
        ("commit to producer (relay)", &measured.to_producer),
        ("producer to consumer (Kafka)", &measured.through_kafka),
    ] {
        println!(
            "    {stage:<30} p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms (to the ms)",
            at(v, 0.50),
            at(v, 0.95),
            at(v, 0.99),
            v[v.len() - 1]
        );
    }
    // One machine-readable line for benches/peers/run.
    println!(
        "RESULT drain_eps={drain:.0} raw_eps={raw:.0} p50_ms={:.2} p95_ms={:.2} p99_ms={:.2} max_ms={:.2} events={events} latency_events={}",
        pct(0.50),
        pct(0.95),
        pct(0.99),
        latencies[latencies.len() - 1],
        latencies.len()
    );
    drop_tables(&pool, &table).await;
    drop_tables(&pool, &format!("{table}_lat")).await;
    if after_drain {
        drop_tables(&pool, &format!("{table}_r{rounds}")).await;
    }
    support::delete_topics(&kafka, &[&topic]).await;
}

/// Drops outbox `table` with its dead and discarded tables.
async fn drop_tables(pool: &PgPool, table: &str) {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {table}, {table}_dead, {table}_discarded"
    )))
    .execute(pool)
    .await
    .ok();
}

async fn create_topic(kafka: &KafkaConfig, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers.join(","))
        .create()
        .unwrap();
    admin
        .create_topics(
            &[NewTopic::new(topic, 8, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
}

/// One record to each partition of the new topic, acknowledged, before anything is timed: a new
/// topic's first records wait for its partitions' leaders, and the raw producer, which goes
/// first, would pay that alone.
async fn warm_topic(kafka: &KafkaConfig, topic: &str) {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers.join(","))
        .create()
        .unwrap();
    for partition in 0..8 {
        producer
            .send(
                FutureRecord::<str, [u8]>::to(topic)
                    .partition(partition)
                    .payload(b"warm"),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

/// Fills the outbox with `n` rows over 1,000 keys, as `enqueue` would (a CloudEvents header set,
/// a 200-byte JSON payload).
async fn prefill(pool: &PgPool, table: &str, topic: &str, n: i64) {
    let started = Instant::now();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (event_id, topic, partition_key, event_type, version, headers, payload, shard) \
         SELECT gen_random_uuid(), $1, 'key-' || (i % 1000), 'bench.tick', 1, \
           jsonb_build_object('ce_specversion', '1.0', 'ce_id', gen_random_uuid()::text, 'ce_source', 'bench', \
             'ce_type', 'bench.tick', 'ce_time', now()::text, 'content-type', 'application/json', \
             'ce_schemaversion', '1', 'ce_category', 'system'), \
           convert_to('{{\"seq\":' || i || ',\"data\":\"' || repeat('x', 180) || '\"}}', 'UTF8'), \
           (i % 1000) % 16 \
         FROM generate_series(1, $2) AS i"
    )))
    .bind(topic)
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(AssertSqlSafe(format!("ANALYZE {table}")))
        .execute(pool)
        .await
        .unwrap();
    eprintln!("prefilled {n} rows in {:?}", started.elapsed());
}

type Rec = (String, Option<String>, Vec<u8>, serde_json::Value);

async fn load(pool: &PgPool, table: &str) -> Vec<Rec> {
    sqlx::query(AssertSqlSafe(format!(
        "SELECT topic, partition_key, payload, headers FROM {table} ORDER BY id"
    )))
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        (
            r.get(0),
            r.get(1),
            r.get(2),
            r.get::<sqlx::types::Json<serde_json::Value>, _>(3).0,
        )
    })
    .collect()
}

/// The same records through a bare rdkafka producer with the relay's settings, timed from its
/// first acknowledgement (not counted); events/s.
async fn raw_producer(kafka: &KafkaConfig, records: &[Rec]) -> f64 {
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", kafka.bootstrap_servers.join(","))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("compression.type", "none");
    for (k, v) in &kafka.properties {
        config.set(k, v);
    }
    let producer: FutureProducer = config.create().unwrap();
    // A new idempotent producer's first acknowledgement waits for its producer id (about
    // 500 ms here); the relays get the same time before theirs start (`drain`).
    let (topic, _, payload, _) = &records[0];
    producer
        .send(
            FutureRecord::<str, [u8]>::to(topic).payload(payload.as_slice()),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let started = Instant::now();
    let mut pending = Vec::with_capacity(records.len());
    for (topic, key, payload, headers) in records {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers.as_object().unwrap() {
            h = h.insert(Header {
                key: k,
                value: v.as_str().map(str::as_bytes),
            });
        }
        let mut record = FutureRecord::to(topic)
            .payload(payload.as_slice())
            .headers(h);
        if let Some(k) = key {
            record = record.key(k.as_str());
        }
        pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for p in pending {
        p.await.unwrap().unwrap();
    }
    records.len() as f64 / started.elapsed().as_secs_f64()
}

/// Starts `relays` relays on a full outbox, 1 s after making them (their producers' ids), and
/// times them to empty it; events/s, and the CPU used so far sampled as they start and before
/// they stop (their read sessions end with them).
async fn drain(
    store: &OutboxStore,
    kafka: &KafkaConfig,
    config: &OutboxConfig,
    relays: usize,
    events: u64,
) -> (f64, Cpu, Cpu) {
    let built: Vec<_> = (0..relays)
        .map(|_| Relay::new(store.clone(), kafka, config.clone()).unwrap())
        .collect();
    // Their producers get their ids before the clock starts, as the raw producer's did.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = Cpu::sample();
    let started = Instant::now();
    let handles: Vec<_> = built.into_iter().map(Relay::spawn).collect();
    loop {
        let published: u64 = handles.iter().map(|h| h.stats().published()).sum();
        if published >= events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let cpu = Cpu::sample();
    for h in handles {
        h.shutdown().await.unwrap();
    }
    (events as f64 / elapsed.as_secs_f64(), before, cpu)
}

/// One event per transaction at `rate`/s; returns sorted commit-to-consume latencies in ms.
async fn latency(
    store: &OutboxStore,
    pool: &PgPool,
    kafka: &KafkaConfig,
    config: &OutboxConfig,
    topic: &str,
    rate: u64,
    seconds: u64,
) -> Latency {
    let committed: Arc<Mutex<HashMap<String, Stamp>>> = Arc::default();
    // When the consumer had it, and the record's CreateTime (when the relay handed it to its
    // producer, in milliseconds since the epoch).
    let received: Arc<Mutex<HashMap<String, (Stamp, i64)>>> = Arc::default();
    let total = rate * seconds;
    // The consumer, from the topic's end.
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers.join(","))
        .set("group.id", "eventbus-bench")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "1")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..8 {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        list.add_partition_offset(topic, p, Offset::Offset(high))
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let seen = Arc::clone(&received);
    let reader = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(seconds + 30);
        while Instant::now() < deadline && (seen.lock().unwrap().len() as u64) < total {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                let at = (Instant::now(), SystemTime::now());
                if let Some(k) = m.key() {
                    let payload =
                        String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                    let created = m.timestamp().to_millis().unwrap_or_default();
                    seen.lock().unwrap().insert(
                        format!("{}:{payload}", String::from_utf8_lossy(k)),
                        (at, created),
                    );
                }
            }
        }
    });
    let relay = Relay::new(store.clone(), kafka, config.clone())
        .unwrap()
        .spawn();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let insert = format!(
        "INSERT INTO {} (event_id, topic, partition_key, event_type, version, headers, payload, shard) \
         VALUES (gen_random_uuid(), $1, $2, 'bench.tick', 1, '{{\"ce_specversion\":\"1.0\"}}', convert_to($3, 'UTF8'), $4)",
        store.table()
    );
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    for i in 0..total {
        let due = started + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let key = format!("lat-{}", i % 100);
        let payload = format!("{{\"seq\":{i}}}");
        let mut tx = pool.begin().await.unwrap();
        sqlx::query(AssertSqlSafe(insert.clone()))
            .bind(topic)
            .bind(&key)
            .bind(&payload)
            .bind((i % 100 % 16) as i32)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        committed.lock().unwrap().insert(
            format!("{key}:{payload}"),
            (Instant::now(), SystemTime::now()),
        );
    }
    reader.join().unwrap();
    relay.shutdown().await.unwrap();
    let committed = committed.lock().unwrap();
    let received = received.lock().unwrap();
    let mut latency = Latency::default();
    let epoch_ms = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0
    };
    for (k, (commit, commit_wall)) in committed.iter() {
        let Some(((at, at_wall), created)) = received.get(k) else {
            continue;
        };
        latency
            .total
            .push(at.saturating_duration_since(*commit).as_secs_f64() * 1000.0);
        latency
            .to_producer
            .push((*created as f64 - epoch_ms(*commit_wall)).max(0.0));
        latency
            .through_kafka
            .push((epoch_ms(*at_wall) - *created as f64).max(0.0));
    }
    assert_eq!(
        latency.total.len() as u64,
        total,
        "every event of the latency run arrived"
    );
    for v in [
        &mut latency.total,
        &mut latency.to_producer,
        &mut latency.through_kafka,
    ] {
        v.sort_by(f64::total_cmp);
    }
    latency
}

/// A moment, on the monotonic clock and the wall clock (Kafka's timestamps are wall-clock).
type Stamp = (Instant, SystemTime);

/// Latencies of one run, in milliseconds, each sorted.
#[derive(Default)]
struct Latency {
    /// From the commit's return to the consumer's receipt.
    total: Vec<f64>,
    /// From the commit's return to the record's CreateTime (the relay handing it to its
    /// producer): the relay's wake-up, read and hand-over. Milliseconds, to the millisecond.
    to_producer: Vec<f64>,
    /// From the CreateTime to the consumer's receipt: the producer's linger, the broker's
    /// acknowledgement with acks=all, the consumer's fetch. To the millisecond.
    through_kafka: Vec<f64>,
}
