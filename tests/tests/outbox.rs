//! The transactional outbox end to end, on both layers: enqueue in a transaction → relay → a
//! consumed record with the CloudEvents headers, the key and the payload; a rolled-back
//! transaction publishes nothing.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use eventbus::{Database, Event, EventBus, Service};
use eventbus_tests::{OrderPlaced, Petstore};
use support::{Layer, Reader};
use uuid::Uuid;

async fn bus_on(layer: &Layer) -> EventBus<Petstore> {
    support::transactional_bus(layer).await
}

/// Enqueues `events` in one transaction, then commits or rolls back.
async fn in_transaction<S: Service, E: Event + eventbus::event::OwnedBy<S>>(
    bus: &EventBus<S>,
    events: &[E],
    commit: bool,
) {
    match bus.outbox().expect("transactional").database() {
        Database::Postgres(pool) => {
            let mut tx = pool.begin().await.unwrap();
            for e in events {
                bus.enqueue(&mut tx, e).await.unwrap();
            }
            if commit {
                tx.commit().await.unwrap()
            } else {
                tx.rollback().await.unwrap()
            }
        }
        Database::Sqlite(pool) => {
            let mut tx = pool.begin().await.unwrap();
            for e in events {
                bus.enqueue(&mut tx, e).await.unwrap();
            }
            if commit {
                tx.commit().await.unwrap()
            } else {
                tx.rollback().await.unwrap()
            }
        }
        Database::Url(_) => unreachable!("a built bus has a pool"),
    }
}

async fn round_trip(layer: Layer) {
    let reader = Reader::at_end(&layer.kafka, OrderPlaced::TOPIC).await;
    let bus = bus_on(&layer).await;
    let committed: Vec<OrderPlaced> = (0..3)
        .map(|i| OrderPlaced {
            order_id: Uuid::now_v7(),
            total_cents: 100 + i,
        })
        .collect();
    let rolled_back = vec![OrderPlaced {
        order_id: Uuid::now_v7(),
        total_cents: 999,
    }];
    in_transaction(&bus, &rolled_back, false).await;
    in_transaction(&bus, &committed, true).await;

    let ours = |r: &support::Record| {
        let id = r.key.as_deref().unwrap_or_default();
        committed
            .iter()
            .chain(&rolled_back)
            .any(|e| e.order_id.to_string() == id)
    };
    let records = tokio::task::block_in_place(|| {
        reader.read(Duration::from_secs(20), |got| {
            got.iter().filter(|r| ours(r)).count() >= 3
        })
    });
    // Give a wrongly published rolled-back event time to show up.
    let late = tokio::task::block_in_place(|| reader.read(Duration::from_millis(1500), |_| false));
    let records: Vec<_> = records
        .into_iter()
        .chain(late)
        .filter(|r| ours(r))
        .collect();
    assert_eq!(
        records.len(),
        3,
        "{}: exactly the committed events arrive",
        layer.name
    );

    for record in &records {
        let sent = committed
            .iter()
            .find(|e| Some(e.order_id.to_string()) == record.key)
            .expect("the key of a committed event");
        assert_eq!(record.header("ce_specversion").as_deref(), Some("1.0"));
        assert_eq!(
            record.header("ce_type").as_deref(),
            Some("petstore.order.order_placed")
        );
        assert_eq!(record.header("ce_source").as_deref(), Some("petstore"));
        assert_eq!(record.header("ce_subject"), Some(sent.order_id.to_string()));
        assert_eq!(
            record.header("content-type").as_deref(),
            Some("application/json")
        );
        let envelope = record.envelope();
        assert_eq!(envelope.id.get_version_num(), 7);
        assert_eq!(
            &envelope.decode::<OrderPlaced>().unwrap(),
            sent,
            "{}: payload",
            layer.name
        );
    }
    assert_eq!(
        layer.store.pending().await.unwrap(),
        0,
        "{}: the outbox is drained",
        layer.name
    );
    bus.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_embedded() {
    let t = std::time::Instant::now();
    round_trip(support::embedded().await).await;
    eprintln!("round_trip_embedded took {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_real() {
    if let Some(layer) = support::real().await {
        round_trip(layer).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_mode_awaits_the_ack() {
    for layer in support::layers().await {
        let reader = Reader::at_end(&layer.kafka, OrderPlaced::TOPIC).await;
        let bus = support::direct_bus(&layer).await;
        let one = OrderPlaced {
            order_id: Uuid::now_v7(),
            total_cents: 1,
        };
        let receipt = bus.publish_domain(&one).await.unwrap();
        assert!(
            receipt.partition.is_some() && receipt.offset.is_some(),
            "{}: acked",
            layer.name
        );
        let many = OrderPlaced::numbered(50);
        let receipts = bus.publish_all(&many).await.unwrap();
        assert_eq!(receipts.len(), 50);
        assert!(receipts.iter().all(|r| r.offset.is_some()));
        // Other tests of this file publish to the same topic at the same time (the drained
        // outbox's 5,000 events): only this test's 51 events count.
        let sent: std::collections::HashMap<_, _> =
            receipts.iter().map(|r| r.event_id).zip(&many).collect();
        let ours = |r: &support::Record| {
            let id = r.envelope().id;
            id == receipt.event_id || sent.contains_key(&id)
        };
        let (mut looked_at, mut found) = (0, 0);
        let records: Vec<_> = tokio::task::block_in_place(|| {
            reader.read(Duration::from_secs(20), |got| {
                found += got[looked_at..].iter().filter(|r| ours(r)).count();
                looked_at = got.len();
                found >= 51
            })
        })
        .into_iter()
        .filter(|r| ours(r))
        .collect();
        assert_eq!(records.len(), 51, "{}", layer.name);
        // Each record carries its own event: the payload of the event its receipt names (a
        // batch's payloads are written into one buffer and sent as slices of it).
        let mut matched = 0;
        for record in &records {
            let envelope = record.envelope();
            if let Some(event) = sent.get(&envelope.id) {
                assert_eq!(envelope.decode::<OrderPlaced>().unwrap(), **event);
                assert_eq!(
                    record.key.as_deref(),
                    Some(event.order_id.to_string().as_str())
                );
                matched += 1;
            }
        }
        assert_eq!(
            matched, 50,
            "{}: every event of the batch, each with its payload",
            layer.name
        );
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        let err = bus.enqueue(&mut tx, &one).await.unwrap_err();
        assert!(err.to_string().contains("Transactional"), "{err}");
    }
}

/// The row an event's generated INSERT wrote: topic, event type, version, key.
type Written = (String, String, i32, Option<String>);

/// Enqueues `event` with its generated INSERT (in a committed transaction) and returns what the
/// row holds, beside what the type says it should.
async fn written<S: Service, E: Event + eventbus::event::OwnedBy<S>>(
    bus: &EventBus<S>,
    table: &str,
    event: &E,
) -> (Written, Written) {
    use sqlx::AssertSqlSafe;
    let expected = (
        E::TOPIC.to_owned(),
        E::EVENT_TYPE.to_owned(),
        E::VERSION as i32,
        eventbus::event::PartitionKey::partition_key(&event.partition_key()),
    );
    let got = match bus.outbox().expect("transactional").database() {
        Database::Postgres(pool) => {
            let mut tx = pool.begin().await.unwrap();
            let id = bus.enqueue(&mut tx, event).await.unwrap();
            tx.commit().await.unwrap();
            sqlx::query_as(AssertSqlSafe(format!(
                "SELECT topic, event_type, version, partition_key FROM {table} WHERE event_id = $1"
            )))
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
        Database::Sqlite(pool) => {
            let mut tx = pool.begin().await.unwrap();
            let id = bus.enqueue(&mut tx, event).await.unwrap();
            tx.commit().await.unwrap();
            sqlx::query_as(AssertSqlSafe(format!(
                "SELECT topic, event_type, version, partition_key FROM {table} WHERE event_id = ?1"
            )))
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
        Database::Url(_) => unreachable!("the store holds a pool"),
    };
    (got, expected)
}

/// The INSERT the code generator emits for each event (derive and YAML, every category, a
/// per-aggregate topic, a version above 1) runs against the table the migration created, in both
/// dialects, and writes the row the relay reads: the statements and the DDL come from one
/// definition of the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_generated_insert_writes_the_migrated_table() {
    use eventbus_tests::payments_schema as yaml;
    use eventbus_tests::*;
    for layer in support::layers().await {
        let bus = EventBus::builder(Petstore)
            .database(layer.store.database())
            .kafka(layer.kafka.clone())
            .outbox(eventbus::OutboxConfig {
                table: layer.table.clone(),
                ..eventbus::OutboxConfig::default()
            })
            .without_relay()
            .build()
            .await
            .unwrap();
        let payments = bus.for_service(yaml::Payments);
        let t = layer.table.as_str();
        let order_id = Uuid::now_v7();
        let rows = vec![
            written(
                &bus,
                t,
                &OrderPlaced {
                    order_id,
                    total_cents: 1,
                },
            )
            .await,
            written(&bus, t, &OrderShipped { order_id }).await,
            written(
                &bus,
                t,
                &OrderCancelled {
                    order_id,
                    reason: "r".into(),
                },
            )
            .await,
            written(&bus.for_service(Payments), t, &OrderPaid { order_id }).await,
            written(&bus, t, &UserSignedIn { user: "ann".into() }).await,
            written(&bus, t, &ServiceStarted { build: "1".into() }).await,
            written(
                &bus,
                t,
                &OrderConfirmationEmail {
                    email: "a@b.c".into(),
                    order_id,
                },
            )
            .await,
            written(
                &payments,
                t,
                &yaml::ProcessorLatencyHigh {
                    processor: "acme".into(),
                    p99_ms: 1.5,
                    sample: 3,
                    details: serde_json::json!({}),
                },
            )
            .await,
        ];
        for (got, expected) in rows {
            assert_eq!(got, expected, "{}", layer.name);
        }
    }
}

/// The on-disk size of `table` with its indexes.
async fn table_bytes(pool: &sqlx::PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT pg_total_relation_size('{table}'::regclass)"
    )))
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_outbox_gives_its_disk_space_back() {
    // PostgreSQL only (SQLite's file is the application's own database).
    let Some(layer) = support::real().await else {
        return;
    };
    let Database::Postgres(pool) = layer.store.database() else {
        unreachable!()
    };
    let empty = table_bytes(&pool, &layer.table).await;
    let writer = EventBus::builder(Petstore)
        .database(layer.store.database())
        .kafka(layer.kafka.clone())
        .outbox(eventbus::OutboxConfig {
            table: layer.table.clone(),
            ..eventbus::OutboxConfig::default()
        })
        .without_relay()
        .build()
        .await
        .unwrap();
    let events: Vec<OrderPlaced> = (0..500)
        .map(|i| OrderPlaced {
            order_id: Uuid::now_v7(),
            total_cents: i,
        })
        .collect();
    for _ in 0..10 {
        in_transaction(&writer, &events, true).await;
    }
    let full = table_bytes(&pool, &layer.table).await;
    assert!(full > empty, "5,000 rows take space: {full} vs {empty}");
    // Not empty: nothing is truncated.
    assert_eq!(layer.store.compact(1).await.unwrap(), None);
    assert_eq!(layer.store.pending().await.unwrap(), 5000);

    // A relay drains it, then gives the space back (at its next gauge pass, every 5 s).
    let relay = eventbus::relay::Relay::new(
        layer.store.clone(),
        &layer.kafka,
        eventbus::OutboxConfig {
            table: layer.table.clone(),
            compact_above_bytes: 1,
            ..eventbus::OutboxConfig::default()
        },
    )
    .unwrap()
    .spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (pending, size) = (
            layer.store.pending().await.unwrap(),
            table_bytes(&pool, &layer.table).await,
        );
        if pending == 0 && size == empty {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the drained table is back to {empty} bytes (pending {pending}, {size} bytes)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(relay.stats().published(), 5000);
    relay.shutdown().await.unwrap();
    // Ids keep growing after the truncation (the relay's order relies on them).
    in_transaction(&writer, &events[..1], true).await;
    let id: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT min(id) FROM {}",
        layer.table
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(id > 5000, "identity continues after TRUNCATE: {id}");
}
