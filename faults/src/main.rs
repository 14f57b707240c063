//! `eventbus-faults`: the processes of the fault suite. `scripts/faults` runs them, with the real
//! `eventbus-relay`, on the PostgreSQL and Kafka of `scripts/services`, and kills what it tests;
//! `docs/faults.md` describes the scenarios.
//!
//! ```text
//! eventbus-faults setup    --run R                      outbox, counter and effect tables; the topic
//! eventbus-faults write    --run R --events N --keys K --writers W --rate PER_S [--poison P] --progress FILE
//! eventbus-faults verify   --run R --dir DIR [--duplicates-allowed] [--kill-file FILE] [--timeout S]
//! eventbus-faults expect   --run R --out FILE           what committed, for the verifier
//! eventbus-faults consume  --run R --progress FILE [--accept-file FILE] [--handler-ms MS]
//! eventbus-faults effects  --run R [--poison P] [--replayed N] [--timeout S]
//! eventbus-faults dead     --run R --count N [--timeout S]   wait for N dead letters of the run
//! eventbus-faults replay   --run R                      replay the run's dead letters (dlq::replay)
//! eventbus-faults shards   --run R                      shards held per relay: "8 8"
//! eventbus-faults cleanup  --run R
//! ```
//!
//! `EVENTBUS_DATABASE_URL` and `EVENTBUS_KAFKA_BROKERS` say where the services are (the same
//! variables `eventbus-relay` reads).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventbus::dlq;
use eventbus::{
    Database, EventBus, EventFilter, HandlerError, Inbox, InboxTx, KafkaConfig, OutboxConfig,
    RetryPolicy,
};
use eventbus_faults::{
    DEAD_LETTER_TOPIC, Faults, PARTITIONS, Tables, Tally, Tick, TickTopic, format_expected, group,
    is_poison, key, parse_expected, poison_ticks, write_atomic,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row as _};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

const USAGE: &str = "usage: eventbus-faults setup|write|verify|expect|consume|effects|dead|replay|shards|cleanup --run RUN [options]
(the options of each command: the top of faults/src/main.rs; scripts/faults runs them)
environment: EVENTBUS_DATABASE_URL, EVENTBUS_KAFKA_BROKERS";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if matches!(command.as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let opts = match Opts::parse(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("eventbus-faults {command}: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("eventbus-faults: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match command.as_str() {
            "setup" => setup(&opts).await.map(|()| true),
            "write" => write(&opts).await.map(|()| true),
            "verify" => verify(&opts).await,
            "expect" => expect(&opts).await.map(|()| true),
            "consume" => consume(&opts).await.map(|()| true),
            "effects" => effects(&opts).await,
            "dead" => dead(&opts).await.map(|()| true),
            "replay" => replay(&opts).await.map(|()| true),
            "shards" => shards(&opts).await.map(|()| true),
            "cleanup" => cleanup(&opts).await.map(|()| true),
            other => Err(format!("unknown command {other:?}").into()),
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("eventbus-faults {command}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` options (repeatable) and `--flag`s.
struct Opts(HashMap<String, Vec<String>>);

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        let mut i = 0;
        while i < args.len() {
            let name = args[i]
                .strip_prefix("--")
                .ok_or_else(|| format!("expected an option, got {:?}", args[i]))?;
            match args.get(i + 1).filter(|v| !v.starts_with("--")) {
                Some(value) => {
                    map.entry(name.to_owned()).or_default().push(value.clone());
                    i += 2;
                }
                None => {
                    map.entry(name.to_owned()).or_default();
                    i += 1;
                }
            }
        }
        Ok(Opts(map))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name)?.last().map(String::as_str)
    }

    fn text(&self, name: &str) -> Result<&str> {
        self.get(name)
            .ok_or_else(|| format!("--{name} is required").into())
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: Option<T>) -> Result<T> {
        match (self.get(name), default) {
            (Some(v), _) => v
                .parse()
                .map_err(|_| format!("--{name} {v:?} is not a number").into()),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(format!("--{name} is required").into()),
        }
    }

    fn flag(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        self.get(name).map(PathBuf::from)
    }

    /// The run id: a lower-case identifier (it names tables).
    fn run(&self) -> Result<String> {
        let run = self.text("run")?;
        if run.is_empty()
            || run.len() > 40
            || !run
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!("--run {run:?}: use up to 40 of [a-z0-9_]").into());
        }
        Ok(run.to_owned())
    }
}

fn env(name: &str) -> Result<String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (scripts/faults sets it)").into())
}

fn kafka() -> Result<KafkaConfig> {
    Ok(KafkaConfig::new(&env("EVENTBUS_KAFKA_BROKERS")?))
}

/// A pool that gives up on a connection quickly, so a writer notices an outage and retries.
async fn pool(max: u32) -> Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&env("EVENTBUS_DATABASE_URL")?)
        .await?)
}

fn bootstrap() -> Result<String> {
    env("EVENTBUS_KAFKA_BROKERS")
}

async fn setup(opts: &Opts) -> Result<()> {
    let run = opts.run()?;
    let t = Tables::of(&run);
    let pool = pool(2).await?;
    eventbus::outbox::connect(Database::Postgres(pool.clone()), &t.outbox)
        .await?
        .migrate()
        .await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {counters} (key TEXT PRIMARY KEY, n BIGINT NOT NULL);
         CREATE TABLE IF NOT EXISTS {effects} (id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, seq BIGINT NOT NULL);",
        counters = t.counters,
        effects = t.effects
    )))
    .execute(&pool)
    .await?;
    // The topic, with several partitions, before anyone produces to it.
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap()?)
        .create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(
                Tick::TOPIC,
                PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    for r in results {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, e)) => return Err(format!("cannot create topic {topic}: {e}").into()),
        }
    }
    // The run's consumer group starts where the topic ends now (committed offsets, so a consumer
    // killed before its first commit resumes there too), not at the start of every earlier run.
    tokio::task::spawn_blocking(move || {
        let consumer = plain_consumer(&group(&run))?;
        let mut list = TopicPartitionList::new();
        for p in 0..partitions(&consumer, Tick::TOPIC)? {
            let (_, high) = consumer.fetch_watermarks(Tick::TOPIC, p, Duration::from_secs(10))?;
            list.add_partition_offset(Tick::TOPIC, p, Offset::Offset(high))?;
        }
        consumer.commit(&list, CommitMode::Sync)?;
        Ok::<_, Error>(())
    })
    .await??;
    Ok(())
}

async fn cleanup(opts: &Opts) -> Result<()> {
    let t = Tables::of(&opts.run()?);
    let pool = pool(1).await?;
    let drop = t
        .all()
        .map(|n| format!("DROP TABLE IF EXISTS {n};"))
        .join(" ");
    sqlx::raw_sql(AssertSqlSafe(drop)).execute(&pool).await?;
    Ok(())
}

/// Ticks per writer transaction.
const PER_TRANSACTION: u64 = 5;

async fn write(opts: &Opts) -> Result<()> {
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

/// What committed: each key's counter.
async fn committed(pool: &PgPool, run: &str) -> Result<BTreeMap<String, u64>> {
    let t = Tables::of(run);
    let rows = sqlx::query(AssertSqlSafe(format!("SELECT key, n FROM {}", t.counters)))
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)? as u64)))
        .collect()
}

async fn expect(opts: &Opts) -> Result<()> {
    let run = opts.run()?;
    let out = opts.path("out").ok_or("--out is required")?;
    let expected = committed(&pool(1).await?, &run).await?;
    write_atomic(&out, &format_expected(&expected))?;
    println!("{}", expected.values().sum::<u64>());
    Ok(())
}

/// A plain rdkafka consumer with no group management, its partitions assigned by hand.
fn plain_consumer(group: &str) -> Result<BaseConsumer> {
    Ok(rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap()?)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?)
}

/// The partitions of `topic`, waiting up to 30 s for its metadata.
fn partitions(consumer: &BaseConsumer, topic: &str) -> Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(m) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))
            && let Some(t) = m.topics().first()
            && t.error().is_none()
            && !t.partitions().is_empty()
        {
            return Ok(t.partitions().len() as i32);
        }
        if Instant::now() > deadline {
            return Err(format!("topic {topic} has no partitions after 30 s").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The independent verifier: plain rdkafka, no eventbus code on the reading path. Reads the
/// topic from its end as it was at start, keeps the ticks of the run, and once the expected
/// ticks are known (`DIR/expected`, written once the outbox is drained, so Kafka has them all)
/// and all arrived, or `--timeout` seconds (30) after that, prints the tally.
/// With `--kill-file FILE`: whenever FILE holds `PID N`, it sends SIGKILL to PID the moment N
/// distinct ticks have arrived, then deletes FILE. The kill lands while records are arriving, so
/// while the relay is between sending a batch and deleting its rows.
async fn verify(opts: &Opts) -> Result<bool> {
    let run = opts.run()?;
    let dir = opts.path("dir").ok_or("--dir is required")?;
    let duplicates_allowed = opts.flag("duplicates-allowed");
    let kill_file = opts.path("kill-file");
    let timeout = Duration::from_secs(opts.num("timeout", Some(30))?);
    tokio::task::spawn_blocking(move || {
        let consumer = plain_consumer(&format!("eventbus-faults-verify-{run}"))?;
        let topic = Tick::TOPIC;
        let mut list = TopicPartitionList::new();
        for p in 0..partitions(&consumer, topic)? {
            let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            list.add_partition_offset(topic, p, Offset::Offset(high))?;
        }
        consumer.assign(&list)?;
        write_atomic(&dir.join("verify.ready"), "")?;

        let progress = dir.join("verify.progress");
        let mut arrivals: Vec<(String, u64)> = Vec::new();
        let mut distinct: HashSet<(String, u64)> = HashSet::new();
        let mut expected: Option<(BTreeMap<String, u64>, Instant)> = None;
        let mut complete_at: Option<Instant> = None;
        let (mut reported, mut last_report) = (u64::MAX, Instant::now());
        let mut last_error: Option<Instant> = None;
        loop {
            match consumer.poll(Duration::from_millis(10)) {
                Some(Ok(m)) => {
                    if let Ok(tick) =
                        serde_json::from_slice::<Tick>(m.payload().unwrap_or_default())
                        && tick.run == run
                    {
                        distinct.insert((tick.key.clone(), tick.seq));
                        arrivals.push((tick.key, tick.seq));
                    }
                }
                Some(Err(e)) if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) => {
                    eprintln!("verifier: {e} (still reading)");
                    last_error = Some(Instant::now());
                }
                Some(Err(_)) | None => {}
            }
            let seen = distinct.len() as u64;
            if let Some(file) = &kill_file
                && let Some((pid, at)) = kill_order(file)
                && seen >= at
            {
                let killed = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status()
                    .is_ok_and(|s| s.success());
                let _ = std::fs::remove_file(file);
                eprintln!(
                    "verifier: {} pid {pid} at {seen} ticks delivered",
                    if killed { "killed" } else { "could not kill" }
                );
            }
            if seen != reported && last_report.elapsed() >= Duration::from_millis(10) {
                write_atomic(&progress, &format!("{seen}\n"))?;
                (reported, last_report) = (seen, Instant::now());
            }
            if expected.is_none()
                && let Ok(text) = std::fs::read_to_string(dir.join("expected"))
            {
                expected = Some((parse_expected(&text)?, Instant::now() + timeout));
            }
            let Some((exp, deadline)) = &expected else {
                continue;
            };
            if complete_at.is_none() {
                let total: u64 = exp.values().sum();
                if seen >= total
                    && distinct
                        .iter()
                        .filter(|(k, s)| exp.get(k).is_some_and(|n| (1..=*n).contains(s)))
                        .count() as u64
                        >= total
                {
                    complete_at = Some(Instant::now());
                }
            }
            // Once complete, read on for a second: a late duplicate still counts.
            if complete_at.is_some_and(|t| t.elapsed() > Duration::from_secs(1))
                || Instant::now() > *deadline
            {
                break;
            }
        }
        write_atomic(&progress, &format!("{}\n", distinct.len()))?;
        let Some((exp, _)) = expected else {
            unreachable!("the loop ends only once the expected ticks are known")
        };
        let tally = Tally::of(&exp, arrivals, &HashSet::new());
        println!("{}", tally.line(None));
        let failures = tally.failures(duplicates_allowed);
        for f in &failures {
            eprintln!("verifier: FAILED: {f}");
        }
        Ok(failures.is_empty())
    })
    .await?
}

/// The kill order in `file`, `PID N`, if there is one.
fn kill_order(file: &Path) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut words = text.split_whitespace();
    Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
}

/// The suite's consumer: a typed eventbus consumer with the PostgreSQL inbox; its handler writes
/// each tick into the effects table inside the inbox transaction, and refuses poison ticks until
/// `--accept-file` exists. Writes `handled` to `--progress` every 20 ms; SIGTERM shuts it down.
async fn consume(opts: &Opts) -> Result<()> {
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
    let pool = pool(8).await?;
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
                    return Err(HandlerError::from(format!(
                        "tick {} of {} is poison",
                        tick.seq, tick.key
                    )));
                }
                sqlx::query(AssertSqlSafe(insert))
                    .bind(&tick.key)
                    .bind(tick.seq as i64)
                    .execute(tx.postgres()?)
                    .await?;
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
async fn effects(opts: &Opts) -> Result<bool> {
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

async fn dead(opts: &Opts) -> Result<()> {
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

async fn replay(opts: &Opts) -> Result<()> {
    let run = opts.run()?;
    let filter = EventFilter::new().payload_field("/run", move |v| v.as_str() == Some(&run));
    let n = dlq::replay(&kafka()?, DEAD_LETTER_TOPIC, dlq::Which::Filter(filter)).await?;
    println!("{n}");
    Ok(())
}

/// The shards of the run's outbox each relay holds (its advisory locks), one count per relay.
async fn shards(opts: &Opts) -> Result<()> {
    let t = Tables::of(&opts.run()?);
    // The relay's lock class of the table (relay/shards.rs).
    let class = eventbus::outbox::shard_of(Some(&t.outbox), &uuid::Uuid::nil(), i32::MAX as u32);
    let counts: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND classid = ($1::int)::oid AND objsubid = 2 AND objid < (1 << 20)::oid \
         GROUP BY pid ORDER BY pid",
    )
    .bind(class)
    .fetch_all(&pool(1).await?)
    .await?;
    let counts: Vec<String> = counts.iter().map(i64::to_string).collect();
    println!("{}", counts.join(" "));
    Ok(())
}
