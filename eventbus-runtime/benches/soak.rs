//! Soak benchmark on real PostgreSQL + Kafka: millions of events through the outbox while the
//! relays drain it, to see whether the cost per event stays flat as the work and the backlog grow,
//! and whether the table gives its space back afterwards (not a timed test: run it by hand).
//!
//! ```sh
//! eval "$(scripts/services start)"
//! cargo bench -p eventbus --bench soak
//! ```
//!
//! Writers commit transactions of `EVENTBUS_BENCH_TX_ROWS` rows (multi-row `INSERT … SELECT`, the
//! rows `enqueue` writes: CloudEvents headers, a 200-byte JSON payload, 1,000 keys) as fast as
//! they can, while `EVENTBUS_BENCH_RELAYS` relays (16 shards) drain the table; the backlog grows
//! wherever the writers outpace the relays. A probe commits one event every 10 ms to a topic of its
//! own, in the same table, and a consumer times it from commit to receipt: its latency includes
//! the wait behind the backlog. For each million events acknowledged the bench prints how long
//! it took, the events/s, the probes' p50/p95 latency, the backlog and the table's size (heap
//! and indexes); then the size once drained, and once the relay has given the space back
//! (`OutboxConfig::compact_above_bytes`).
//!
//! Settings: `EVENTBUS_BENCH_EVENTS` (default 10000000), `EVENTBUS_BENCH_WRITERS` (default 2),
//! `EVENTBUS_BENCH_TX_ROWS` (default 1000), `EVENTBUS_BENCH_RELAYS` (default 1),
//! `EVENTBUS_BENCH_BATCH` (default 5000), `EVENTBUS_BENCH_RATE` (writers' total events/s, default
//! 0: as fast as they can).

#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::env;

use eventbus::relay::Relay;
use eventbus::{Database, KafkaConfig, OutboxConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::{AssertSqlSafe, PgPool};

const MILLION: u64 = 1_000_000;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let (url, brokers) = support::services("soak");
    let events: u64 = env("EVENTBUS_BENCH_EVENTS", 10 * MILLION);
    let writers: u64 = env("EVENTBUS_BENCH_WRITERS", 2);
    let tx_rows: u64 = env("EVENTBUS_BENCH_TX_ROWS", 1000);
    let relays: usize = env("EVENTBUS_BENCH_RELAYS", 1);
    let batch: usize = env("EVENTBUS_BENCH_BATCH", 5000);
    let rate: u64 = env("EVENTBUS_BENCH_RATE", 0);
    let kafka = KafkaConfig::new(&brokers);
    let run = uuid::Uuid::now_v7().simple().to_string();
    let table = format!("soak_{}", &run[20..]);
    let topic = format!("eventbus.bench.soak.{}", &run[20..]);
    let probe_topic = format!("{topic}.probe");
    support::recreate_topic(&kafka, &topic, 8).await;
    support::recreate_topic(&kafka, &probe_topic, 1).await;
    let store = eventbus::outbox::connect(Database::Url(url.clone()), &table)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let pool = PgPool::connect(&url).await.unwrap();
    let empty_bytes = table_bytes(&pool, &table).await;
    println!(
        "soak bench: {events} events, {writers} writer(s) of {tx_rows}-row transactions{}, {relays} relay(s), batch {batch}; empty table {}",
        if rate > 0 {
            format!(" at {rate} events/s")
        } else {
            " as fast as they can".to_owned()
        },
        mb(empty_bytes)
    );

    let config = OutboxConfig {
        table: table.clone(),
        batch_size: batch,
        poll_interval: Duration::from_millis(100),
        ..OutboxConfig::default()
    };
    let handles: Vec<_> = (0..relays)
        .map(|_| {
            Relay::new(store.clone(), &kafka, config.clone())
                .unwrap()
                .spawn()
        })
        .collect();
    let published = || -> u64 { handles.iter().map(|h| h.stats().published()).sum() };

    // The probe's consumer, from the probe topic's end.
    let received: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers.join(","))
            .set("group.id", "eventbus-soak")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "5")
            .create()
            .unwrap();
        let (_, high) = consumer
            .fetch_watermarks(&probe_topic, 0, Duration::from_secs(10))
            .unwrap();
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&probe_topic, 0, Offset::Offset(high))
            .unwrap();
        consumer.assign(&list).unwrap();
        let (received, done) = (Arc::clone(&received), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                    let at = Instant::now();
                    let seq = std::str::from_utf8(m.payload().unwrap_or_default())
                        .ok()
                        .and_then(|p| p.strip_prefix("{\"probe\":"))
                        .and_then(|p| p.strip_suffix('}'))
                        .and_then(|n| n.parse().ok());
                    if let Some(seq) = seq {
                        received.lock().unwrap().push((seq, at));
                    }
                }
            }
        })
    };

    // The probe: one event every 10 ms, its commit time kept.
    let committed: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let probing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let probe = {
        let (pool, table, probe_topic) = (pool.clone(), table.clone(), probe_topic.clone());
        let (committed, probing) = (Arc::clone(&committed), Arc::clone(&probing));
        tokio::spawn(async move {
            let insert = format!(
                "INSERT INTO {table} (event_id, topic, partition_key, event_type, version, headers, payload, shard) \
                 VALUES (gen_random_uuid(), $1, 'probe', 'bench.probe', 1, '{{\"ce_specversion\":\"1.0\"}}', convert_to($2, 'UTF8'), 0)"
            );
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut seq = 0u64;
            while probing.load(Ordering::Relaxed) {
                tick.tick().await;
                let mut tx = pool.begin().await.unwrap();
                sqlx::query(AssertSqlSafe(insert.clone()))
                    .bind(&probe_topic)
                    .bind(format!("{{\"probe\":{seq}}}"))
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                committed.lock().unwrap().push(Instant::now());
                seq += 1;
            }
        })
    };

    // The writers.
    let written = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let writer_tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (pool, table, topic, written) =
                (pool.clone(), table.clone(), topic.clone(), Arc::clone(&written));
            tokio::spawn(async move {
                let insert = format!(
                    "INSERT INTO {table} (event_id, topic, partition_key, event_type, version, headers, payload, shard) \
                     SELECT gen_random_uuid(), $1, 'key-' || (i % 1000), 'bench.tick', 1, \
                       jsonb_build_object('ce_specversion', '1.0', 'ce_id', gen_random_uuid()::text, 'ce_source', 'bench', \
                         'ce_type', 'bench.tick', 'ce_time', now()::text, 'content-type', 'application/json', \
                         'ce_schemaversion', '1', 'ce_category', 'system'), \
                       convert_to('{{\"seq\":' || i || ',\"data\":\"' || repeat('x', 180) || '\"}}', 'UTF8'), \
                       (i % 1000) % 16 \
                     FROM generate_series($2::bigint, $3::bigint) AS i"
                );
                loop {
                    let from = written.fetch_add(tx_rows, Ordering::Relaxed);
                    if from >= events {
                        break;
                    }
                    if rate > 0 {
                        let due = started + Duration::from_secs_f64(from as f64 / rate as f64);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let to = (from + tx_rows).min(events) - 1;
                    let mut tx = pool.begin().await.unwrap();
                    sqlx::query(AssertSqlSafe(insert.clone()))
                        .bind(&topic)
                        .bind(from as i64)
                        .bind(to as i64)
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                }
                let _ = w;
            })
        })
        .collect();

    // Every million acknowledged: when, the backlog, the table's size.
    struct Mark {
        at: Instant,
        pending: i64,
        bytes: i64,
    }
    let mut marks: Vec<Mark> = Vec::new();
    let mut max_bytes = empty_bytes;
    let mut last_size = Instant::now();
    let mut writers_done: Option<Instant> = None;
    loop {
        let acked = published();
        if last_size.elapsed() > Duration::from_secs(2) {
            last_size = Instant::now();
            max_bytes = max_bytes.max(table_bytes(&pool, &table).await);
        }
        if writers_done.is_none() && writer_tasks.iter().all(|t| t.is_finished()) {
            writers_done = Some(Instant::now());
        }
        // Probes count in `published` too: a million of the writers' events is a million plus
        // the probes sent meanwhile, close enough at 100 probes/s.
        if acked >= (marks.len() as u64 + 1) * MILLION {
            let pending = store.pending().await.unwrap();
            let bytes = table_bytes(&pool, &table).await;
            max_bytes = max_bytes.max(bytes);
            marks.push(Mark {
                at: Instant::now(),
                pending,
                bytes,
            });
        }
        // The probes count too, so `acked` can reach `events` before the writers' last
        // transactions: done once the writers are, and the outbox with them.
        if acked >= events && writers_done.is_some() && store.pending().await.unwrap() <= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drained = Instant::now();
    probing.store(false, Ordering::Relaxed);
    probe.await.unwrap();
    let drained_bytes = table_bytes(&pool, &table).await;
    // The relays give the space back at a gauge pass (every 5 s) once the table is drained.
    let mut compacted = None;
    while drained.elapsed() < Duration::from_secs(30) {
        if table_bytes(&pool, &table).await <= empty_bytes {
            compacted = Some(drained.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    done.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    for h in handles {
        h.shutdown().await.unwrap();
    }

    let committed = committed.lock().unwrap().clone();
    let received = received.lock().unwrap().clone();
    let latency = |from: Instant, to: Instant| -> (f64, f64, usize) {
        let mut ms: Vec<f64> = received
            .iter()
            .filter_map(|(seq, at)| {
                let c = *committed.get(*seq as usize)?;
                (c >= from && c < to).then(|| at.saturating_duration_since(c).as_secs_f64() * 1e3)
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        if ms.is_empty() {
            return (f64::NAN, f64::NAN, 0);
        }
        let at = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
        (at(0.5), at(0.95), ms.len())
    };
    println!("  million  seconds  events/s   probe p50 / p95 (ms)   backlog   table+indexes");
    let mut prev = started;
    let mut rates = Vec::new();
    for (i, m) in marks.iter().enumerate() {
        let secs = m.at.duration_since(prev).as_secs_f64();
        let eps = MILLION as f64 / secs;
        rates.push(eps);
        let (p50, p95, n) = latency(prev, m.at);
        println!(
            "  {:>7}  {secs:>7.1}  {eps:>8.0}   {p50:>8.0} / {p95:>8.0} ({n:>4})  {:>8}   {}",
            i + 1,
            m.pending,
            mb(m.bytes)
        );
        prev = m.at;
    }
    let total = drained.duration_since(started).as_secs_f64();
    println!(
        "  all: {events} events acknowledged in {total:.1} s ({:.0} events/s); writers done after {:.1} s",
        events as f64 / total,
        writers_done.map_or(f64::NAN, |t| t.duration_since(started).as_secs_f64())
    );
    if let (Some(first), Some(last)) = (rates.first(), rates.last()) {
        println!(
            "  last million / first million: {:.2} ({:.0} vs {:.0} events/s)",
            last / first,
            last,
            first
        );
    }
    println!(
        "  table+indexes: empty {}, largest {}, drained {}, {}",
        mb(empty_bytes),
        mb(max_bytes),
        mb(drained_bytes),
        match compacted {
            Some(after) => format!(
                "back to {} {:.1} s after the drain (the relay's truncation)",
                mb(table_bytes(&pool, &table).await),
                after.as_secs_f64()
            ),
            None => format!(
                "still {} 30 s after the drain",
                mb(table_bytes(&pool, &table).await)
            ),
        }
    );
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {table}, {table}_dead, {table}_discarded"
    )))
    .execute(&pool)
    .await
    .ok();
    support::delete_topics(&kafka, &[&topic, &probe_topic]).await;
}

async fn table_bytes(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT pg_total_relation_size('{table}'::regclass)"
    )))
    .fetch_one(pool)
    .await
    .unwrap()
}

fn mb(bytes: i64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
