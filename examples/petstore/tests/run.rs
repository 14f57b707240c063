//! The petstore as a user runs it: on the embedded defaults it succeeds; with a broker that
//! cannot be reached it fails within seconds, naming the broker.

#![allow(missing_docs, clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

fn petstore() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_petstore"));
    for variable in [
        "EVENTBUS_DATABASE_URL",
        "EVENTBUS_KAFKA_BROKERS",
        "EVENTBUS_KAFKA_CHECK_SECS",
        "EVENTBUS_MODE",
        "RUST_LOG",
    ] {
        command.env_remove(variable);
    }
    command
}

#[test]
fn runs_on_the_embedded_defaults() {
    let out = petstore().output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("nothing lost"), "{stdout}");
}

#[test]
fn an_unreachable_broker_fails_within_seconds_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let broker = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let out = petstore()
        .env("EVENTBUS_KAFKA_BROKERS", &broker)
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(took < Duration::from_secs(15), "took {took:?}: {stderr}");
    assert!(
        stderr.contains(&format!("Kafka at {broker} did not answer"))
            && stderr.contains("EVENTBUS_KAFKA_BROKERS"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("joined their groups"),
        "it does not claim the consumers joined"
    );
}
