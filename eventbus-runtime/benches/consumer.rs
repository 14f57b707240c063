//! Consumer benchmark on real Kafka (and PostgreSQL for the inbox): a typed eventbus consumer
//! with and without the inbox, beside a raw rdkafka consumer reading the same topic in the same
//! run.
//!
//! ```sh
//! eval "$(scripts/services start)"
//! cargo bench -p eventbus-runtime --bench consumer
//! ```
//!
//! Settings: `EVENTBUS_BENCH_EVENTS` (default 200000), `EVENTBUS_BENCH_INBOX_EVENTS` (default
//! 20000).

#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventbus::{EventBus, Inbox, InboxTx, KafkaConfig, Service, SystemEvent, Topic};
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

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let (Ok(url), Ok(brokers)) = (
        std::env::var("EVENTBUS_TEST_DATABASE_URL"),
        std::env::var("EVENTBUS_TEST_KAFKA_BROKERS"),
    ) else {
        eprintln!(
            "consumer bench: set EVENTBUS_TEST_DATABASE_URL and EVENTBUS_TEST_KAFKA_BROKERS (eval \"$(scripts/services start)\")"
        );
        std::process::exit(2);
    };
    let events: u64 = env("EVENTBUS_BENCH_EVENTS", 200_000);
    let inbox_events: u64 = env("EVENTBUS_BENCH_INBOX_EVENTS", 20_000);
    let kafka = KafkaConfig::new(&brokers);
    let bus = EventBus::builder(Bench)
        .kafka(kafka.clone())
        .direct()
        .build()
        .await
        .unwrap();

    // A fresh topic: every consumer reads exactly this run's records.
    recreate_topic(&kafka).await;
    let run = uuid::Uuid::now_v7().simple().to_string();
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

    let raw = raw_consumer(&kafka, &format!("raw-{run}"), events).await;
    let typed = typed_consumer(&bus, &format!("typed-{run}"), events, None).await;
    println!("consumer bench: {events} records of ~200 bytes on 8 partitions");
    println!("  raw rdkafka consumer:         {raw:>9.0} records/s");
    println!(
        "  eventbus consumer (no inbox): {typed:>9.0} records/s ({:.2} of raw)",
        typed / raw
    );

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let table = format!("bench_inbox_{}", &run[20..]);
    let inbox = Inbox::postgres(pool.clone(), &table).unwrap();
    let with_inbox = typed_consumer(&bus, &format!("inbox-{run}"), inbox_events, Some(inbox)).await;
    println!(
        "  eventbus consumer with inbox: {with_inbox:>9.0} records/s (PostgreSQL; one transaction per record)"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
        .execute(&pool)
        .await
        .ok();
}

async fn recreate_topic(kafka: &KafkaConfig) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers.join(","))
        .create()
        .unwrap();
    let name = <WorkTopic as Topic>::NAME;
    let _ = admin.delete_topics(&[name], &AdminOptions::new()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let created = admin
            .create_topics(
                &[NewTopic::new(name, 8, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .unwrap();
        if created.iter().all(Result::is_ok) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cannot recreate {name}: {created:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A bare StreamConsumer in a new group, from the earliest offset, storing each offset as the
/// typed consumer does: records/s over the whole topic.
async fn raw_consumer(kafka: &KafkaConfig, group: &str, count: u64) -> f64 {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers.join(","))
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[<WorkTopic as Topic>::NAME]).unwrap();
    let started = Instant::now();
    let mut seen = 0u64;
    while seen < count {
        let m = consumer.recv().await.unwrap();
        consumer.store_offset_from_message(&m).unwrap();
        seen += 1;
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// The typed consumer in a new group, from the earliest offset: records/s until it has handled
/// `total` records.
async fn typed_consumer(
    bus: &EventBus<Bench>,
    group: &str,
    total: u64,
    inbox: Option<Inbox>,
) -> f64 {
    let handled = Arc::new(AtomicU64::new(0));
    let h = Arc::clone(&handled);
    let consumer = bus
        .consumer(group)
        .subscribe::<WorkTopic>()
        .concurrency(2048);
    let consumer = match inbox {
        None => consumer.on::<Work, _>(move |_w: Work| {
            h.fetch_add(1, Ordering::Relaxed);
            async {}
        }),
        Some(inbox) => consumer
            .inbox(inbox)
            .on_tx::<Work, _>(move |_w: Work, tx: InboxTx| {
                h.fetch_add(1, Ordering::Relaxed);
                async move { Ok::<_, eventbus::HandlerError>(tx) }
            }),
    };
    let started = Instant::now();
    let handle = consumer.start().await.unwrap();
    while handled.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    handle.shutdown().await;
    rate
}
