//! Direct-mode publishing beside a raw rdkafka producer sending the same records, on real Kafka
//! (not a timed test: run it by hand and read the figures it prints).
//!
//! ```sh
//! eval "$(scripts/services start)"
//! cargo bench -p eventbus --bench direct
//! ```
//!
//! Both send N events of ~200 bytes over 1,000 keys to one 8-partition topic, in chunks of
//! 20,000: everything handed to the producer, then every acknowledgement awaited. Both producers
//! have the settings eventbus uses (idempotent, `acks=all`, `linger.ms=0`,
//! `batch.num.messages=10000`), and the raw one does what a hand-written CloudEvents producer must
//! do per record: a UUIDv7 id, the RFC 3339 time, the JSON payload, the same eight headers. The
//! eventbus side is `EventBus::publish_all` (Direct mode): the envelope, the contract checks
//! (`bus/conform.rs`), the headers, the send. The two take turns chunk by chunk (which goes first
//! alternating), `EVENTBUS_BENCH_ROUNDS` rounds (default 5), and the bench prints each round's
//! summed times and their ratio, the median of those, and the median ratio over every pair of
//! turns on one chunk (the least disturbed by a slow spell of the machine).
//!
//! Settings: `EVENTBUS_BENCH_EVENTS` (default 200000), `EVENTBUS_BENCH_ROUNDS` (default 5).

#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};
use support::env;

use eventbus::{EventBus, KafkaConfig, Service, SystemEvent, Topic};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Service)]
#[service(name = "bench")]
struct Bench;

/// A benchmark record.
#[derive(SystemEvent, Serialize, Deserialize, Clone)]
#[event(service = Bench, topic = "eventbus.bench.direct")]
struct Work {
    #[event(key)]
    key: u32,
    n: u64,
    data: String,
}

const CHUNK: usize = 20_000;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let (_, brokers) = support::services("direct");
    let events: u64 = env("EVENTBUS_BENCH_EVENTS", 200_000);
    let rounds: usize = env("EVENTBUS_BENCH_ROUNDS", 5);
    let kafka = KafkaConfig::new(&brokers);
    let topic = <WorkTopic as Topic>::NAME;
    support::recreate_topic(&kafka, topic, 8).await;
    let bus = EventBus::builder(Bench)
        .kafka(kafka.clone())
        .direct()
        .build()
        .await
        .unwrap();
    let raw: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers.join(","))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("compression.type", "none")
        .create()
        .unwrap();
    let work: Vec<Work> = (0..events)
        .map(|n| Work {
            key: (n % 1000) as u32,
            n,
            data: "x".repeat(150),
        })
        .collect();
    // Warm both producers (metadata, connections, the idempotent producer's id).
    bus.publish_all(&work[..1000]).await.unwrap();
    send_raw(&raw, topic, &work[..1000]).await;

    println!(
        "direct bench: {events} events of ~200 bytes, 1000 keys, 8 partitions, chunks of {CHUNK}"
    );
    let mut ratios = Vec::with_capacity(rounds);
    // The ratio of each pair of turns on the same chunk, over all rounds.
    let mut pairs = Vec::new();
    for round in 1..=rounds {
        // The two take turns chunk by chunk, alternating which goes first, so a slow spell of
        // the machine or the broker (a log segment rolled, the JVM collecting) falls on both
        // about equally.
        let mut raw_time = Duration::ZERO;
        let mut direct_time = Duration::ZERO;
        for (i, chunk) in work.chunks(CHUNK).enumerate() {
            let raw_first = (i + round) % 2 == 0;
            let (mut raw_turn, mut direct_turn) = (Duration::ZERO, Duration::ZERO);
            for raw_goes in [raw_first, !raw_first] {
                let started = Instant::now();
                if raw_goes {
                    send_raw(&raw, topic, chunk).await;
                    raw_turn = started.elapsed();
                } else {
                    bus.publish_all(chunk).await.unwrap();
                    direct_turn = started.elapsed();
                }
            }
            raw_time += raw_turn;
            direct_time += direct_turn;
            pairs.push(direct_turn.as_secs_f64() / raw_turn.as_secs_f64());
        }
        let ratio = direct_time.as_secs_f64() / raw_time.as_secs_f64();
        ratios.push(ratio);
        println!(
            "  round {round}: raw rdkafka {} ({:.0} events/s), eventbus Direct {} ({:.0} events/s): {ratio:.3}x the raw time",
            ms(raw_time),
            events as f64 / raw_time.as_secs_f64(),
            ms(direct_time),
            events as f64 / direct_time.as_secs_f64(),
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "  median: eventbus Direct takes {:.3}x the raw producer's time (range {:.3}-{:.3})",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
    pairs.sort_by(f64::total_cmp);
    println!(
        "  median over the {} chunk pairs: {:.3}x (quartiles {:.3}-{:.3})",
        pairs.len(),
        pairs[pairs.len() / 2],
        pairs[pairs.len() / 4],
        pairs[pairs.len() * 3 / 4]
    );
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// What a hand-written CloudEvents producer does: per record an id, a time, the JSON payload and
/// the headers; every record handed over, then every acknowledgement awaited.
async fn send_raw(producer: &FutureProducer, topic: &str, work: &[Work]) {
    let mut pending = Vec::with_capacity(work.len());
    for w in work {
        let payload = serde_json::to_vec(w).unwrap();
        let id = uuid::Uuid::now_v7().to_string();
        let time = OffsetDateTime::now_utc().format(&Rfc3339).unwrap();
        let key = w.key.to_string();
        let headers = [
            ("ce_specversion", "1.0"),
            ("ce_id", id.as_str()),
            ("ce_source", "bench"),
            ("ce_type", Work::EVENT_TYPE),
            ("ce_time", time.as_str()),
            ("ce_schemaversion", "1"),
            ("ce_category", "system"),
            ("content-type", "application/json"),
        ]
        .into_iter()
        .fold(OwnedHeaders::new_with_capacity(8), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value),
            })
        });
        let record = FutureRecord::to(topic)
            .payload(&payload)
            .key(&key)
            .headers(headers);
        pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for delivery in pending {
        delivery.await.unwrap().unwrap();
    }
}
