//! The `eventbus-relay` binary: operator commands on SQLite, and `run` draining a real
//! PostgreSQL outbox to Kafka, stopped by SIGTERM.

#![allow(missing_docs, clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use eventbus::{Database, EventBus, KafkaConfig, OutboxConfig, Service, SystemEvent};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "relaybin")]
struct RelayBin;

/// A relay-binary test event.
#[derive(SystemEvent, Serialize, Deserialize)]
#[event(service = RelayBin)]
struct Pinged {
    #[event(key)]
    n: u32,
}

fn relay(url: &str, table: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eventbus-relay"))
        .args(args)
        .env("EVENTBUS_DATABASE_URL", url)
        .env("EVENTBUS_OUTBOX_TABLE", table)
        .output()
        .unwrap()
}

#[test]
fn operator_commands_on_sqlite() {
    let path = std::env::temp_dir().join(format!("relaybin-{}.db", std::process::id()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let out = relay(&url, "ops_outbox", &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = relay(&url, "ops_outbox", &["status"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "pending 0\ndead    0\n"
    );
    let out = relay(&url, "ops_outbox", &["replay"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--all or event ids"));
    let out = relay(&url, "Bad Table", &["status"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"Bad Table\""));
    let out = relay(&url, "ops_outbox", &["run"]);
    assert!(!out.status.success(), "run without brokers fails");
    assert!(String::from_utf8_lossy(&out.stderr).contains("EVENTBUS_KAFKA_BROKERS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_drains_a_postgres_outbox_and_stops_on_sigterm() {
    let required = std::env::var("EVENTBUS_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
    let (Ok(url), Ok(brokers)) = (
        std::env::var("EVENTBUS_TEST_DATABASE_URL"),
        std::env::var("EVENTBUS_TEST_KAFKA_BROKERS"),
    ) else {
        assert!(
            !required,
            "EVENTBUS_REQUIRE_SERVICES=1 but the service addresses are not set"
        );
        eprintln!("not run: start the services with scripts/services start");
        return;
    };
    let table = format!("relaybin_{}", std::process::id());
    let bus = EventBus::builder(RelayBin)
        .database_url(&url)
        .kafka(KafkaConfig::new(&brokers))
        .outbox(OutboxConfig {
            table: table.clone(),
            ..OutboxConfig::default()
        })
        .without_relay()
        .build()
        .await
        .unwrap();
    let events: Vec<Pinged> = (0..500).map(|n| Pinged { n }).collect();
    bus.publish_all(&events).await.unwrap();
    let store = bus.outbox().unwrap();
    assert_eq!(store.pending().await.unwrap(), 500);

    let mut child = Command::new(env!("CARGO_BIN_EXE_eventbus-relay"))
        .arg("run")
        .env("EVENTBUS_DATABASE_URL", &url)
        .env("EVENTBUS_KAFKA_BROKERS", &brokers)
        .env("EVENTBUS_OUTBOX_TABLE", &table)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.pending().await.unwrap() > 0 {
        assert!(
            Instant::now() < deadline,
            "the relay process drains the outbox"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
    let Database::Postgres(pool) = store.database() else {
        unreachable!()
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP TABLE {table}; DROP TABLE {table}_dead"
    )))
    .execute(&pool)
    .await
    .unwrap();
}

/// A port on loopback nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// An SQLite outbox holding `n` events, and its URL.
async fn sqlite_outbox_with(name: &str, table: &str, n: u32) -> String {
    let path = std::env::temp_dir().join(format!("{name}-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let bus = EventBus::builder(RelayBin)
        .database_url(&url)
        .outbox(OutboxConfig {
            table: table.to_owned(),
            ..OutboxConfig::default()
        })
        .without_relay()
        .build()
        .await
        .unwrap();
    let events: Vec<Pinged> = (0..n).map(|n| Pinged { n }).collect();
    bus.publish_all(&events).await.unwrap();
    bus.shutdown().await;
    url
}

/// Sends SIGTERM to `child` and waits for it; how long it took to exit.
fn terminate(child: &mut std::process::Child) -> (std::process::ExitStatus, Duration) {
    let asked = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    (exit, asked.elapsed())
}

/// The documented bound (`relay::SHUTDOWN_GRACE` + 2 × `relay::CLOSE_BUDGET`), and half a second
/// for a loaded machine to schedule the process.
const STOP_BOUND: Duration = Duration::from_millis(2500 + 500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_down_run_logs_the_outage_once_and_stops_quickly_on_sigterm() {
    assert_eq!(
        eventbus::relay::SHUTDOWN_GRACE + 2 * eventbus::relay::CLOSE_BUDGET,
        Duration::from_millis(2500),
        "the bound the binary's docs give"
    );
    let url = sqlite_outbox_with("relaybin-down", "down_outbox", 20).await;
    let broker = format!("127.0.0.1:{}", closed_port());
    let log = std::env::temp_dir().join(format!("relaybin-down-{}.log", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventbus-relay"))
        .arg("run")
        .env("EVENTBUS_DATABASE_URL", &url)
        .env("EVENTBUS_KAFKA_BROKERS", &broker)
        .env("EVENTBUS_OUTBOX_TABLE", "down_outbox")
        .env_remove("RUST_LOG")
        .env_remove("EVENTBUS_LOG_FORMAT")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Long enough for three probes (every 5 s while the broker is down) and the batch in hand to
    // be waiting for acknowledgements that never come.
    tokio::time::sleep(Duration::from_secs(13)).await;
    let (exit, took) = terminate(&mut child);
    let output = std::fs::read_to_string(&log).unwrap();
    assert!(
        exit.success(),
        "graceful shutdown exits 0: {exit:?}\n{output}"
    );
    assert!(
        took <= STOP_BOUND,
        "stopped {took:?} after SIGTERM, over {STOP_BOUND:?}\n{output}"
    );
    let outages: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("is unavailable"))
        .collect();
    assert_eq!(outages.len(), 1, "the outage is logged once:\n{output}");
    assert!(
        outages[0].contains("WARN") && outages[0].contains(&format!("Kafka at {broker}")),
        "{output}"
    );
    assert!(
        output.contains("publishing outbox `down_outbox`"),
        "{output}"
    );
    assert!(output.contains("stopped; published 0"), "{output}");
    let out = relay(&url, "down_outbox", &["status"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "pending 20\ndead    0\n",
        "nothing is lost or buried while the broker is away"
    );
    let _ = std::fs::remove_file(log);
}

#[test]
fn logs_can_be_json_lines() {
    let path = std::env::temp_dir().join(format!("relaybin-json-{}.db", std::process::id()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let out = Command::new(env!("CARGO_BIN_EXE_eventbus-relay"))
        .args(["--log-format", "json", "run"])
        .env("EVENTBUS_DATABASE_URL", &url)
        .env_remove("EVENTBUS_KAFKA_BROKERS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().last().unwrap_or_default();
    let json: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(json["level"], "ERROR", "{stderr}");
    assert!(
        json["fields"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("EVENTBUS_KAFKA_BROKERS"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_eventbus-relay"))
        .args(["--log-format", "xml", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`text` or `json`"));
}

/// One HTTP/1.1 request to `addr`: the status and the body.
#[cfg(feature = "ops")]
fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_owned(),
    )
}

#[cfg(feature = "ops")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_relay_with_the_operations_api() {
    let url = sqlite_outbox_with("relaybin-serve", "serve_outbox", 2).await;
    let broker = format!("127.0.0.1:{}", closed_port());
    let addr = format!("127.0.0.1:{}", closed_port());
    let log = std::env::temp_dir().join(format!("relaybin-serve-{}.log", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventbus-relay"))
        .args(["serve", "--addr", &addr])
        .env("EVENTBUS_DATABASE_URL", &url)
        .env("EVENTBUS_KAFKA_BROKERS", &broker)
        .env("EVENTBUS_OUTBOX_TABLE", "serve_outbox")
        .env_remove("EVENTBUS_OPS_TOKEN")
        .env_remove("EVENTBUS_OPS_TOKEN_FILE")
        .env_remove("RUST_LOG")
        .env_remove("EVENTBUS_LOG_FORMAT")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the API listens on {addr}:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let http = |method: &'static str, path: &'static str| {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || http(&addr, method, path))
    };
    assert_eq!(http("GET", "/health/live").await.unwrap().0, 200);
    let (status, ready) = http("GET", "/health/ready").await.unwrap();
    assert_eq!(status, 503, "the broker is down: {ready}");
    assert!(ready.contains(r#""down":["kafka"]"#), "{ready}");
    assert!(ready.contains(r#""pending":2"#), "{ready}");
    let (status, dead) = http("GET", "/dead-letters/outbox").await.unwrap();
    assert_eq!(
        (status, dead.as_str()),
        (200, r#"{"dead_letters":[],"next":null}"#)
    );
    let (status, refused) = http("POST", "/dead-letters/outbox/replay").await.unwrap();
    assert_eq!(status, 403, "no token, read-only: {refused}");

    let (exit, took) = terminate(&mut child);
    let output = std::fs::read_to_string(&log).unwrap();
    assert!(exit.success(), "{exit:?}\n{output}");
    assert!(
        took <= STOP_BOUND,
        "stopped {took:?} after SIGTERM\n{output}"
    );
    assert!(
        output.contains(&format!("the operations API listens on http://{addr}")),
        "{output}"
    );
    let _ = std::fs::remove_file(log);
}
