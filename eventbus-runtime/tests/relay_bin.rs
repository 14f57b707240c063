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
