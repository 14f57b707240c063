//! The petstore: three services in one process, talking only through events.
//!
//! - **orders** (events declared with derives) is event sourced: an `Order` aggregate (place,
//!   pay, cancel) in the event store, whose appends publish through the outbox in the same
//!   transaction (`OrderPlaced` commits with its audit record); it consumes `OrderPaid` and pays
//!   the order; a projection keeps the orders' read model (`petstore_order_view`);
//! - **payments** (events generated from `schemas/payments.yaml` by `build.rs`) consumes
//!   `OrderPlaced`, captures the payment (`PaymentCaptured`, its domain event) and tells orders
//!   with an integration event (`OrderPaid`);
//! - **notifications** consumes `OrderPaid` and sends a confirmation (`ConfirmationEmail`), which
//!   a mailer consumes;
//! - audit and system events go alongside, and an audit log consumes them.
//!
//! It runs on the embedded defaults (a SQLite file and librdkafka's in-process mock cluster) with
//! no setup, and on real PostgreSQL and Kafka when `EVENTBUS_DATABASE_URL` and
//! `EVENTBUS_KAFKA_BROKERS` are set. It prints a timeline, then a summary — events per topic,
//! delivered, retried, dead, commit-to-delivery latency — and exits non-zero, saying why, if an
//! event is lost or dead-lettered, a consumer did not join its group, or a health check fails. A
//! broker that does not answer stops it within seconds, naming the broker's address. Logs (the
//! library's `tracing` events: retries, outages) go to stderr, filtered by `RUST_LOG` (default
//! `info`), as JSON lines with `EVENTBUS_LOG_FORMAT=json`.
//!
//! This file declares the services and walks through the run in order; `orders.rs` holds the
//! orders service's events, its aggregate and read model, `consumers.rs` the five consumer
//! groups, `report.rs` the summary.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventbus::store::{EventStore, Projection, ProjectionRunner};
use eventbus::{EventBus, NotificationEvent, Service, SystemEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The payments service: its events come from `schemas/payments.yaml`. (A library would export
/// them; in this binary most are unused.)
#[allow(unreachable_pub, dead_code)]
mod payments {
    eventbus::include_events!("payments");
}
use payments::Payments;

/// The orders service (the crate's default service).
#[derive(Service)]
#[service(name = "orders", default)]
struct Orders;

/// The notifications service.
#[derive(Service)]
#[service(name = "notifications")]
struct Notifications;

mod consumers;
mod orders;
mod report;

use consumers::{CONSUMERS, Shared, describe, lock, wire};
use orders::{Order, OrderPlaced, OrderView, create_orders_table, order_states, place_order};
use report::summary;

/// The customer is told their order is confirmed.
#[derive(NotificationEvent, Serialize, Deserialize, Debug, Clone)]
#[event(service = Notifications, channel = "email", kind = "order_confirmation")]
struct ConfirmationEmail {
    #[event(recipient)]
    customer: String,
    order_id: Uuid,
}

/// A service started.
#[derive(SystemEvent, Serialize, Deserialize, Debug, Clone)]
struct ServiceStarted {
    service: String,
}

const PETS: [(&str, &str, u64); 8] = [
    ("ada@example.com", "parrot", 12_000),
    ("grace@example.com", "tortoise", 8_500),
    ("linus@example.com", "penguin", 20_000),
    ("ken@example.com", "gopher", 4_200),
    ("barbara@example.com", "crab", 3_100),
    ("dennis@example.com", "cobra", 15_000),
    ("margaret@example.com", "hamster", 2_500),
    ("alan@example.com", "goldfish", 900),
];

/// When the run started, for the timeline.
static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn at() -> String {
    ms(*STARTED.get_or_init(Instant::now))
}

fn ms(since: Instant) -> String {
    format!("{:>8.1}ms", since.elapsed().as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let format = eventbus::logging::LogFormat::from_env().unwrap_or_else(|e| {
        eprintln!("petstore: {e}; logging as text");
        eventbus::logging::LogFormat::Text
    });
    eventbus::logging::init(format, "info");
    match run().await {
        Ok(failures) if failures.is_empty() => ExitCode::SUCCESS,
        Ok(failures) => {
            eprintln!("\npetstore: FAILED:");
            for failure in failures {
                eprintln!("  - {failure}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("petstore: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `GET path` on the operations API: the status and the body (HTTP/1.1, one request).
async fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Runs the petstore; what went wrong, if anything.
async fn run() -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let started = *STARTED.get_or_init(Instant::now);
    // `from_env` asks the configured brokers for their metadata first (5 s at most): a broker
    // that cannot be reached fails here, with its address, not minutes later.
    let orders = EventBus::from_env(Orders).await?;
    let payments = orders.for_service(Payments);
    let notifications = orders.for_service(Notifications);
    let where_ = match (
        std::env::var("EVENTBUS_DATABASE_URL").is_ok(),
        std::env::var("EVENTBUS_KAFKA_BROKERS").is_ok(),
    ) {
        (true, true) => "the configured database and Kafka",
        _ => "the embedded defaults (SQLite, in-process Kafka)",
    };
    println!("petstore: {:?} mode on {where_}", orders.mode());
    // The operations API (docs/operations.md) on loopback, read-only (no EVENTBUS_OPS_TOKEN):
    // a free port unless EVENTBUS_PETSTORE_OPS_ADDR names one.
    let ops_addr: std::net::SocketAddr = std::env::var("EVENTBUS_PETSTORE_OPS_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:0".to_owned())
        .parse()?;
    let ops = eventbus::ops::bind(
        ops_addr,
        eventbus::ops::router(orders.clone(), eventbus::ops::Ops::from_env()?),
    )
    .await?;
    let ops_addr = ops.local_addr()?;
    tokio::spawn(ops.run());
    println!("operations API: http://{ops_addr}/health/ready, /metrics, /dead-letters/outbox\n");

    let db = orders
        .outbox()
        .ok_or("the petstore needs the Transactional mode")?
        .database();
    create_orders_table(&db).await?;
    let store = EventStore::new(&orders)?;
    store.migrate().await?;
    let seen: Shared = Arc::default();
    let run = Uuid::now_v7().simple().to_string();
    let consumers = wire(&orders, &payments, &notifications, &seen, &run).await?;
    let mut failures = Vec::new();
    let mut joined = Vec::new();
    for (name, c) in CONSUMERS.iter().zip(&consumers) {
        if c.ready(Duration::from_secs(30)).await {
            joined.push(*name);
        } else {
            failures.push(format!(
                "the consumer group `{name}` got no partitions within 30 s ({}); is the broker at {} healthy?",
                describe(c.health()),
                std::env::var("EVENTBUS_KAFKA_BROKERS").unwrap_or_else(|_| "the embedded broker".into())
            ));
        }
    }
    if joined.len() == consumers.len() {
        println!(
            "{} consumers      orders, payments, notifications, mailer and audit log joined their groups",
            at()
        );
    } else {
        eprintln!(
            "petstore: only {} of {} consumers joined their groups ({}); going on",
            joined.len(),
            consumers.len(),
            joined.join(", ")
        );
    }

    for service in ["orders", "payments", "notifications"] {
        orders
            .publish_system(&ServiceStarted {
                service: service.to_owned(),
            })
            .await?;
    }
    for (customer, pet, total_cents) in PETS {
        let placed = OrderPlaced {
            order_id: Uuid::now_v7(),
            customer: customer.to_owned(),
            pet: pet.to_owned(),
            total_cents,
        };
        let order_id = placed.order_id;
        let pet = placed.pet.clone();
        place_order(&orders, &db, placed, &run).await?;
        lock(&seen).committed.insert(order_id, Instant::now());
        println!(
            "{} orders         placed a {pet} for {customer} (appended to its stream, committed with its events)",
            ms(started),
        );
    }
    // One more order, placed and cancelled before anyone pays it (tagged apart from the run, so
    // the other services' consumers skip it).
    let ghost = OrderPlaced {
        order_id: Uuid::now_v7(),
        customer: "eve@example.com".to_owned(),
        pet: "unicorn".to_owned(),
        total_cents: 99_999,
    };
    let ghost_id = ghost.order_id;
    place_order(&orders, &db, ghost, &format!("{run}-cancelled")).await?;
    let (order, version) = store.load::<Order>(&ghost_id).await?;
    let cancelled = order.cancel("out of stock")?;
    store
        .append::<Order>(&ghost_id, version, &cancelled)
        .await?;
    println!(
        "{} orders         cancelled the {} order of eve@example.com (version {})",
        ms(started),
        order.pet,
        version + 1
    );

    // Wait until every order is confirmed and audited, or give up.
    let deadline = Instant::now() + Duration::from_secs(60);
    let expected = PETS.len() as u64;
    while {
        let s = lock(&seen);
        s.confirmed < expected || s.audited < expected || s.paid < expected
    } && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A paid order cannot be cancelled: the command refuses, nothing is appended.
    let first = *lock(&seen).committed.keys().min().ok_or("no order")?;
    let (order, _) = store.load::<Order>(&first).await?;
    match order.cancel("changed my mind") {
        Err(why) => println!(
            "{} orders         cancelling the {} order refused: {why}",
            at(),
            order.pet
        ),
        Ok(_) => failures.push(format!("a paid order ({first}) could be cancelled")),
    }
    failures.extend(summary(&orders, &seen, &consumers, started, expected));
    // The read model, caught up from its checkpoint (every run's orders, once each).
    let mut view = ProjectionRunner::new(&store, OrderView).batch(500);
    let projected = view.run_until_caught_up().await?;
    let states = order_states(&db, &run).await?;
    let checkpoint = view.checkpoint().await?;
    println!(
        "read model (projection `{}`): {projected} events projected, checkpoint at {checkpoint}; this run: {}",
        view.projection().name(),
        states
            .iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let paid = states
        .iter()
        .find(|(s, _)| s == "paid")
        .map_or(0, |(_, n)| *n);
    if paid != expected as i64 {
        failures.push(format!(
            "the read model shows {paid} paid orders of this run, not {expected}"
        ));
    }
    // What a readiness endpoint would serve: the broker, the outbox database and its backlog, and
    // each consumer.
    let health = orders.health(Duration::from_secs(5)).await;
    let unhealthy: Vec<String> = CONSUMERS
        .iter()
        .zip(&consumers)
        .filter(|(_, c)| !c.health().is_healthy())
        .map(|(name, c)| format!("{name}: {}", describe(c.health())))
        .collect();
    println!(
        "health: {health}; consumers {}",
        if unhealthy.is_empty() {
            "running"
        } else {
            "NOT all running"
        }
    );
    if !health.is_healthy() {
        failures.push(format!("the bus is not healthy: {health}"));
    }
    match get(ops_addr, "/health/ready").await {
        Ok((status, body)) => {
            println!("GET /health/ready: {status} {body}");
            if status != 200 {
                failures.push(format!("/health/ready answered {status}: {body}"));
            }
        }
        Err(e) => failures.push(format!("the operations API did not answer: {e}")),
    }
    for consumer in unhealthy {
        failures.push(format!("a consumer is not healthy: {consumer}"));
    }
    for c in consumers {
        c.shutdown().await;
    }
    orders.shutdown().await;
    Ok(failures)
}
