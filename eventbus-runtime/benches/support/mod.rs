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

/// Deletes topic `name` if it exists and creates it anew with `partitions` partitions, so a run
/// reads only its own records.
#[allow(dead_code)] // not every bench uses it
pub(crate) async fn recreate_topic(kafka: &eventbus::KafkaConfig, name: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use std::time::{Duration, Instant};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers.join(","))
        .create()
        .unwrap();
    let _ = admin.delete_topics(&[name], &AdminOptions::new()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let created = admin
            .create_topics(
                &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .unwrap();
        if created.iter().all(Result::is_ok) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cannot recreate {name}: {created:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
