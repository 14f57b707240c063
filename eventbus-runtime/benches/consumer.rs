//! Consumer benchmark on real Kafka (and PostgreSQL for the inbox): a typed eventbus consumer
//! with and without the inbox, beside raw rdkafka consumers reading the same topic in the same
//! run, and the latency from publish to handler at a low rate.
//!
//! ```sh
//! eval "$(scripts/services start)"
//! cargo bench -p eventbus --bench consumer
//! ```
//!
//! Settings: `EVENTBUS_BENCH_EVENTS` (default 500000), `EVENTBUS_BENCH_ROUNDS` (rounds of the
//! hand-written and the typed consumer, alternating, default 3; the ratio is that of their
//! medians), `EVENTBUS_BENCH_INBOX_EVENTS` (default 200000), `EVENTBUS_BENCH_INBOX_BATCH` (records per inbox transaction, default 256). For profiling one phase: `EVENTBUS_BENCH_REUSE=1` reads the records a previous run left
//! in the topic instead of producing new ones, and `EVENTBUS_BENCH_ONLY=raw|hand|typed|latency|inbox` runs one
//! consumer.
//!
//! Throughput is counted from each consumer's first record to its last, so the group join (the
//! same fixed cost for both, printed apart) does not dilute the comparison. The raw consumer gets
//! the fetch settings the eventbus consumer uses (`fetch.queue.backoff.ms=1`), so the ratio
//! measures what eventbus adds per record.

#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::env;

use eventbus::{Event, EventBus, Inbox, InboxTx, KafkaConfig, Service, SystemEvent, Topic};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "bench")]
struct Bench;

/// A benchmark record.
#[derive(SystemEvent, Serialize, Deserialize)]
#[event(service = Bench, topic = "eventbus.bench.consume")]
struct Work {
    #[event(key)]
    key: u32,
    n: u64,
    data: String,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let (url, brokers) = support::services("consumer");
    let events: u64 = env("EVENTBUS_BENCH_EVENTS", 500_000);
    let inbox_events: u64 = env("EVENTBUS_BENCH_INBOX_EVENTS", 200_000);
    let kafka = KafkaConfig::new(&brokers);
    let bus = EventBus::builder(Bench)
        .kafka(kafka.clone())
        .direct()
        .build()
        .await
        .unwrap();

    let only = std::env::var("EVENTBUS_BENCH_ONLY").unwrap_or_default();
    let phase = |name: &str| only.is_empty() || only == name;
    let run = uuid::Uuid::now_v7().simple().to_string();
    if std::env::var_os("EVENTBUS_BENCH_REUSE").is_none() {
        // A fresh topic: every consumer reads exactly this run's records.
        support::recreate_topic(&kafka, <WorkTopic as Topic>::NAME, 8).await;
        let started = Instant::now();
        let batch: Vec<Work> = (0..events)
            .map(|n| Work {
                key: (n % 1000) as u32,
                n,
                data: "x".repeat(150),
            })
            .collect();
        for chunk in batch.chunks(20_000) {
            bus.publish_all(chunk).await.unwrap();
        }
        eprintln!("produced {events} records in {:?}", started.elapsed());
    }

    println!("consumer bench: {events} records of ~200 bytes on 8 partitions, 1000 keys");
    let mut raw = None;
    if phase("raw") {
        let rate = raw_consumer(&kafka, &format!("raw-{run}"), events, false).await;
        println!("  raw rdkafka consumer, recv only:        {rate}");
        raw = Some(rate.per_second);
    }
    // The hand-written and the typed consumers alternate over `rounds` rounds, each in a group of
    // its own (which goes first alternates too): each phase lasts under a second, so one run of
    // each would say more about the machine's moment than about the consumers.
    let rounds: usize = env("EVENTBUS_BENCH_ROUNDS", 3);
    let (mut hand_rates, mut typed_rates) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        for hand_first in [round % 2 == 1, round % 2 == 0] {
            if hand_first && phase("hand") {
                let group = format!("hand-{run}-{round}");
                let rate = raw_consumer(&kafka, &group, events, true).await;
                println!("  round {round}: raw rdkafka consumer, decoding by hand: {rate}");
                hand_rates.push(rate.per_second);
            }
            if !hand_first && phase("typed") {
                let group = format!("typed-{run}-{round}");
                let rate = typed_consumer(&bus, &group, events, None).await;
                println!("  round {round}: eventbus consumer (no inbox):           {rate}");
                typed_rates.push(rate.per_second);
            }
        }
        if let ([.., hand], [.., typed]) = (&hand_rates[..], &typed_rates[..]) {
            println!(
                "  round {round}: eventbus / decoding by hand: {:.2}",
                typed / hand
            );
        }
    }
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates.get(rates.len() / 2).copied()
    };
    let by_hand = median(&mut hand_rates);
    if let Some(typed) = median(&mut typed_rates) {
        println!("  eventbus consumer (no inbox), median of {rounds}: {typed:.0} records/s");
        if let (Some(raw), Some(by_hand)) = (raw, by_hand) {
            println!(
                "  medians: eventbus / decoding by hand: {:.2}; eventbus / recv only: {:.2}",
                typed / by_hand,
                typed / raw
            );
        }
    }
    if phase("latency") {
        let (p50, p95, p99) = latency(&bus, &format!("latency-{run}"), events).await;
        println!(
            "  publish-to-handler latency, one record every 5 ms: p50 {p50:.2} ms, p95 {p95:.2} ms, p99 {p99:.2} ms"
        );
    }
    if !phase("inbox") {
        return;
    }

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let table = format!("bench_inbox_{}", &run[20..]);
    let batch: usize = env("EVENTBUS_BENCH_INBOX_BATCH", eventbus::inbox::DEFAULT_BATCH);
    let inbox = Inbox::postgres(pool.clone(), &table).unwrap().batch(batch);
    let with_inbox = typed_consumer(&bus, &format!("inbox-{run}"), inbox_events, Some(inbox)).await;
    println!(
        "  eventbus consumer with inbox:           {with_inbox} (PostgreSQL; {inbox_events} records, up to {batch} per transaction)"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
        .execute(&pool)
        .await
        .ok();
}

/// The stream's next record.
async fn next<'a>(
    records: &mut rdkafka::consumer::MessageStream<'a, rdkafka::consumer::DefaultConsumerContext>,
) -> rdkafka::message::BorrowedMessage<'a> {
    use futures_core::Stream as _;
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *records).poll_next(cx))
        .await
        .unwrap()
        .unwrap()
}

/// A consumer's figures: records/s from its first record to its last, and how long it took to get
/// the first (joining the group).
struct Rate {
    per_second: f64,
    first_record: Duration,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>9.0} records/s (first record after {} ms)",
            self.per_second,
            self.first_record.as_millis()
        )
    }
}

/// A bare StreamConsumer (its message stream) in a new group, from the earliest offset, storing each offset as the
/// typed consumer does. With `by_hand`, it also does what any consumer of these records must: find
/// the `ce_type` header, decode the payload into the event type and call a handler.
async fn raw_consumer(kafka: &KafkaConfig, group: &str, count: u64, by_hand: bool) -> Rate {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers.join(","))
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.queue.backoff.ms", "1")
        .create()
        .unwrap();
    consumer.subscribe(&[<WorkTopic as Topic>::NAME]).unwrap();
    let handled = AtomicU64::new(0);
    let handler = |w: Work| {
        handled.fetch_add(1, Ordering::Relaxed);
        std::hint::black_box(w);
    };
    let handle = |m: &rdkafka::message::BorrowedMessage<'_>| {
        use rdkafka::message::{Headers as _, Message as _};
        if !by_hand {
            return;
        }
        let routed = m.headers().is_some_and(|h| {
            h.iter().any(|h| {
                h.key == "ce_type" && h.value == Some(<Work as Event>::EVENT_TYPE.as_bytes())
            })
        });
        if routed {
            handler(serde_json::from_slice(m.payload().unwrap_or_default()).unwrap());
        }
    };
    // One stream for the whole run: cheaper per record than `recv`, which registers a waker each
    // time.
    let mut records = consumer.stream();
    let started = Instant::now();
    let m = next(&mut records).await;
    handle(&m);
    consumer.store_offset_from_message(&m).unwrap();
    drop(m);
    let first = Instant::now();
    for _ in 1..count {
        let m = next(&mut records).await;
        handle(&m);
        consumer.store_offset_from_message(&m).unwrap();
    }
    assert!(!by_hand || handled.load(Ordering::Relaxed) == count);
    Rate {
        per_second: (count - 1) as f64 / first.elapsed().as_secs_f64(),
        first_record: first - started,
    }
}

/// The typed consumer in a new group, from the earliest offset, until it has handled `total`
/// records.
async fn typed_consumer(
    bus: &EventBus<Bench>,
    group: &str,
    total: u64,
    inbox: Option<Inbox>,
) -> Rate {
    let handled = Arc::new(AtomicU64::new(0));
    let h = Arc::clone(&handled);
    // The moment the last record was handled, taken by its handler: the bench then waits for it
    // with 10 ms sleeps, not 1 ms ones (a timer firing every millisecond on the runtime that runs
    // the consumer is the bench's cost, not the consumer's; the hand-written consumers' loops
    // time their own end).
    let finished: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let done = Arc::clone(&finished);
    let count = move |h: &AtomicU64| {
        if h.fetch_add(1, Ordering::Relaxed) + 1 == total {
            let _ = done.set(Instant::now());
        }
    };
    let consumer = bus
        .consumer(group)
        .subscribe::<WorkTopic>()
        .concurrency(2048);
    let inbox_handle = inbox.clone();
    let consumer = match inbox {
        None => consumer.on::<Work, _>(move |_w: Work| {
            count(&h);
            async {}
        }),
        Some(inbox) => {
            consumer
                .inbox(inbox.clone())
                .on_tx::<Work, _>(move |_w: Work, tx: InboxTx| {
                    count(&h);
                    async move { Ok::<_, eventbus::HandlerError>(tx) }
                })
        }
    };
    let started = Instant::now();
    let handle = consumer.start().await.unwrap();
    // Polled every 100 µs: the first record's time is known to that precision.
    while handled.load(Ordering::Relaxed) == 0 {
        spin_sleep().await;
    }
    let first = Instant::now();
    let at_first = handled.load(Ordering::Relaxed);
    while finished.get().is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut end = *finished.get().unwrap();
    // With an inbox, the end is the last commit: every id is in the inbox table.
    if let Some(inbox) = &inbox_handle {
        while inbox.processed(group).await.unwrap() < total as i64 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        end = Instant::now();
    }
    let rate = Rate {
        per_second: (total - at_first) as f64 / (end - first).as_secs_f64(),
        first_record: first - started,
    };
    handle.shutdown().await;
    rate
}

/// A short pause that does not round up to the timer's millisecond.
async fn spin_sleep() {
    let until = Instant::now() + Duration::from_micros(100);
    while Instant::now() < until {
        tokio::task::yield_now().await;
    }
}

/// Latency from `publish` (Direct mode: until the broker acknowledged) to the handler, for 200
/// records published one every 5 ms, once a new group has caught up with the topic: (p50, p95,
/// p99) in milliseconds.
async fn latency(bus: &EventBus<Bench>, group: &str, backlog: u64) -> (f64, f64, f64) {
    let epoch = Instant::now();
    let samples: Arc<std::sync::Mutex<Vec<u64>>> = Arc::default();
    let s = Arc::clone(&samples);
    let handle = bus
        .consumer(group)
        .subscribe::<WorkTopic>()
        .on::<Work, _>(move |w: Work| {
            // Timed records carry the key u32::MAX and their send time (µs since `epoch`) in `n`.
            if w.key == u32::MAX {
                let now = epoch.elapsed().as_micros() as u64;
                s.lock().unwrap().push(now.saturating_sub(w.n));
            }
            async {}
        })
        .start()
        .await
        .unwrap();
    let stats = handle.stats();
    let deadline = Instant::now() + Duration::from_secs(120);
    while stats.handled() < backlog {
        assert!(Instant::now() < deadline, "the latency consumer catches up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    const COUNT: usize = 200;
    for _ in 0..COUNT {
        let timed = Work {
            key: u32::MAX,
            n: epoch.elapsed().as_micros() as u64,
            data: String::new(),
        };
        bus.publish(&timed).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while samples.lock().unwrap().len() < COUNT {
        assert!(Instant::now() < deadline, "every timed record arrives");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handle.shutdown().await;
    let mut v = samples.lock().unwrap().clone();
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64 / 1000.0;
    (at(0.5), at(0.95), at(0.99))
}
