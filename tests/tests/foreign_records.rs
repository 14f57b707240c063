//! Records eventbus did not write, on both layers: one verdict per record whatever way it goes
//! through the consumer (handled in the poll loop, or queued behind a busy key), and records of
//! a foreign producer built with the official CloudEvents SDK for Python
//! (`scripts/foreign/produce.py`) handled with what they carry (docs/consumers.md, "Records
//! from other producers").

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventbus::consumer::Plugin;
use eventbus::{Category, Envelope, EventFilter, HandlerError, dlq};
use eventbus_tests::{Parcel, ParcelTopic, ParcelV2};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::{Layer, Reader, direct_bus};
use uuid::Uuid;

const TOPIC: &str = "eventbus.tests.parcels";
const DLQ: &str = "eventbus.tests.parcels.dlq";

fn producer(layer: &Layer) -> FutureProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", layer.kafka.bootstrap_servers.join(","))
        .create()
        .unwrap()
}

/// The headers our producers write for event `id`, with `changed` replacing (or, with an empty
/// value, removing) some.
fn headers(id: &str, changed: &[(&str, &str)]) -> OwnedHeaders {
    let time = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut all: Vec<(&str, String)> = vec![
        ("ce_specversion", "1.0".into()),
        ("ce_id", id.into()),
        ("ce_source", "petstore".into()),
        ("ce_type", Parcel::EVENT_TYPE.into()),
        ("ce_time", time),
        ("ce_schemaversion", "1".into()),
        ("ce_category", "system".into()),
        ("content-type", "application/json".into()),
    ];
    for (name, value) in changed {
        all.retain(|(n, _)| n != name);
        if !value.is_empty() {
            all.push((name, (*value).to_owned()));
        }
    }
    all.into_iter()
        .fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        })
}

async fn send(producer: &FutureProducer, key: &str, headers: OwnedHeaders, job: &Parcel) {
    let payload = serde_json::to_vec(job).unwrap();
    producer
        .send(
            FutureRecord::to(TOPIC)
                .key(key)
                .payload(&payload)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `scripts/foreign/run` with `args` (in its Python environment); its standard output.
fn foreign(layer: &Layer, args: &[&str]) -> Vec<u8> {
    let run = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/foreign/run");
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(run).args(args).output().unwrap()
    });
    assert!(
        out.status.success(),
        "{}: scripts/foreign/run {args:?} failed: {}",
        layer.name,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The dead letters of this run's parcels that `group` dead-lettered, with their parcels, read
/// from `dlq_reader` until there are `count` of them (other runs and groups share the topic).
fn dead_letters(
    dlq_reader: &Reader,
    run: &str,
    group: &str,
    count: usize,
) -> Vec<(Parcel, support::Record)> {
    let of_this_run = |record: &support::Record| {
        serde_json::from_slice::<Parcel>(&record.payload)
            .ok()
            .filter(|j| j.run == run && record.header(dlq::GROUP).as_deref() == Some(group))
    };
    let dead = tokio::task::block_in_place(|| {
        dlq_reader.read(Duration::from_secs(30), |got| {
            got.iter().filter_map(of_this_run).count() >= count
        })
    });
    dead.into_iter()
        .filter_map(|record| of_this_run(&record).map(|job| (job, record)))
        .collect()
}

/// The malformed records: what changes in the headers, and what the dead letter's error names.
const MALFORMED: [(&str, &str, &str); 6] = [
    ("ce_time", "yesterday", "ce_time"),
    ("ce_id", "not-a-uuid", "ce_id"),
    ("ce_schemaversion", "two", "ce_schemaversion"),
    ("ce_category", "gossip", "ce_category"),
    ("ce_schemaversion", "9", "version 9"),
    ("content-type", "application/avro", "content-type"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_record_gets_one_verdict_on_either_path() {
    // Each malformed record is sent twice: on a key of its own (nothing queued: the poll loop
    // would handle it at once) and behind a record whose handler waits (queued on its key). Both
    // times it must be dead-lettered without its handler ever starting.
    for layer in support::layers().await {
        let run = Uuid::now_v7().simple().to_string();
        let bus = direct_bus(&layer).await;
        let dlq_reader = Reader::at_end(&layer.kafka, DLQ).await;
        let started: Arc<Mutex<Vec<u64>>> = Arc::default();
        let release = Arc::new(AtomicBool::new(false));
        let (s, r, run2) = (Arc::clone(&started), Arc::clone(&release), run.clone());
        let consumer = bus
            .consumer(&format!("verdicts-{run}"))
            .subscribe::<ParcelTopic>()
            .on::<Parcel, _>(move |job: Parcel| {
                let (release, run) = (Arc::clone(&r), run2.clone());
                // Recorded as the handler starts, before it first waits.
                if job.run == run {
                    s.lock().unwrap().push(job.n);
                }
                async move {
                    if job.run == run && job.n == 0 {
                        while !release.load(Ordering::Acquire) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            })
            .start()
            .await
            .unwrap();
        assert!(consumer.ready(Duration::from_secs(30)).await);
        let stats = consumer.stats();
        let producer = producer(&layer);
        let job = |n: u64, key: &str| Parcel {
            key: key.to_owned(),
            run: run.clone(),
            n,
        };
        let busy = format!("{run}-busy");
        // Parcel 0 holds its key until released.
        let id = Uuid::now_v7().to_string();
        send(&producer, &busy, headers(&id, &[]), &job(0, &busy)).await;
        wait_until("job 0 starts", Duration::from_secs(30), || {
            started.lock().unwrap().contains(&0)
        })
        .await;
        let mut malformed = BTreeMap::new();
        for (i, (header, value, named)) in MALFORMED.iter().enumerate() {
            for (path, n) in [("own key", 100 + i as u64), ("busy key", 200 + i as u64)] {
                let key = match path {
                    "own key" => format!("{run}-{n}"),
                    _ => busy.clone(),
                };
                let id = Uuid::now_v7().to_string();
                let headers = headers(&id, &[(header, value)]);
                send(&producer, &key, headers, &job(n, &key)).await;
                malformed.insert(n, (path, *named));
            }
        }
        // A good record behind them on the busy key, then the key is released.
        let id = Uuid::now_v7().to_string();
        send(&producer, &busy, headers(&id, &[]), &job(1, &busy)).await;
        release.store(true, Ordering::Release);
        wait_until("job 1 is handled", Duration::from_secs(30), || {
            started.lock().unwrap().contains(&1)
        })
        .await;
        // Dead letters of other runs and of other groups (the other test of this file reads the
        // same topic in its own group, and dead-letters these records too) share the topic.
        let group = format!("verdicts-{run}");
        let mut dead_jobs = HashSet::new();
        for (job, record) in dead_letters(&dlq_reader, &run, &group, malformed.len()) {
            let (path, named) = malformed[&job.n];
            let error = record.header(dlq::ERROR).unwrap();
            assert!(
                error.contains(named),
                "{}: job {} ({path}, {named}): {error}",
                layer.name,
                job.n
            );
            assert_eq!(record.header(dlq::FAILED_IN).as_deref(), Some("decoder"));
            // Kept whole: its key, and its headers as they came, the malformed one included.
            assert_eq!(
                record.key.as_deref(),
                Some(job.key.as_str()),
                "{}",
                layer.name
            );
            assert_eq!(record.header("ce_source").as_deref(), Some("petstore"));
            let (header, value, _) = MALFORMED[(job.n % 100) as usize];
            assert_eq!(
                record.header(header).as_deref(),
                Some(value),
                "{}: job {} keeps its {header}",
                layer.name,
                job.n
            );
            assert!(
                dead_jobs.insert(job.n),
                "{}: one dead letter each",
                layer.name
            );
        }
        assert_eq!(
            dead_jobs,
            malformed.keys().copied().collect(),
            "{}: every malformed record dead-lettered, on either path",
            layer.name
        );
        let started = started.lock().unwrap().clone();
        assert_eq!(
            started,
            [0, 1],
            "{}: no handler started for a malformed record",
            layer.name
        );
        // A new group reads the topic from its start: other runs' records count too.
        assert!(stats.dead_lettered() >= malformed.len() as u64);
        consumer.shutdown().await;
    }
}

/// What a plugin saw of each job: its number, category, version, and whether it had a time.
type Seen = Arc<Mutex<BTreeMap<u64, (Category, u32, time::OffsetDateTime)>>>;

struct Watch {
    run: String,
    seen: Seen,
}

impl Plugin for Watch {
    fn name(&self) -> &str {
        "watch"
    }
    fn filter(&self) -> EventFilter {
        EventFilter::new().source_service("python-inventory")
    }
    fn handle<'a>(
        &'a self,
        envelope: &'a Envelope,
    ) -> eventbus::BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let job: serde_json::Value = serde_json::from_slice(&envelope.payload)?;
            if job["run"] == self.run.as_str() {
                let n = job["n"].as_u64().unwrap();
                let seen = (envelope.category, envelope.version, envelope.time);
                self.seen.lock().unwrap().insert(n, seen);
            }
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_the_cloudevents_sdk_for_python_are_handled() {
    for layer in support::layers().await {
        let run = Uuid::now_v7().simple().to_string();
        let bus = direct_bus(&layer).await;
        let dlq_reader = Reader::at_end(&layer.kafka, DLQ).await;
        let v1: Arc<Mutex<Vec<u64>>> = Arc::default();
        let v2: Arc<Mutex<Vec<(u64, u8)>>> = Arc::default();
        let seen: Seen = Arc::default();
        let (a, b, r1, r2) = (Arc::clone(&v1), Arc::clone(&v2), run.clone(), run.clone());
        let consumer = bus
            .consumer(&format!("foreign-{run}"))
            .subscribe::<ParcelTopic>()
            .on::<Parcel, _>(move |job: Parcel| {
                if job.run == r1 {
                    a.lock().unwrap().push(job.n);
                }
                async {}
            })
            .on::<ParcelV2, _>(move |job: ParcelV2| {
                if job.run == r2 {
                    b.lock().unwrap().push((job.n, job.priority));
                }
                async {}
            })
            .plugin(Arc::new(Watch {
                run: run.clone(),
                seen: Arc::clone(&seen),
            }))
            .start()
            .await
            .unwrap();
        assert!(consumer.ready(Duration::from_secs(30)).await);
        let before = time::OffsetDateTime::now_utc() - Duration::from_secs(1);
        let brokers = layer.kafka.bootstrap_servers.join(",");
        let out = foreign(&layer, &[brokers.as_str(), TOPIC, run.as_str()]);
        let sent: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(sent.len(), 7, "{}", layer.name);
        wait_until("job 6 is handled", Duration::from_secs(30), || {
            v1.lock().unwrap().contains(&6)
        })
        .await;
        assert_eq!(
            *v1.lock().unwrap(),
            [0, 1, 3, 4, 6],
            "{}: unversioned records are of the lowest version handled, v1",
            layer.name
        );
        assert_eq!(
            *v2.lock().unwrap(),
            [(2, 7)],
            "{}: ce_schemaversion 2 selects the v2 type",
            layer.name
        );
        let seen = seen.lock().unwrap().clone();
        for (n, (category, version, time)) in &seen {
            assert_eq!(
                *category,
                Category::System,
                "{}: job {n} is of its handler's category",
                layer.name
            );
            assert_eq!(*version, if *n == 2 { 2 } else { 1 }, "{}", layer.name);
            assert!(*time >= before, "{}: job {n}'s time {time}", layer.name);
        }
        assert_eq!(
            seen.keys().copied().collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 6],
            "{}: the plugin sees every handled record",
            layer.name
        );
        // The malformed one is dead-lettered, named.
        let id = sent[5]["id"].as_str().unwrap();
        // The other test of this file reads the same topic in its own group.
        let group = format!("foreign-{run}");
        let is_it = |r: &support::Record| {
            r.header("ce_id").as_deref() == Some(id)
                && r.header(dlq::GROUP).as_deref() == Some(group.as_str())
        };
        let dead = tokio::task::block_in_place(|| {
            dlq_reader.read(Duration::from_secs(30), |got| got.iter().any(is_it))
        });
        let dead: Vec<_> = dead.into_iter().filter(is_it).collect();
        assert_eq!(dead.len(), 1, "{}", layer.name);
        let error = dead[0].header(dlq::ERROR).unwrap();
        assert!(
            error.contains("ce_schemaversion"),
            "{}: {error}",
            layer.name
        );
        consumer.shutdown().await;
    }
}

/// A record with a header name that is not UTF-8 (rdkafka cannot read such headers: its
/// `try_get` panics) is dead-lettered as such, and the consumer goes on with the key's next record.
/// On the real services only: the producer that writes such a name, kafka-python, does not get
/// the metadata it asks for from librdkafka's mock cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_that_is_not_utf8_is_dead_lettered_and_the_consumer_goes_on() {
    if let Some(layer) = support::real().await {
        let run = Uuid::now_v7().simple().to_string();
        let bus = direct_bus(&layer).await;
        let dlq_reader = Reader::at_end(&layer.kafka, DLQ).await;
        let handled: Arc<Mutex<Vec<u64>>> = Arc::default();
        let (seen, r) = (Arc::clone(&handled), run.clone());
        let group = format!("bad-name-{run}");
        let consumer = bus
            .consumer(&group)
            .subscribe::<ParcelTopic>()
            .on::<Parcel, _>(move |job: Parcel| {
                if job.run == r {
                    seen.lock().unwrap().push(job.n);
                }
                async {}
            })
            .start()
            .await
            .unwrap();
        assert!(consumer.ready(Duration::from_secs(30)).await);
        let brokers = layer.kafka.bootstrap_servers.join(",");
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/foreign/bad_header_name.py"
        );
        foreign(&layer, &[script, brokers.as_str(), TOPIC, run.as_str()]);
        wait_until(
            "the good record is handled",
            Duration::from_secs(30),
            || handled.lock().unwrap().contains(&1),
        )
        .await;
        assert_eq!(*handled.lock().unwrap(), [1], "{}", layer.name);
        let dead = dead_letters(&dlq_reader, &run, &group, 1);
        let (job, letter) = dead.first().expect("the dead letter");
        assert_eq!(job.n, 0, "{}", layer.name);
        assert_eq!(
            letter.key.as_deref(),
            Some(format!("{run}-bad-name").as_str())
        );
        let error = letter.header(dlq::ERROR).unwrap();
        assert!(error.contains("not UTF-8"), "{}: {error}", layer.name);
        assert_eq!(letter.header(dlq::FAILED_IN).as_deref(), Some("decoder"));
        assert!(
            consumer.health().running,
            "{}: the consumer still runs",
            layer.name
        );
        consumer.shutdown().await;
    }
}
