//! The writers: ticks enqueued through the Transactional bus in the transactions that increment
//! their counters; and `expect`, what committed.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventbus::{Database, EventBus, OutboxConfig};
use eventbus_faults::{Faults, Tables, Tick, format_expected, is_poison, key, write_atomic};
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPool;

use crate::{Opts, Result, committed, kafka, pool};

/// Ticks per writer transaction.
const PER_TRANSACTION: u64 = 5;

pub(crate) async fn write(opts: &Opts) -> Result<()> {
    let run = opts.run()?;
    let events: u64 = opts.num("events", None)?;
    let keys: u32 = opts.num("keys", None)?;
    let writers: u32 = opts.num("writers", Some(4))?;
    let rate: f64 = opts.num("rate", None)?;
    let poison: u32 = opts.num("poison", Some(0))?;
    let progress = opts.path("progress").ok_or("--progress is required")?;
    if u64::from(keys) < PER_TRANSACTION || rate <= 0.0 {
        return Err(format!("--keys must be at least {PER_TRANSACTION}, --rate above 0").into());
    }
    let t = Tables::of(&run);
    let pool = pool(writers + 2).await?;
    let bus = EventBus::builder(Faults)
        .database(Database::Postgres(pool.clone()))
        .kafka(kafka()?)
        .outbox(OutboxConfig {
            table: t.outbox.clone(),
            ..OutboxConfig::default()
        })
        .without_relay()
        .build()
        .await?;
    let upsert = format!(
        "INSERT INTO {c} (key, n) VALUES ($1, 1) ON CONFLICT (key) DO UPDATE SET n = {c}.n + 1 RETURNING n",
        c = t.counters
    );
    let state = Arc::new(WriteState::default());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (bus, pool, state, run, upsert) = (
            bus.clone(),
            pool.clone(),
            Arc::clone(&state),
            run.clone(),
            upsert.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = Lcg(u64::from(w) * 7919 + u64::from(std::process::id()));
            loop {
                let first = state.reserved.fetch_add(PER_TRANSACTION, Ordering::SeqCst);
                if first >= events {
                    break;
                }
                let n = PER_TRANSACTION.min(events - first);
                // Paced: tick number `first` is due at first / rate seconds.
                let due = started + Duration::from_secs_f64(first as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let mut picked = HashSet::new();
                while (picked.len() as u64) < n {
                    picked.insert((rng.next() % u64::from(keys)) as u32);
                }
                // Counters locked in key order: no deadlocks between writers.
                let mut picked: Vec<u32> = picked.into_iter().collect();
                picked.sort_unstable();
                let mut failures = 0u32;
                loop {
                    match tick(&pool, &bus, &upsert, &run, &picked, poison).await {
                        Ok(()) => break,
                        Err(e) => {
                            // The whole transaction again: its counters rolled back with it.
                            state.retried.fetch_add(1, Ordering::SeqCst);
                            if failures == 0 {
                                eprintln!("writer {w}: transaction failed, retrying: {e}");
                            }
                            failures += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                if failures > 0 {
                    eprintln!("writer {w}: transaction committed after {failures} failure(s)");
                }
                state.committed.fetch_add(n, Ordering::SeqCst);
            }
        }));
    }
    let reporter = {
        let (state, progress) = (Arc::clone(&state), progress.clone());
        tokio::spawn(async move {
            loop {
                let _ = write_atomic(&progress, &state.line());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    for task in tasks {
        task.await?;
    }
    reporter.abort();
    write_atomic(&progress, &state.line())?;
    eprintln!(
        "writers: {} ticks committed in {:.1} s, {} transaction(s) retried",
        state.committed.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64(),
        state.retried.load(Ordering::SeqCst)
    );
    Ok(())
}

#[derive(Default)]
struct WriteState {
    reserved: AtomicU64,
    committed: AtomicU64,
    retried: AtomicU64,
}

impl WriteState {
    /// The progress file: `committed retried`.
    fn line(&self) -> String {
        format!(
            "{} {}\n",
            self.committed.load(Ordering::SeqCst),
            self.retried.load(Ordering::SeqCst)
        )
    }
}

/// One writer transaction: tick each picked counter and enqueue its tick, then commit.
async fn tick(
    pool: &PgPool,
    bus: &EventBus<Faults>,
    upsert: &str,
    run: &str,
    picked: &[u32],
    poison: u32,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    for &index in picked {
        let key = key(run, index);
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(upsert))
            .bind(&key)
            .fetch_one(&mut *tx)
            .await?;
        let seq = n as u64;
        let tick = Tick {
            run: run.to_owned(),
            key,
            seq,
            poison: is_poison(index, seq, poison),
        };
        bus.enqueue(&mut tx, &tick).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A small deterministic generator (no dependency for a key picker).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

pub(crate) async fn expect(opts: &Opts) -> Result<()> {
    let run = opts.run()?;
    let out = opts.path("out").ok_or("--out is required")?;
    let expected = committed(&pool(1).await?, &run).await?;
    write_atomic(&out, &format_expected(&expected))?;
    println!("{}", expected.values().sum::<u64>());
    Ok(())
}
