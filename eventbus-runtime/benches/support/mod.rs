//! What the benches share: their settings and the services they run against.

/// The setting `name` from the environment, or `default`.
pub(crate) fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The PostgreSQL URL and the Kafka brokers `scripts/services start` prints; without them the
/// bench `name` says how to start them and exits.
pub(crate) fn services(name: &str) -> (String, String) {
    match (
        std::env::var("EVENTBUS_TEST_DATABASE_URL"),
        std::env::var("EVENTBUS_TEST_KAFKA_BROKERS"),
    ) {
        (Ok(url), Ok(brokers)) => (url, brokers),
        _ => {
            eprintln!(
                "{name} bench: set EVENTBUS_TEST_DATABASE_URL and EVENTBUS_TEST_KAFKA_BROKERS (eval \"$(scripts/services start)\")"
            );
            std::process::exit(2);
        }
    }
}
