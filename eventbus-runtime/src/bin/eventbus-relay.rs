//! `eventbus-relay`: the outbox relay as a process of its own, for scale-out (run as many as you
//! like against one PostgreSQL outbox: they share its shards), and the operator's commands.
//!
//! ```text
//! eventbus-relay [run]              publish the outbox until SIGINT/SIGTERM (finishes the batch in hand)
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

use std::process::ExitCode;

use eventbus::outbox::Replay;
use eventbus::relay::Relay;
use eventbus::{Database, KafkaConfig, OutboxConfig};

const USAGE: &str = "usage: eventbus-relay [run | migrate | status | dead | replay (--all | EVENT_ID...)]
environment: EVENTBUS_DATABASE_URL, EVENTBUS_KAFKA_BROKERS, EVENTBUS_OUTBOX_* (see the eventbus docs)";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("eventbus-relay: {message}");
            ExitCode::FAILURE
        }
    }
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
    let store = eventbus::outbox::connect(Database::Url(url), &config.table)
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
        "run" => {
            let kafka = KafkaConfig::from_env()
                .map_err(|e| e.to_string())?
                .ok_or("EVENTBUS_KAFKA_BROKERS is not set: give the Kafka bootstrap servers")?;
            store.migrate().await.map_err(db)?;
            let relay = Relay::new(store, &kafka, config.clone())
                .map_err(|e| e.to_string())?
                .spawn();
            eprintln!(
                "eventbus-relay: publishing outbox `{}` to {} (Ctrl-C or SIGTERM stops after the batch in hand)",
                config.table,
                kafka.bootstrap_servers.join(",")
            );
            shutdown_signal().await;
            let stats = relay.shutdown().await.map_err(|e| e.to_string())?;
            eprintln!(
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
