//! The contract between `scripts/services` and the tests: when the script says the services are
//! up (`EVENTBUS_REQUIRE_SERVICES=1`), their addresses answer; a test that needs a service fails,
//! never skips, in that case.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

fn required() -> bool {
    std::env::var("EVENTBUS_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn answers(what: &str, addr: &str) {
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("{what} address {addr:?} does not resolve: {e}"))
        .collect();
    assert!(
        addrs
            .iter()
            .any(|a| TcpStream::connect_timeout(a, Duration::from_secs(2)).is_ok()),
        "{what} at {addr} does not answer: start it with `scripts/services start`"
    );
}

#[test]
fn services_named_by_the_environment_answer() {
    let db = std::env::var("EVENTBUS_TEST_DATABASE_URL");
    let kafka = std::env::var("EVENTBUS_TEST_KAFKA_BROKERS");
    if !required() && (db.is_err() || kafka.is_err()) {
        eprintln!("services not configured: run through scripts/test to include them");
        return;
    }
    let db = db.expect("EVENTBUS_TEST_DATABASE_URL is set when EVENTBUS_REQUIRE_SERVICES=1");
    let kafka = kafka.expect("EVENTBUS_TEST_KAFKA_BROKERS is set when EVENTBUS_REQUIRE_SERVICES=1");
    // postgres://user:password@host:port/db
    let host_port = db
        .rsplit('@')
        .next()
        .and_then(|rest| rest.split('/').next())
        .expect("EVENTBUS_TEST_DATABASE_URL is postgres://user:password@host:port/db");
    answers("PostgreSQL", host_port);
    for broker in kafka.split(',') {
        answers("Kafka", broker);
    }
}
