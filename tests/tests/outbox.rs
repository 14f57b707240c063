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
        let records = tokio::task::block_in_place(|| {
            reader.read(Duration::from_secs(20), |got| got.len() >= 51)
        });
        assert_eq!(records.len(), 51, "{}", layer.name);
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        let err = bus.enqueue(&mut tx, &one).await.unwrap_err();
        assert!(err.to_string().contains("Transactional"), "{err}");
    }
}
