//! The suite's consumer (eventbus's typed consumer with the inbox), the tally of its effects, and
//! its dead letters: waiting for them and replaying them.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use eventbus::dlq;
use eventbus::{EventBus, EventFilter, HandlerError, Inbox, InboxTx, RetryPolicy};
use eventbus_faults::{
    DEAD_LETTER_TOPIC, Faults, Tables, Tally, Tick, TickTopic, group, poison_ticks, write_atomic,
};
use rdkafka::consumer::Consumer as _;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::{AssertSqlSafe, Row as _};

use crate::{Opts, Result, committed, kafka, plain_consumer, pool, pool_waiting};

/// The suite's consumer: a typed eventbus consumer with the PostgreSQL inbox; its handler writes
/// each tick into the effects table inside the inbox transaction, and refuses poison ticks until
/// `--accept-file` exists. Writes `handled` to `--progress` every 20 ms; SIGTERM shuts it down.
pub(crate) async fn consume(opts: &Opts) -> Result<()> {
    let run = opts.run()?;
    let progress = opts.path("progress").ok_or("--progress is required")?;
    let accept = opts.path("accept-file");
    let pause = Duration::from_millis(opts.num("handler-ms", Some(0))?);
    let t = Tables::of(&run);
    let bus = EventBus::builder(Faults)
        .kafka(kafka()?)
        .direct()
        .build()
        .await?;
    // Up to 256 records in work share these connections: wait for one rather than fail.
    let pool = pool_waiting(8, Duration::from_secs(10)).await?;
    let insert = format!("INSERT INTO {} (key, seq) VALUES ($1, $2)", t.effects);
    let this_run = run.clone();
    let handle = bus
        .consumer(&group(&run))
        .subscribe::<TickTopic>()
        .filter(EventFilter::new().payload_field("/run", move |v| v.as_str() == Some(&this_run)))
        .retry(
            RetryPolicy::exponential(Duration::from_millis(20), Duration::from_millis(100))
                .max_attempts(3),
        )
        .inbox(Inbox::postgres(pool.clone(), &t.inbox)?)
        .on_tx::<Tick, _>(move |tick: Tick, mut tx: InboxTx| {
            let (insert, accept) = (insert.clone(), accept.clone());
            async move {
                if tick.poison && !accept.as_deref().is_some_and(Path::exists) {
                    eprintln!(
                        "consumer: refusing poison tick {} of {}",
                        tick.seq, tick.key
                    );
                    return Err(HandlerError::from(format!(
                        "tick {} of {} is poison",
                        tick.seq, tick.key
                    )));
                }
                let inserted = sqlx::query(AssertSqlSafe(insert))
                    .bind(&tick.key)
                    .bind(tick.seq as i64)
                    .execute(tx.postgres()?)
                    .await;
                if let Err(e) = inserted {
                    eprintln!("consumer: tick {} of {}: {e}", tick.seq, tick.key);
                    return Err(e.into());
                }
                if !pause.is_zero() {
                    // Still inside the transaction: a kill lands mid-handler.
                    tokio::time::sleep(pause).await;
                }
                Ok::<_, HandlerError>(tx)
            }
        })
        .start()
        .await?;
    let stats = handle.stats();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        write_atomic(&progress, &format!("{}\n", stats.handled()))?;
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    handle.shutdown().await;
    eprintln!(
        "consumer: stopped; handled {}, retried {}, dead-lettered {}, duplicates skipped {}",
        stats.handled(),
        stats.retried(),
        stats.dead_lettered(),
        stats.duplicates()
    );
    Ok(())
}

/// Waits until the effects of every committed tick are in, then tallies the effects table in
/// handling order: exactly once, so any duplicate fails. `--poison P` exempts the poison ticks
/// (replayed late by design) from the order check; `--replayed N` adds the replayed count.
pub(crate) async fn effects(opts: &Opts) -> Result<bool> {
    let run = opts.run()?;
    let poison: u32 = opts.num("poison", Some(0))?;
    let replayed: Option<u64> = opts.get("replayed").map(str::parse).transpose()?;
    let timeout = Duration::from_secs(opts.num("timeout", Some(90))?);
    let t = Tables::of(&run);
    let pool = pool(2).await?;
    let expected = committed(&pool, &run).await?;
    let total: u64 = expected.values().sum();
    let deadline = Instant::now() + timeout;
    let count = format!(
        "SELECT count(*) FROM (SELECT DISTINCT key, seq FROM {}) d",
        t.effects
    );
    loop {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(count.as_str()))
            .fetch_one(&pool)
            .await?;
        if n as u64 >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A late duplicate would land within a second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT key, seq FROM {} ORDER BY id",
        t.effects
    )))
    .fetch_all(&pool)
    .await?;
    let arrivals = rows
        .iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)? as u64)))
        .collect::<Result<Vec<_>>>()?;
    let tally = Tally::of(&expected, arrivals, &poison_ticks(&run, poison));
    println!("{}", tally.line(replayed));
    let mut failures = tally.failures(false);
    if tally.exempt != u64::from(poison) {
        failures.push(format!(
            "{} of the {poison} poison tick(s) handled",
            tally.exempt
        ));
    }
    if replayed.is_some_and(|r| r != u64::from(poison)) {
        failures.push(format!(
            "{} dead letter(s) replayed, {poison} expected",
            replayed.unwrap_or_default()
        ));
    }
    for f in &failures {
        eprintln!("effects: FAILED: {f}");
    }
    Ok(failures.is_empty())
}

/// The dead letters of `run` in the dead-letter topic now.
fn dead_letters(run: &str) -> Result<u64> {
    let consumer = plain_consumer(&format!("eventbus-faults-dead-{run}"))?;
    let metadata = consumer.fetch_metadata(Some(DEAD_LETTER_TOPIC), Duration::from_secs(10))?;
    let Some(topic) = metadata.topics().first().filter(|t| t.error().is_none()) else {
        return Ok(0);
    };
    let mut list = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in topic.partitions() {
        let (low, high) =
            consumer.fetch_watermarks(DEAD_LETTER_TOPIC, p.id(), Duration::from_secs(10))?;
        if high > low {
            list.add_partition_offset(DEAD_LETTER_TOPIC, p.id(), Offset::Offset(low))?;
            ends.insert(p.id(), high);
        }
    }
    if ends.is_empty() {
        return Ok(0);
    }
    consumer.assign(&list)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut found = 0;
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("cannot read {DEAD_LETTER_TOPIC} to its end in 30 s").into());
        }
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m?;
        if ends
            .get(&m.partition())
            .is_some_and(|&h| m.offset() + 1 >= h)
        {
            ends.remove(&m.partition());
        }
        if serde_json::from_slice::<Tick>(m.payload().unwrap_or_default())
            .is_ok_and(|t| t.run == run)
        {
            found += 1;
        }
    }
    Ok(found)
}

pub(crate) async fn dead(opts: &Opts) -> Result<()> {
    let run = opts.run()?;
    let want: u64 = opts.num("count", None)?;
    let deadline = Instant::now() + Duration::from_secs(opts.num("timeout", Some(60))?);
    loop {
        let run = run.clone();
        let found = tokio::task::spawn_blocking(move || dead_letters(&run)).await??;
        if found >= want {
            println!("{found}");
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{found} dead letter(s) of the run, {want} expected").into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(crate) async fn replay(opts: &Opts) -> Result<()> {
    let run = opts.run()?;
    let filter = EventFilter::new().payload_field("/run", move |v| v.as_str() == Some(&run));
    let n = dlq::replay(&kafka()?, DEAD_LETTER_TOPIC, dlq::Which::Filter(filter)).await?;
    println!("{n}");
    Ok(())
}
