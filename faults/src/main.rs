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

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use eventbus::KafkaConfig;
use eventbus_faults::Tables;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row as _};

mod consume;
mod setup;
mod verify;
mod write;

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
            "setup" => setup::setup(&opts).await.map(|()| true),
            "write" => write::write(&opts).await.map(|()| true),
            "verify" => verify::verify(&opts).await,
            "expect" => write::expect(&opts).await.map(|()| true),
            "consume" => consume::consume(&opts).await.map(|()| true),
            "effects" => consume::effects(&opts).await,
            "dead" => consume::dead(&opts).await.map(|()| true),
            "replay" => consume::replay(&opts).await.map(|()| true),
            "shards" => setup::shards(&opts).await.map(|()| true),
            "cleanup" => setup::cleanup(&opts).await.map(|()| true),
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

/// A pool that gives up on a connection after 2 s, so a writer notices an outage and retries.
async fn pool(max: u32) -> Result<PgPool> {
    pool_waiting(max, Duration::from_secs(2)).await
}

/// A pool whose callers wait up to `acquire` for a connection.
async fn pool_waiting(max: u32, acquire: Duration) -> Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(acquire)
        .connect(&env("EVENTBUS_DATABASE_URL")?)
        .await?)
}

fn bootstrap() -> Result<String> {
    env("EVENTBUS_KAFKA_BROKERS")
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

/// The partitions of `topic`, waiting up to 30 s for its metadata and a leader for each (a topic
/// just created on a fresh broker has partitions before it has their leaders).
fn partitions(consumer: &BaseConsumer, topic: &str) -> Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(m) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))
            && let Some(t) = m.topics().first()
            && t.error().is_none()
            && !t.partitions().is_empty()
            && t.partitions()
                .iter()
                .all(|p| p.error().is_none() && p.leader() >= 0)
        {
            return Ok(t.partitions().len() as i32);
        }
        if Instant::now() > deadline {
            return Err(format!("topic {topic} has no partitions after 30 s").into());
        }
        std::thread::sleep(Duration::from_millis(200));
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
