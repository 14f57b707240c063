//! Event store benchmark on real PostgreSQL: appends/s (one stream; 1,000 streams), the load
//! time of a 10,000-event stream with and without a snapshot, and a projection's catch-up
//! events/s (not a timed test: run it by hand).
//!
//! ```sh
//! eval "$(scripts/services start)"
//! cargo bench -p eventbus --bench store
//! ```
//!
//! Every append is a transaction of its own holding one event (its row and its outbox row, as
//! `EventStore::append` writes them); the bus runs without a relay, so the outbox rows stay (the
//! relay's cost is the relay bench's). Each run uses a store and an outbox of its own, dropped at
//! the end.
//!
//! Settings: `EVENTBUS_BENCH_APPENDS` (appends per append figure, default 5000),
//! `EVENTBUS_BENCH_WRITERS` (tasks appending to the 1,000 streams, default 8),
//! `EVENTBUS_BENCH_STREAM` (events of the stream loaded, default 10000), `EVENTBUS_BENCH_LOADS`
//! (loads timed, the median is printed, default 20), `EVENTBUS_BENCH_BATCH` (projection batch,
//! default 500).

#![allow(missing_docs, clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventbus::store::{Aggregate, Apply, EventStore, Projection, ProjectionRunner, ProjectionTx};
use eventbus::{Database, DomainEvent, EventBus, KafkaConfig, OutboxConfig, Service};
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use support::env;
use uuid::Uuid;

#[derive(Service)]
#[service(name = "storebench", default)]
pub struct StoreBench;

/// A counter moved.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(aggregate = "counter")]
pub struct Ticked {
    #[event(aggregate_id)]
    pub counter_id: Uuid,
    pub by: u64,
    pub note: String,
}

/// Without snapshots: `load` replays the whole stream.
#[derive(Aggregate, Default, Debug)]
#[aggregate(name = "counter", events(Ticked))]
pub struct Counter {
    total: u64,
    ticks: u64,
}

impl Apply<Ticked> for Counter {
    fn on(&mut self, event: &Ticked) {
        self.total += event.by;
        self.ticks += 1;
    }
}

/// The same state, snapshotted every 100 events.
#[derive(Aggregate, Default, Debug, Serialize, Deserialize)]
#[aggregate(name = "counter", events(Ticked), event_enum = SnapCounterEvent, snapshot(every = 100, version = 1))]
pub struct SnapCounter {
    total: u64,
    ticks: u64,
}

impl Apply<Ticked> for SnapCounter {
    fn on(&mut self, event: &Ticked) {
        self.total += event.by;
        self.ticks += 1;
    }
}

fn tick(counter_id: Uuid, by: u64) -> Ticked {
    Ticked {
        counter_id,
        by,
        note: "a note of some forty bytes, as events have".to_owned(),
    }
}

/// Counts events per stream in a table of its own, in the runner's transaction.
struct PerStream {
    table: String,
    writes: bool,
}

impl Projection for PerStream {
    fn name(&self) -> &str {
        if self.writes { "per_stream" } else { "noop" }
    }

    async fn handle(
        &mut self,
        event: &eventbus::store::StoredEvent,
        tx: &mut ProjectionTx,
    ) -> Result<(), eventbus::HandlerError> {
        if self.writes {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {} (stream_id, events) VALUES ($1, 1) \
                 ON CONFLICT (stream_id) DO UPDATE SET events = {0}.events + 1",
                self.table
            )))
            .bind(&event.stream_id)
            .execute(tx.postgres()?)
            .await?;
        }
        Ok(())
    }
}

fn rate(n: u64, elapsed: Duration) -> String {
    format!(
        "{n} in {:.2} s: {:.0}/s",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let (url, brokers) = support::services("store");
    let appends: u64 = env("EVENTBUS_BENCH_APPENDS", 5000);
    let writers: u64 = env("EVENTBUS_BENCH_WRITERS", 8);
    let stream_len: u64 = env("EVENTBUS_BENCH_STREAM", 10_000);
    let loads: usize = env("EVENTBUS_BENCH_LOADS", 20);
    let batch: u32 = env("EVENTBUS_BENCH_BATCH", 500);
    let run = Uuid::now_v7().simple().to_string();
    let name = format!("esbench_{}", &run[20..]);
    let outbox_table = format!("{name}_outbox");
    let bus: EventBus<StoreBench> = EventBus::builder(StoreBench)
        .database(Database::Url(url.clone()))
        .kafka(KafkaConfig::new(&brokers))
        .kafka_check(None)
        .outbox(OutboxConfig {
            table: outbox_table.clone(),
            ..OutboxConfig::default()
        })
        .without_relay()
        .build()
        .await
        .unwrap();
    let store = EventStore::named(&bus, &name).unwrap();
    store.migrate().await.unwrap();
    let Database::Postgres(pool) = store.database() else {
        unreachable!("a PostgreSQL URL")
    };
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await
        .unwrap();
    println!(
        "event store bench: PostgreSQL {version}, {} cores, store `{name}`",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // 1. Appends to one stream, one after the other (each expects the previous version).
    let id = Uuid::now_v7();
    let start = Instant::now();
    for v in 0..appends {
        store
            .append::<Counter>(&id, v, &[Counter::event(tick(id, 1))])
            .await
            .unwrap();
    }
    println!(
        "appends, one stream, 1 writer, 1 event each: {}",
        rate(appends, start.elapsed())
    );

    // 2. Appends to 1,000 streams, from `writers` tasks.
    let streams: Arc<Vec<Uuid>> = Arc::new((0..1000).map(|_| Uuid::now_v7()).collect());
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, streams, next) = (store.clone(), Arc::clone(&streams), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            // Each writer owns the streams w, w + writers, ...: no conflicts.
            let mine: Vec<Uuid> = streams
                .iter()
                .skip(w as usize)
                .step_by(writers as usize)
                .copied()
                .collect();
            let mut versions = vec![0u64; mine.len()];
            let mut i = 0;
            while next.fetch_add(1, Ordering::Relaxed) < appends {
                let k = i % mine.len();
                store
                    .append::<Counter>(&mine[k], versions[k], &[Counter::event(tick(mine[k], 1))])
                    .await
                    .unwrap();
                versions[k] += 1;
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "appends, 1,000 streams, {writers} writers, 1 event each: {}",
        rate(appends, start.elapsed())
    );

    // 3. A stream of `stream_len` events (appends of 100, snapshotted every 100), loaded without
    //    (`Counter`) and with (`SnapCounter`) its snapshot.
    let long = Uuid::now_v7();
    let start = Instant::now();
    let mut v = 0;
    while v < stream_len {
        let n = 100.min(stream_len - v);
        let events: Vec<_> = (0..n).map(|_| SnapCounter::event(tick(long, 2))).collect();
        store
            .append::<SnapCounter>(&long, v, &events)
            .await
            .unwrap();
        v += n;
    }
    println!(
        "the {stream_len}-event stream written in appends of 100: {}",
        rate(stream_len, start.elapsed())
    );
    let median = |mut times: Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let mut without = Vec::new();
    let mut with = Vec::new();
    for _ in 0..loads {
        let start = Instant::now();
        let (c, version) = store.load::<Counter>(&long).await.unwrap();
        without.push(start.elapsed());
        assert_eq!((c.ticks, version), (stream_len, stream_len));
        let start = Instant::now();
        let (c, version) = store.load::<SnapCounter>(&long).await.unwrap();
        with.push(start.elapsed());
        assert_eq!((c.ticks, version), (stream_len, stream_len));
    }
    // And 50 events after the last snapshot.
    let events: Vec<_> = (0..50).map(|_| SnapCounter::event(tick(long, 2))).collect();
    store
        .append::<SnapCounter>(&long, stream_len, &events)
        .await
        .unwrap();
    let mut with_tail = Vec::new();
    for _ in 0..loads {
        let start = Instant::now();
        let (c, _) = store.load::<SnapCounter>(&long).await.unwrap();
        with_tail.push(start.elapsed());
        assert_eq!(c.ticks, stream_len + 50);
    }
    println!(
        "load of the {stream_len}-event stream (median of {loads}): without snapshot {:.2} ms, with snapshot {:.2} ms, with snapshot + 50 events {:.2} ms",
        median(without).as_secs_f64() * 1e3,
        median(with).as_secs_f64() * 1e3,
        median(with_tail).as_secs_f64() * 1e3,
    );

    // 4. Projections catching up over everything above.
    let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {}",
        store.table()
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    let read_model = format!("{name}_per_stream");
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE {read_model} (stream_id TEXT PRIMARY KEY, events BIGINT NOT NULL)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    for writes in [false, true] {
        let mut runner = ProjectionRunner::new(
            &store,
            PerStream {
                table: read_model.clone(),
                writes,
            },
        )
        .batch(batch);
        let start = Instant::now();
        let handled = runner.run_until_caught_up().await.unwrap();
        assert_eq!(handled as i64, total);
        println!(
            "projection catch-up, batches of {batch}, {}: {}",
            if writes {
                "an upsert per event in the read model"
            } else {
                "no writes (reads and checkpoints only)"
            },
            rate(handled, start.elapsed())
        );
    }

    for t in [
        read_model,
        store.table().to_owned(),
        format!("{name}_snapshots"),
        format!("{name}_checkpoints"),
        format!("{outbox_table}_dead"),
        format!("{outbox_table}_discarded"),
        outbox_table,
    ] {
        sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {t} CASCADE")))
            .execute(&pool)
            .await
            .unwrap();
    }
}
