//! Test layers (README, "Workspace"; ARCHITECTURE.md): the embedded layer (SQLite + librdkafka's mock
//! cluster, runs everywhere) and the real layer (PostgreSQL + Apache Kafka started by
//! `scripts/services`). A real-layer test fails, never skips, when `EVENTBUS_REQUIRE_SERVICES=1`.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use eventbus::kafka::EmbeddedKafka;
use eventbus::outbox::OutboxStore;
use eventbus::{Database, Envelope, KafkaConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// Where a test runs.
pub struct Layer {
    pub name: &'static str,
    pub store: OutboxStore,
    pub kafka: KafkaConfig,
    pub table: String,
    pub _embedded: Option<EmbeddedKafka>,
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

/// SQLite in a temp file and an in-process mock cluster.
pub async fn embedded() -> Layer {
    let kafka = EmbeddedKafka::start().expect("the mock cluster starts");
    let table = unique("t");
    let path = std::env::temp_dir().join(format!("{table}.db"));
    let store = eventbus::outbox::connect(
        Database::Url(format!("sqlite://{}", path.display())),
        &table,
    )
    .await
    .expect("SQLite opens");
    store.migrate().await.expect("migration runs");
    Layer {
        name: "embedded",
        store,
        kafka: kafka.config(),
        table,
        _embedded: Some(kafka),
    }
}

/// Real PostgreSQL and Kafka, from `EVENTBUS_TEST_DATABASE_URL` and `EVENTBUS_TEST_KAFKA_BROKERS`.
/// `None` (the test prints that it did not run) only when the services are not required.
pub async fn real() -> Option<Layer> {
    let required = std::env::var("EVENTBUS_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
    let (Ok(url), Ok(brokers)) = (
        std::env::var("EVENTBUS_TEST_DATABASE_URL"),
        std::env::var("EVENTBUS_TEST_KAFKA_BROKERS"),
    ) else {
        assert!(
            !required,
            "EVENTBUS_REQUIRE_SERVICES=1 but the service addresses are not set"
        );
        eprintln!(
            "real layer not run: start the services with `scripts/services start` or run `scripts/test`"
        );
        return None;
    };
    let table = unique("t");
    let store = match eventbus::outbox::connect(Database::Url(url.clone()), &table).await {
        Ok(store) => store,
        Err(e) if !required => {
            eprintln!("real layer not run: {e}");
            return None;
        }
        Err(e) => panic!("PostgreSQL at {url} is required: {e}"),
    };
    store.migrate().await.expect("migration runs");
    Some(Layer {
        name: "real",
        store,
        kafka: KafkaConfig::new(&brokers),
        table,
        _embedded: None,
    })
}

/// The layers to run: embedded always, real when available.
/// A Direct bus on `layer`'s Kafka.
pub async fn direct_bus(layer: &Layer) -> eventbus::EventBus<eventbus_tests::Petstore> {
    eventbus::EventBus::builder(eventbus_tests::Petstore)
        .kafka(layer.kafka.clone())
        .direct()
        .build()
        .await
        .expect("the bus starts")
}

/// A Transactional bus on `layer`'s database and Kafka, with its relay, polling every 100 ms.
pub async fn transactional_bus(layer: &Layer) -> eventbus::EventBus<eventbus_tests::Petstore> {
    eventbus::EventBus::builder(eventbus_tests::Petstore)
        .database(layer.store.database())
        .kafka(layer.kafka.clone())
        .outbox(eventbus::OutboxConfig {
            table: layer.table.clone(),
            poll_interval: Duration::from_millis(100),
            ..eventbus::OutboxConfig::default()
        })
        .build()
        .await
        .expect("the bus starts")
}

/// A consumer of `OrderPlaced` in group `group` that does nothing, once the group has assigned it
/// partitions.
pub async fn idle_order_consumer<S: eventbus::Service>(
    bus: &eventbus::EventBus<S>,
    group: &str,
) -> eventbus::consumer::ConsumerHandle {
    use eventbus_tests::{OrderPlaced, OrderPlacedTopic};
    let consumer = bus
        .consumer(group)
        .subscribe::<OrderPlacedTopic>()
        .on::<OrderPlaced, _>(|_e: OrderPlaced| async {})
        .start()
        .await
        .expect("the consumer starts");
    assert!(
        consumer.ready(Duration::from_secs(30)).await,
        "the group assigns partitions"
    );
    consumer
}

pub async fn layers() -> Vec<Layer> {
    let mut out = vec![embedded().await];
    out.extend(real().await);
    out
}

/// Reads a topic from its current end: only records produced after `at_end` returns.
pub struct Reader {
    consumer: BaseConsumer,
    topic: String,
}

impl Reader {
    pub async fn at_end(kafka: &KafkaConfig, topic: &str) -> Reader {
        let servers = kafka.bootstrap_servers.join(",");
        if !is_mock(&servers) {
            // Eight partitions on real Kafka; the mock cluster does not answer CreateTopics, and
            // creates topics on first use anyway.
            let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &servers)
                .create()
                .expect("admin client");
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                admin.create_topics(
                    &[NewTopic::new(topic, 8, TopicReplication::Fixed(1))],
                    &AdminOptions::new(),
                ),
            )
            .await;
        }
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .set("group.id", "eventbus-tests-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("allow.auto.create.topics", "true")
            .create()
            .expect("consumer");
        let deadline = Instant::now() + Duration::from_secs(30);
        let partitions = loop {
            let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5));
            if let Ok(m) = metadata
                && let Some(t) = m.topics().first()
                && !t.partitions().is_empty()
                && t.error().is_none()
            {
                break t.partitions().len() as i32;
            }
            assert!(
                Instant::now() < deadline,
                "topic {topic} has no partitions after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            let high = loop {
                match consumer.fetch_watermarks(topic, p, Duration::from_secs(5)) {
                    Ok((_, high)) => break high,
                    Err(e) => {
                        assert!(
                            Instant::now() < deadline,
                            "no watermarks for {topic}/{p}: {e}"
                        );
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            };
            list.add_partition_offset(topic, p, Offset::Offset(high))
                .expect("offset");
        }
        consumer.assign(&list).expect("assign");
        Reader {
            consumer,
            topic: topic.to_owned(),
        }
    }

    /// Reads until `until` says stop or `timeout` passes; returns what it read, in order of
    /// arrival (per partition, in offset order).
    pub fn read(&self, timeout: Duration, mut until: impl FnMut(&[Record]) -> bool) -> Vec<Record> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while Instant::now() < deadline && !until(&out) {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(Record {
                        topic: m.topic().to_owned(),
                        partition: m.partition(),
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        headers,
                        payload: m.payload().unwrap_or_default().to_vec(),
                    });
                }
                Some(Err(e)) => eprintln!("reader {}: {e}", self.topic),
                None => {}
            }
        }
        out
    }
}

/// True for the mock cluster's address (the real layer's comes from the environment).
fn is_mock(servers: &str) -> bool {
    std::env::var("EVENTBUS_TEST_KAFKA_BROKERS").map_or(true, |real| real != servers)
}

/// One consumed record.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub key: Option<String>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub payload: Vec<u8>,
}

impl Record {
    pub fn envelope(&self) -> Envelope {
        Envelope::from_record(
            &self.topic,
            self.key.as_deref().map(str::as_bytes),
            self.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            &self.payload,
        )
        .expect("a CloudEvents record")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Counts per value.
pub fn counts<T: std::hash::Hash + Eq + Clone>(
    items: impl IntoIterator<Item = T>,
) -> HashMap<T, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i).or_default() += 1;
    }
    m
}

/// The dead-letter notifications (`system.eventbus.dead_lettered`) of the dead letter of event
/// `event_id`, read by `reader` (opened before the dead letter): waits up to 30 s for the first,
/// then 2 s more for any other, so a test can check there is exactly one.
pub fn notifications(reader: &Reader, event_id: &str) -> Vec<eventbus::dlq::DeadLettered> {
    notifications_of(reader, &[event_id]).remove(0)
}

/// [`notifications`] of several dead letters at once (one reader reads each record once), in
/// the order of `event_ids`.
pub fn notifications_of(
    reader: &Reader,
    event_ids: &[&str],
) -> Vec<Vec<eventbus::dlq::DeadLettered>> {
    use eventbus::dlq::DeadLettered;
    let notice = |r: &Record| r.envelope().decode::<DeadLettered>().ok();
    let of = |r: &Record, id: &str| notice(r).is_some_and(|n| n.event_id.as_deref() == Some(id));
    let mut got = reader.read(Duration::from_secs(30), |got| {
        event_ids.iter().all(|id| got.iter().any(|r| of(r, id)))
    });
    got.extend(reader.read(Duration::from_secs(2), |_| false));
    event_ids
        .iter()
        .map(|id| {
            got.iter()
                .filter(|r| of(r, id))
                .filter_map(notice)
                .collect()
        })
        .collect()
}
