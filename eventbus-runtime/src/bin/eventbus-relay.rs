//! `eventbus-relay`: the outbox relay as a process of its own, for scale-out (run as many as you
//! like against one PostgreSQL outbox: they share its shards), and the operator's commands.
//!
//! ```text
//! eventbus-relay [run]              publish the outbox until SIGINT/SIGTERM (finishes the batches in hand, within 2.5 s)
//! eventbus-relay serve [--addr A]   `run`, with the operations HTTP API next to it (docs/operations.md;
//!                                   default 127.0.0.1:9464, loopback: give another address explicitly)
//! eventbus-relay migrate            create the outbox and dead tables
//! eventbus-relay status             pending and dead counts
//! eventbus-relay dead               list dead events
//! eventbus-relay replay --all       put every dead event back into the outbox
//! eventbus-relay replay ID...       put these dead events back
//! ```
//!
//! Configuration comes from the environment: `EVENTBUS_DATABASE_URL` (required),
//! `EVENTBUS_KAFKA_BROKERS` (required for `run`), SASL settings and `EVENTBUS_OUTBOX_*`
//! (see the `eventbus` crate's `KafkaConfig::from_env` and `OutboxConfig::from_env`).
//!
//! Logs go to stderr, filtered by `RUST_LOG` (default `info`), as text lines or, with
//! `--log-format json` or `EVENTBUS_LOG_FORMAT=json`, JSON lines. `run` logs when it starts,
//! when Kafka or the database becomes unavailable and when it is back (once per change, not per
//! retry), and when it stops. On SIGTERM or SIGINT it exits within `relay::SHUTDOWN_GRACE` +
//! 2 × `relay::CLOSE_BUDGET` (2.5 s): the batches in hand get 1.5 s to be acknowledged (rows not
//! acknowledged stay in the outbox for the next relay), then 0.5 s to flush and 0.5 s to release
//! the shards. A second signal exits at once.

use std::process::ExitCode;
use std::time::Duration;

use eventbus::logging::LogFormat;
use eventbus::outbox::Replay;
use eventbus::relay::Relay;
use eventbus::{Database, KafkaConfig, OutboxConfig};

const USAGE: &str = "usage: eventbus-relay [--log-format text|json] [run | serve [--addr ADDR] | migrate | status | dead | replay (--all | EVENT_ID...)]
environment: EVENTBUS_DATABASE_URL, EVENTBUS_KAFKA_BROKERS, EVENTBUS_OUTBOX_* (see the eventbus docs),
             RUST_LOG (default info), EVENTBUS_LOG_FORMAT (text or json),
             EVENTBUS_OPS_TOKEN or EVENTBUS_OPS_TOKEN_FILE (serve: enables the API's mutations)";

/// Where `serve` listens unless `--addr` says otherwise: loopback only.
#[cfg(feature = "ops")]
const DEFAULT_OPS_ADDR: &str = "127.0.0.1:9464";

/// The service name the operations API's bus reports (the relay publishes no events of its own).
#[cfg(feature = "ops")]
struct RelayService;

#[cfg(feature = "ops")]
impl eventbus::Service for RelayService {
    const NAME: &'static str = "eventbus-relay";
}

/// Starts the operations API for `serve`: a bus on the relay's outbox and brokers (without a relay
/// of its own) answers the health checks; the API reads and replays the same dead table.
#[cfg(feature = "ops")]
async fn start_ops(
    args: &[String],
    url: &str,
    kafka: &KafkaConfig,
    config: &OutboxConfig,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, String> {
    let addr = match args.iter().position(|a| a == "--addr") {
        Some(at) => args
            .get(at + 1)
            .ok_or("--addr needs an address (host:port)")?
            .as_str(),
        None => match args.iter().find_map(|a| a.strip_prefix("--addr=")) {
            Some(addr) => addr,
            None => DEFAULT_OPS_ADDR,
        },
    };
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| format!("--addr {addr:?} is not an address (host:port): {e}"))?;
    let ops = eventbus::ops::Ops::from_env().map_err(|e| e.to_string())?;
    let read_only = ops.is_read_only();
    let bus = eventbus::EventBus::builder(RelayService)
        .database(Database::Url(url.to_owned()))
        .kafka(kafka.clone())
        .outbox(config.clone())
        .kafka_check(None)
        .without_relay()
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let listening = eventbus::ops::bind(addr, eventbus::ops::router(bus, ops))
        .await
        .map_err(|e| format!("the operations API cannot listen on {addr}: {e}"))?;
    tracing::info!(
        %addr,
        read_only,
        "eventbus-relay: the operations API listens on http://{addr}"
    );
    Ok(tokio::spawn(listening.run()))
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let format = match log_format(&mut args) {
        Ok(format) => format,
        Err(message) => {
            eprintln!("eventbus-relay: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    eventbus::logging::init(format, "info");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("eventbus-relay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(&args));
    // A Kafka probe may still wait on a blocking thread: do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            match format {
                LogFormat::Json => tracing::error!("eventbus-relay: {message}"),
                _ => eprintln!("eventbus-relay: {message}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// Takes `--log-format F` (or `--log-format=F`) out of `args`; else `EVENTBUS_LOG_FORMAT`.
fn log_format(args: &mut Vec<String>) -> Result<LogFormat, String> {
    let Some(at) = args.iter().position(|a| a.starts_with("--log-format")) else {
        return LogFormat::from_env();
    };
    let flag = args.remove(at);
    let value = match flag.strip_prefix("--log-format=") {
        Some(value) => value.to_owned(),
        None if at < args.len() => args.remove(at),
        None => return Err("--log-format needs a value: text or json".to_owned()),
    };
    LogFormat::parse(&value)
}

async fn run(args: &[String]) -> Result<(), String> {
    let command = args.first().map_or("run", String::as_str);
    if matches!(command, "-h" | "--help" | "help") {
        println!("{USAGE}");
        return Ok(());
    }
    let config = OutboxConfig::default()
        .from_env()
        .map_err(|e| e.to_string())?;
    let url = std::env::var("EVENTBUS_DATABASE_URL").map_err(|_| {
        "EVENTBUS_DATABASE_URL is not set: give the outbox's database (postgres://...)".to_owned()
    })?;
    let store = eventbus::outbox::connect(Database::Url(url.clone()), &config.table)
        .await
        .map_err(|e| e.to_string())?;
    let db = |e: sqlx::Error| format!("database error on the outbox `{}`: {e}", config.table);
    match command {
        "migrate" => {
            store.migrate().await.map_err(db)?;
            println!(
                "outbox `{}` and `{}_dead` are ready",
                config.table, config.table
            );
        }
        "status" => {
            println!("pending {}", store.pending().await.map_err(db)?);
            println!("dead    {}", store.dead().await.map_err(db)?.len());
        }
        "dead" => {
            for d in store.dead().await.map_err(db)? {
                println!(
                    "{}  {}  {}  key={}  attempts={}  error: {}",
                    d.event_id,
                    d.topic,
                    d.event_type,
                    d.key.as_deref().unwrap_or("-"),
                    d.attempts,
                    d.error
                );
            }
        }
        "replay" => {
            let which = match &args[1..] {
                [flag] if flag == "--all" => Replay::All,
                [] => return Err(format!("replay needs --all or event ids\n{USAGE}")),
                ids => Replay::Events(
                    ids.iter()
                        .map(|s| {
                            s.parse()
                                .map_err(|_| format!("{s:?} is not an event id (a UUID)"))
                        })
                        .collect::<Result<_, _>>()?,
                ),
            };
            let n = store.replay(which).await.map_err(db)?;
            println!("replayed {n} event(s); a running relay publishes them");
        }
        "run" | "serve" => {
            let kafka = KafkaConfig::from_env()
                .map_err(|e| e.to_string())?
                .ok_or("EVENTBUS_KAFKA_BROKERS is not set: give the Kafka bootstrap servers")?;
            store.migrate().await.map_err(db)?;
            #[cfg(feature = "ops")]
            let api = match command {
                "serve" => Some(start_ops(&args[1..], &url, &kafka, &config).await?),
                _ => None,
            };
            #[cfg(not(feature = "ops"))]
            if command == "serve" {
                return Err("this eventbus-relay was built without the `ops` feature".to_owned());
            }
            let relay = Relay::new(store, &kafka, config.clone())
                .map_err(|e| e.to_string())?
                .spawn();
            tracing::info!(
                table = %config.table,
                kafka = %kafka,
                "eventbus-relay: publishing outbox `{}` to Kafka at {} (SIGINT or SIGTERM stops it)",
                config.table,
                kafka.bootstrap_servers.join(",")
            );
            shutdown_signal().await;
            tracing::info!(
                "eventbus-relay: stopping (the batches in hand get {:?})",
                eventbus::relay::SHUTDOWN_GRACE
            );
            #[cfg(feature = "ops")]
            if let Some(api) = api {
                api.abort();
            }
            let stats = tokio::select! {
                stats = relay.shutdown() => stats.map_err(|e| e.to_string())?,
                () = shutdown_signal() => return Err("a second signal: stopped at once".to_owned()),
            };
            tracing::info!(
                published = stats.published(),
                retried = stats.retried(),
                dead = stats.dead_lettered(),
                "eventbus-relay: stopped; published {}, retried {}, dead {}",
                stats.published(),
                stats.retried(),
                stats.dead_lettered()
            );
        }
        other => return Err(format!("unknown command {other:?}\n{USAGE}")),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
