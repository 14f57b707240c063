//! Health checks (the seed's AD-007) on both layers: the broker, the outbox database and what
//! waits in the outbox, a consumer's state; an unreachable broker reported with its address.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use eventbus::health::Check;
use eventbus::{EventBus, KafkaConfig, OutboxConfig};
use eventbus_tests::{OrderPlaced, OrderPlacedTopic, Petstore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_the_broker_the_database_and_what_waits_in_the_outbox() {
    for layer in support::layers().await {
        // No relay: what is published waits in the outbox.
        let bus = EventBus::builder(Petstore)
            .database(layer.store.database())
            .kafka(layer.kafka.clone())
            .outbox(OutboxConfig {
                table: layer.table.clone(),
                ..OutboxConfig::default()
            })
            .without_relay()
            .build()
            .await
            .unwrap();
        let empty = bus.health(Duration::from_secs(10)).await;
        assert!(empty.is_healthy(), "{}: {empty}", layer.name);
        assert!(matches!(empty.kafka, Some(Check::Up { .. })), "{empty}");
        assert!(matches!(empty.database, Some(Check::Up { .. })), "{empty}");
        let backlog = empty.backlog.unwrap();
        assert_eq!(
            (backlog.pending, backlog.oldest_pending, backlog.dead),
            (0, None, 0),
            "{}",
            layer.name
        );

        bus.publish_all(&OrderPlaced::numbered(3)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let waiting = bus.health(Duration::from_secs(10)).await;
        let backlog = waiting.backlog.unwrap();
        assert_eq!(backlog.pending, 3, "{}: {waiting}", layer.name);
        let oldest = backlog.oldest_pending.unwrap();
        assert!(
            oldest >= Duration::from_secs(1) && oldest < Duration::from_secs(30),
            "{}: the oldest waited {oldest:?}",
            layer.name
        );
        assert!(
            waiting.to_string().contains("outbox 3 pending (oldest 1."),
            "{waiting}"
        );
        // Waiting events do not make the instance unhealthy: the outbox is doing its job.
        assert!(waiting.is_healthy());
        bus.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_reported_down_with_its_address() {
    let bus = EventBus::builder(Petstore)
        .kafka(KafkaConfig::new("127.0.0.1:1"))
        .direct()
        .kafka_check(None)
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let health = bus.health(Duration::from_secs(2)).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the timeout"
    );
    assert!(!health.is_healthy());
    match &health.kafka {
        Some(Check::Down { error }) => assert!(error.contains("127.0.0.1:1"), "{error}"),
        other => panic!("expected the broker down, got {other:?}"),
    }
    assert!(health.to_string().contains("kafka DOWN"), "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_reports_running_joined_and_its_circuit() {
    let testing = EventBus::testing(Petstore);
    let local = testing
        .subscribe::<OrderPlacedTopic>()
        .on::<OrderPlaced, _>(|_e: OrderPlaced| async {})
        .start()
        .await
        .unwrap();
    assert!(local.health().is_healthy(), "{:?}", local.health());
    local.shutdown().await;

    for layer in support::layers().await {
        let bus = support::direct_bus(&layer).await;
        let consumer = support::idle_order_consumer(
            &bus,
            &format!("health-{}", uuid::Uuid::now_v7().simple()),
        )
        .await;
        let health = consumer.health();
        assert!(
            health.running && health.joined && !health.circuit_open,
            "{}: {health:?}",
            layer.name
        );
        assert!(health.is_healthy());
        consumer.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_does_not_start_when_its_brokers_do_not_answer() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let path =
        std::env::temp_dir().join(format!("unanswered-{}.db", uuid::Uuid::now_v7().simple()));
    let url = format!("sqlite://{}", path.display());
    for direct in [true, false] {
        let builder = EventBus::builder(Petstore)
            .kafka(KafkaConfig::new(&address))
            .database_url(&url)
            .kafka_check(Some(Duration::from_secs(2)));
        let builder = if direct { builder.direct() } else { builder };
        let started = Instant::now();
        let error = builder.build().await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "fails fast: {:?}",
            started.elapsed()
        );
        assert!(
            matches!(error, eventbus::StartError::KafkaUnreachable { .. }),
            "{error:?}"
        );
        let shown = error.to_string();
        assert!(
            shown.contains(&address)
                && shown.contains("did not answer within 2s")
                && shown.contains("EVENTBUS_KAFKA_CHECK_SECS=0"),
            "{shown}"
        );
    }
    // Without the check, a Transactional bus starts while Kafka is away: its outbox takes events.
    let bus = EventBus::builder(Petstore)
        .kafka(KafkaConfig::new(&address))
        .database_url(&url)
        .kafka_check(None)
        .build()
        .await
        .unwrap();
    bus.publish_domain(&OrderPlaced::numbered(1)[0])
        .await
        .unwrap();
    assert_eq!(bus.outbox().unwrap().pending().await.unwrap(), 1);
    bus.shutdown().await;
}
