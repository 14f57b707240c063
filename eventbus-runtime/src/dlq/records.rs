//! Dead-letter records on Kafka: their headers, [`read`] and [`replay`] (feature `kafka`).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::{CLASS, ErrorClass};
use crate::config::KafkaConfig;
use crate::envelope::Envelope;
pub use crate::error::ReplayError;
use crate::filter::EventFilter;

/// The prefix of every dead-letter header (stripped on replay).
const PREFIX: &str = "eventbus_dlq_";
/// The topic the record was bound for.
pub const ORIGINAL_TOPIC: &str = "eventbus_dlq_topic";
/// The partition it was read from (consumer).
pub const ORIGINAL_PARTITION: &str = "eventbus_dlq_partition";
/// Its offset (consumer).
pub const ORIGINAL_OFFSET: &str = "eventbus_dlq_offset";
/// The last error.
pub const ERROR: &str = "eventbus_dlq_error";
/// Attempts made.
pub const ATTEMPTS: &str = "eventbus_dlq_attempts";
/// What gave up on it: a handler's name, or [`RELAY`].
pub const FAILED_IN: &str = "eventbus_dlq_failed_in";
/// The consumer group (consumer).
pub const GROUP: &str = "eventbus_dlq_group";

/// The [`FAILED_IN`] value of what the relay dead-letters.
pub const RELAY: &str = "eventbus-relay";

/// Why a record is dead-lettered, and where it came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeadLetter<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: Option<i32>,
    pub(crate) offset: Option<i64>,
    pub(crate) error: &'a str,
    pub(crate) attempts: u32,
    pub(crate) failed_in: &'a str,
    pub(crate) group: Option<&'a str>,
    pub(crate) class: ErrorClass,
}

impl DeadLetter<'_> {
    /// The headers of the dead letter: the `original` record's (without dead-letter headers of an
    /// earlier death), then ours.
    pub(crate) fn headers<'h>(
        &self,
        original: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    ) -> OwnedHeaders {
        let mut out = OwnedHeaders::new();
        for (key, value) in original.into_iter().filter(|(k, _)| !k.starts_with(PREFIX)) {
            out = out.insert(Header {
                key,
                value: Some(value),
            });
        }
        for (key, value) in self.pairs() {
            out = out.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        out
    }

    /// Our headers, as text.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![(ORIGINAL_TOPIC, self.topic.to_owned())];
        if let Some(p) = self.partition {
            pairs.push((ORIGINAL_PARTITION, p.to_string()));
        }
        if let Some(o) = self.offset {
            pairs.push((ORIGINAL_OFFSET, o.to_string()));
        }
        pairs.extend([
            (ERROR, self.error.to_owned()),
            (ATTEMPTS, self.attempts.to_string()),
            (FAILED_IN, self.failed_in.to_owned()),
            (CLASS, self.class.as_str().to_owned()),
        ]);
        if let Some(g) = self.group {
            pairs.push((GROUP, g.to_owned()));
        }
        pairs
    }
}

/// Which dead records to replay.
#[derive(Debug, Clone)]
pub enum Which {
    /// All of them.
    All,
    /// These event ids (`ce_id`).
    Events(Vec<uuid::Uuid>),
    /// Those the filter lets through.
    Filter(EventFilter),
}

/// A consumer assigned to a dead-letter topic, and where each of its partitions ends.
type Opened = (BaseConsumer, Vec<(i32, i64)>);

/// A consumer of `dead_letter_topic` assigned from its start, and each non-empty partition's end;
/// `None` when it holds nothing.
fn open(kafka: &KafkaConfig, dead_letter_topic: &str) -> Result<Option<Opened>, ReplayError> {
    let err = |source| ReplayError {
        dead_letter_topic: dead_letter_topic.to_owned(),
        source: crate::config::redact::kafka_error(source, Some(kafka)),
    };
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("group.id", "eventbus-dlq-replay")
        .set("enable.auto.commit", "false");
    for (k, v) in kafka.client_config().config_map() {
        config.set(k, v);
    }
    let consumer: BaseConsumer = config.create().map_err(err)?;
    let metadata = consumer
        .fetch_metadata(Some(dead_letter_topic), Duration::from_secs(10))
        .map_err(err)?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len() as i32);
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(dead_letter_topic, p, Duration::from_secs(10))
            .map_err(err)?;
        if high > low {
            tpl.add_partition_offset(dead_letter_topic, p, Offset::Offset(low))
                .map_err(err)?;
            ends.push((p, high));
        }
    }
    if ends.is_empty() {
        return Ok(None);
    }
    consumer.assign(&tpl).map_err(err)?;
    Ok(Some((consumer, ends)))
}

/// A record of a dead-letter topic, as [`read`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadRecord {
    /// Its partition in the dead-letter topic.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Every header, the dead-letter ones included.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Its value.
    pub payload: Vec<u8>,
}

impl DeadRecord {
    /// The class of its last error (`None` without the `eventbus_dlq_class` header).
    pub fn class(&self) -> Option<ErrorClass> {
        ErrorClass::from_name(&self.header(CLASS)?)
    }

    /// A header's value, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Reads up to `max` records of `dead_letter_topic`, from its start to its current end, without
/// replaying anything (blocking: from async code, call it on a blocking thread).
pub fn read(
    kafka: &KafkaConfig,
    dead_letter_topic: &str,
    max: usize,
) -> Result<Vec<DeadRecord>, ReplayError> {
    let err = |source| ReplayError {
        dead_letter_topic: dead_letter_topic.to_owned(),
        source: crate::config::redact::kafka_error(source, Some(kafka)),
    };
    let Some((consumer, mut remaining)) = open(kafka, dead_letter_topic)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !remaining.is_empty() && out.len() < max && std::time::Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.map_err(err)?;
        remaining.retain(|(p, high)| !(*p == message.partition() && message.offset() + 1 >= *high));
        out.push(DeadRecord {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            headers: message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default(),
            payload: message.payload().unwrap_or_default().to_vec(),
        });
    }
    Ok(out)
}

/// Counts the records of `dead_letter_topic` per class (the `eventbus_dlq_class` header;
/// `unknown` without one), with the age of the oldest of each (its record timestamp), reading at
/// most `max` records from its start within `within` (blocking). For the gauges of the operations
/// API's `/metrics`.
pub(crate) fn count(
    kafka: &KafkaConfig,
    dead_letter_topic: &str,
    max: usize,
    within: Duration,
) -> Result<Vec<crate::metrics::DeadCount>, ReplayError> {
    let err = |source| ReplayError {
        dead_letter_topic: dead_letter_topic.to_owned(),
        source: crate::config::redact::kafka_error(source, Some(kafka)),
    };
    let Some((consumer, mut remaining)) = open(kafka, dead_letter_topic)? else {
        return Ok(Vec::new());
    };
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    // Per class: how many, and the oldest timestamp (ms).
    let mut classes: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    let mut read = 0;
    let deadline = std::time::Instant::now() + within;
    while !remaining.is_empty() && read < max && std::time::Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.map_err(err)?;
        read += 1;
        remaining.retain(|(p, high)| !(*p == message.partition() && message.offset() + 1 >= *high));
        let class = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == CLASS))
            .and_then(|h| std::str::from_utf8(h.value.unwrap_or_default()).ok())
            .unwrap_or("unknown")
            .to_owned();
        let at = message.timestamp().to_millis().unwrap_or(now_ms as i64);
        let entry = classes.entry(class).or_insert((0, at));
        entry.0 += 1;
        entry.1 = entry.1.min(at);
    }
    Ok(classes
        .into_iter()
        .map(|(class, (count, oldest))| crate::metrics::DeadCount {
            class,
            count,
            oldest: Duration::from_millis((now_ms as i64 - oldest).max(0) as u64),
        })
        .collect())
}

/// The topics of the cluster whose name ends in `.dlq` (blocking).
pub(crate) fn dlq_topics(kafka: &KafkaConfig) -> Vec<String> {
    let mut config = rdkafka::ClientConfig::new();
    for (k, v) in kafka.client_config().config_map() {
        config.set(k, v);
    }
    let Ok(consumer) = config.create::<BaseConsumer>() else {
        return Vec::new();
    };
    consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .map(|m| {
            m.topics()
                .iter()
                .map(|t| t.name().to_owned())
                .filter(|t| t.ends_with(".dlq"))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads `dead_letter_topic` from its start to its current end and publishes the chosen records
/// back to their original topics (without the dead-letter headers); returns how many. Records the
/// relay and the consumers dead-lettered carry the same headers, so both replay. The DLQ keeps its
/// records: replaying twice delivers twice (a consumer with an inbox ignores the second).
pub async fn replay(
    kafka: &KafkaConfig,
    dead_letter_topic: &str,
    which: Which,
) -> Result<u64, ReplayError> {
    let err = |source| ReplayError {
        dead_letter_topic: dead_letter_topic.to_owned(),
        source: crate::config::redact::kafka_error(source, Some(kafka)),
    };
    let Some((consumer, ends)) = open(kafka, dead_letter_topic)? else {
        return Ok(0);
    };
    let producer: FutureProducer = crate::kafka::producer(kafka)
        .map_err(|e| err(rdkafka::error::KafkaError::ClientCreation(e.to_string())))?;
    let mut remaining = ends.clone();
    let mut replayed = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !remaining.is_empty() && std::time::Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.map_err(err)?;
        remaining.retain(|(p, high)| !(*p == message.partition() && message.offset() + 1 >= *high));
        let headers: Vec<(String, Vec<u8>)> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        let original = headers
            .iter()
            .find(|(k, _)| k == ORIGINAL_TOPIC)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        let Some(original) = original else { continue };
        let wanted = match &which {
            Which::All => true,
            Which::Events(ids) => headers
                .iter()
                .find(|(k, _)| k == crate::envelope::headers::ID)
                .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<uuid::Uuid>().ok())
                .is_some_and(|id| ids.contains(&id)),
            Which::Filter(filter) => Envelope::from_record(
                &original,
                message.key(),
                headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
                message.payload().unwrap_or_default(),
            )
            .is_ok_and(|e| filter.matches(&e)),
        };
        if !wanted {
            continue;
        }
        let mut out = OwnedHeaders::new();
        for (k, v) in headers.iter().filter(|(k, _)| !k.starts_with(PREFIX)) {
            out = out.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            });
        }
        let mut record = FutureRecord::to(&original)
            .payload(message.payload().unwrap_or_default())
            .headers(out);
        if let Some(k) = message.key() {
            record = record.key(k);
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| err(e))?;
        replayed += 1;
    }
    Ok(replayed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_keeps_the_record_and_says_where_it_came_from_once() {
        let relay = DeadLetter {
            topic: "domain.petstore.order",
            partition: None,
            offset: None,
            error: "Message size too large",
            attempts: 3,
            failed_in: RELAY,
            group: None,
            class: ErrorClass::BrokerRefused,
        };
        let original: [(&str, &[u8]); 3] = [
            ("ce_id", b"1"),
            // A record dead-lettered before, replayed, then dead again: its old headers go.
            (ERROR, b"an older error"),
            ("ce_type", b"petstore.order.order_placed"),
        ];
        let headers = relay.headers(original);
        let got: Vec<(String, String)> = headers
            .iter()
            .map(|h| {
                (
                    h.key.to_owned(),
                    String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        let get = |k: &str| {
            got.iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("ce_id"), ["1"]);
        assert_eq!(get(ORIGINAL_TOPIC), ["domain.petstore.order"]);
        assert_eq!(get(ERROR), ["Message size too large"]);
        assert_eq!(get(ATTEMPTS), ["3"]);
        assert_eq!(get(FAILED_IN), [RELAY]);
        assert_eq!(get(CLASS), ["broker_refused"]);
        assert!(get(ORIGINAL_PARTITION).is_empty() && get(GROUP).is_empty());
        let consumer = DeadLetter {
            partition: Some(2),
            offset: Some(41),
            failed_in: "notifications::send",
            group: Some("notifications"),
            ..relay
        };
        let pairs = consumer.pairs();
        assert!(pairs.contains(&(ORIGINAL_OFFSET, "41".to_owned())));
        assert!(pairs.contains(&(GROUP, "notifications".to_owned())));
        assert!(pairs.iter().all(|(k, _)| k.starts_with(PREFIX)));
    }
}
