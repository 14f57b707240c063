//! The Kafka side: the idempotent producer, records from envelopes and outbox rows, and the
//! embedded broker (librdkafka's in-process mock cluster).

use std::sync::mpsc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::config::KafkaConfig;
use crate::envelope::Envelope;
use crate::error::StartError;

/// Creates the idempotent producer every mode uses: `enable.idempotence=true`, `acks=all`, no
/// linger (`linger.ms=0`: records queued while a request is in flight still go out together, and
/// an event alone does not wait for company); the user's properties override ours.
pub(crate) fn producer(config: &KafkaConfig) -> Result<FutureProducer, StartError> {
    create_producer(config, |_| {})
}

/// The relay's producer: [`producer`], except that a record never times out in librdkafka
/// (`message.timeout.ms=0`, whatever the configuration says).
///
/// A record that times out while still queued is reported failed, yet a later record of the same
/// partition that was queued behind it may still be sent when the broker comes back: the later
/// event of a key would overtake the earlier one (librdkafka's gapless guarantee excludes
/// timeouts). So the relay waits out an outage with its records queued, in order, and librdkafka
/// retries them; stopping the relay purges what is queued (its rows stay in the outbox).
pub(crate) fn relay_producer(config: &KafkaConfig) -> Result<FutureProducer, StartError> {
    let configured = config
        .properties
        .iter()
        .find(|(k, _)| *k == "message.timeout.ms" || *k == "delivery.timeout.ms")
        .filter(|(_, v)| *v != "0");
    if let Some((key, value)) = configured {
        tracing::warn!(
            "eventbus relay: ignoring the Kafka property {key}={value}: a record that times out \
             in the producer's queue can be overtaken by a later event of its key, so the relay \
             never times records out and waits out outages instead"
        );
    }
    create_producer(config, |c| {
        c.remove("delivery.timeout.ms");
        c.set("message.timeout.ms", "0");
    })
}

fn create_producer(
    config: &KafkaConfig,
    finish: impl FnOnce(&mut rdkafka::ClientConfig),
) -> Result<FutureProducer, StartError> {
    let mut c = rdkafka::ClientConfig::new();
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("message.timeout.ms", "30000")
        .set("compression.type", "none");
    for (k, v) in config.client_config().config_map() {
        c.set(k, v);
    }
    finish(&mut c);
    c.create().map_err(|source| StartError::Kafka {
        servers: config.bootstrap_servers.join(","),
        source: crate::config::redact::kafka_error(source, Some(config)),
    })
}

/// The record headers of `envelope`.
pub(crate) fn headers(envelope: &Envelope) -> OwnedHeaders {
    let mut out = Some(OwnedHeaders::new_with_capacity(12));
    envelope.each_header(|key, value| {
        out = out.take().map(|h| {
            h.insert(Header {
                key,
                value: Some(value),
            })
        });
    });
    out.unwrap_or_default()
}

/// The record headers of an outbox row (its JSON object of strings).
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn headers_of_row(headers: &crate::outbox::RowHeaders) -> OwnedHeaders {
    let pairs = headers.pairs();
    let mut out = OwnedHeaders::new_with_capacity(pairs.len());
    for (key, value) in &pairs {
        out = out.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    out
}

/// A record for `envelope`.
pub(crate) fn record<'a>(
    envelope: &'a Envelope,
    headers: OwnedHeaders,
) -> FutureRecord<'a, str, [u8]> {
    record_of(
        &envelope.topic,
        envelope.key.as_deref(),
        &envelope.payload,
        headers,
    )
}

/// A record of its parts: for an envelope ([`record`]), a payload held apart from its envelope
/// (Direct mode's batches keep every payload of a batch in one buffer), an outbox row.
pub(crate) fn record_of<'a>(
    topic: &'a str,
    key: Option<&'a str>,
    payload: &'a [u8],
    headers: OwnedHeaders,
) -> FutureRecord<'a, str, [u8]> {
    let record = FutureRecord::to(topic).payload(payload).headers(headers);
    match key {
        Some(key) => record.key(key),
        None => record,
    }
}

/// librdkafka's in-process mock cluster, kept alive on a thread of its own (its handle cannot
/// cross threads). Dropping this stops it.
pub struct EmbeddedKafka {
    bootstrap_servers: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKafka")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .finish()
    }
}

impl EmbeddedKafka {
    /// Starts a one-broker mock cluster.
    pub fn start() -> Result<Self, StartError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("eventbus-embedded-kafka".into())
            .spawn(move || match MockCluster::new(1) {
                Ok(cluster) => {
                    let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                    let _ = stop_rx.recv();
                    drop(cluster);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| StartError::Kafka {
                servers: "embedded".into(),
                source: rdkafka::error::KafkaError::ClientCreation(e.to_string()),
            })?;
        let bootstrap_servers = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| StartError::Kafka {
                servers: "embedded".into(),
                source: rdkafka::error::KafkaError::ClientCreation(e.to_string()),
            })?
            .map_err(|source| StartError::Kafka {
                servers: "embedded".into(),
                source,
            })?;
        Ok(EmbeddedKafka {
            bootstrap_servers,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The mock cluster's address, for any Kafka client in this process.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// A [`KafkaConfig`] pointing at it. (The mock answers an empty fetch only after
    /// `fetch.wait.max.ms`, even when records arrive meanwhile: a short wait keeps consumers
    /// close behind producers. Its classic group protocol holds a new group for 3 s before the
    /// first assignment; the KIP-848 protocol assigns on the first heartbeat.)
    pub fn config(&self) -> KafkaConfig {
        KafkaConfig::new(&self.bootstrap_servers)
            .with_property("fetch.wait.max.ms", "5")
            .with_property("group.protocol", "consumer")
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
