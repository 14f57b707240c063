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

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventbus::store::{
    Aggregate, Apply, EventStore, ExpectedVersion, Projection, ProjectionRunner, ProjectionTx,
    StoredEvent,
};
use eventbus::{
    AuditEvent, Database, DomainEvent, EventBus, EventContext, HandlerError, NotificationEvent,
    Service, SystemEvent,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The payments service: its events come from `schemas/payments.yaml`. (A library would export
/// them; in this binary most are unused.)
#[allow(unreachable_pub, dead_code)]
mod payments {
    eventbus::include_events!("payments");
}
use payments::{Currency, Money, OrderPaid, OrderPaidTopic, PaymentCaptured, Payments};

/// The orders service (the crate's default service).
#[derive(Service)]
#[service(name = "orders", default)]
struct Orders;

/// The notifications service.
#[derive(Service)]
#[service(name = "notifications")]
struct Notifications;

/// A customer placed an order.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(aggregate = "order")]
struct OrderPlaced {
    #[event(aggregate_id)]
    order_id: Uuid,
    customer: String,
    pet: String,
    total_cents: u64,
}

/// An order was paid (the orders service's own fact, on payments' `OrderPaid`).
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(aggregate = "order")]
struct OrderSettled {
    #[event(aggregate_id)]
    order_id: Uuid,
    receipt: String,
}

/// An order was cancelled before it was paid.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(aggregate = "order")]
struct OrderCancelled {
    #[event(aggregate_id)]
    order_id: Uuid,
    reason: String,
}

/// An order, event sourced: rebuilt from its events by the store.
#[derive(Aggregate, Default, Debug)]
#[aggregate(events(OrderPlaced, OrderSettled, OrderCancelled))]
struct Order {
    id: Option<Uuid>,
    pet: String,
    state: OrderState,
}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
enum OrderState {
    #[default]
    New,
    Placed,
    Paid,
    Cancelled,
}

impl Apply<OrderPlaced> for Order {
    fn on(&mut self, event: &OrderPlaced) {
        self.id = Some(event.order_id);
        self.pet.clone_from(&event.pet);
        self.state = OrderState::Placed;
    }
}

impl Apply<OrderSettled> for Order {
    fn on(&mut self, _: &OrderSettled) {
        self.state = OrderState::Paid;
    }
}

impl Apply<OrderCancelled> for Order {
    fn on(&mut self, _: &OrderCancelled) {
        self.state = OrderState::Cancelled;
    }
}

// The commands: they decide, and return the events to append.
impl Order {
    fn place(&self, placed: OrderPlaced) -> Result<Vec<OrderEvent>, &'static str> {
        match self.state {
            OrderState::New => Ok(vec![Order::event(placed)]),
            _ => Err("the order is already placed"),
        }
    }

    /// Paying twice is a no-op (a redelivered `OrderPaid`).
    fn pay(&self, receipt: String) -> Result<Vec<OrderEvent>, &'static str> {
        match (self.state, self.id) {
            (OrderState::Placed, Some(order_id)) => {
                Ok(vec![Order::event(OrderSettled { order_id, receipt })])
            }
            (OrderState::Paid, _) => Ok(vec![]),
            (OrderState::Cancelled, _) => Err("the order was cancelled"),
            _ => Err("no such order"),
        }
    }

    fn cancel(&self, reason: &str) -> Result<Vec<OrderEvent>, &'static str> {
        match (self.state, self.id) {
            (OrderState::Placed, Some(order_id)) => Ok(vec![Order::event(OrderCancelled {
                order_id,
                reason: reason.to_owned(),
            })]),
            (OrderState::Cancelled, _) => Ok(vec![]),
            (OrderState::Paid, _) => Err("it is already paid"),
            _ => Err("no such order"),
        }
    }
}

/// The orders' read model, `petstore_order_view`: one row per order, kept by a projection over
/// the event store (its writes and its checkpoint commit together).
struct OrderView;

impl Projection for OrderView {
    fn name(&self) -> &str {
        "petstore-order-view"
    }

    async fn handle(
        &mut self,
        event: &StoredEvent,
        tx: &mut ProjectionTx,
    ) -> Result<(), HandlerError> {
        let Some(decoded) = event.decode::<Order>() else {
            return Ok(()); // another aggregate's
        };
        let run = event.headers.get("ce_tags").cloned().unwrap_or_default();
        let id = event.stream_id.as_str();
        macro_rules! write {
            ($conn:expr, $insert:literal, $update:literal) => {
                match decoded? {
                    OrderEvent::OrderPlaced(p) => {
                        sqlx::query($insert)
                            .bind(id)
                            .bind(run)
                            .bind(p.customer)
                            .bind(p.pet)
                            .bind(p.total_cents as i64)
                            .execute($conn)
                            .await?;
                    }
                    other => {
                        let state = match other {
                            OrderEvent::OrderSettled(_) => "paid",
                            _ => "cancelled",
                        };
                        sqlx::query($update)
                            .bind(state)
                            .bind(id)
                            .execute($conn)
                            .await?;
                    }
                }
            };
        }
        match tx {
            ProjectionTx::Postgres(_) => write!(
                tx.postgres()?,
                "INSERT INTO petstore_order_view VALUES ($1, $2, $3, $4, $5, 'placed') ON CONFLICT (id) DO NOTHING",
                "UPDATE petstore_order_view SET state = $1 WHERE id = $2"
            ),
            ProjectionTx::Sqlite(_) => write!(
                tx.sqlite()?,
                "INSERT INTO petstore_order_view VALUES (?1, ?2, ?3, ?4, ?5, 'placed') ON CONFLICT (id) DO NOTHING",
                "UPDATE petstore_order_view SET state = ?1 WHERE id = ?2"
            ),
        }
        Ok(())
    }
}

/// The customer is told their order is confirmed.
#[derive(NotificationEvent, Serialize, Deserialize, Debug, Clone)]
#[event(service = Notifications, channel = "email", kind = "order_confirmation")]
struct ConfirmationEmail {
    #[event(recipient)]
    customer: String,
    order_id: Uuid,
}

/// Someone placed an order (who did what, for compliance).
#[derive(AuditEvent, Serialize, Deserialize, Debug, Clone)]
#[event(audit_category = "orders")]
struct OrderAudited {
    #[event(actor)]
    customer: String,
    action: String,
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

/// What the consumers saw: deliveries per topic and commit-to-delivery latencies.
#[derive(Default)]
struct Observed {
    committed: HashMap<Uuid, Instant>,
    latencies_ms: Vec<f64>,
    per_topic: BTreeMap<String, u64>,
    confirmed: u64,
    audited: u64,
    paid: u64,
}

type Shared = Arc<Mutex<Observed>>;

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

/// A consumer's state in words.
fn describe(health: eventbus::consumer::ConsumerHealth) -> String {
    format!(
        "{}, {}, circuit {}",
        if health.running {
            "running"
        } else {
            "NOT running"
        },
        if health.joined {
            "joined"
        } else {
            "NOT joined"
        },
        if health.circuit_open {
            "OPEN"
        } else {
            "closed"
        }
    )
}

/// The consumer groups, in the order `wire` starts them.
const CONSUMERS: [&str; 5] = [
    "petstore-orders",
    "petstore-payments",
    "petstore-notifications",
    "petstore-mailer",
    "petstore-audit-log",
];

fn lock(seen: &Shared) -> std::sync::MutexGuard<'_, Observed> {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The orders' read model (kept by [`OrderView`]).
async fn create_orders_table(db: &Database) -> Result<(), sqlx::Error> {
    let ddl = "CREATE TABLE IF NOT EXISTS petstore_order_view \
               (id TEXT PRIMARY KEY, run TEXT NOT NULL, customer TEXT NOT NULL, pet TEXT NOT NULL, \
                total_cents BIGINT NOT NULL, state TEXT NOT NULL)";
    match db {
        Database::Postgres(pool) => sqlx::query(ddl).execute(pool).await.map(|_| ()),
        Database::Sqlite(pool) => sqlx::query(ddl).execute(pool).await.map(|_| ()),
        Database::Url(_) => Ok(()),
    }
}

/// Orders per state in the read model, for the run tagged `run` (and its cancelled order).
async fn order_states(db: &Database, run: &str) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let like = format!("%{run}%");
    match db {
        Database::Postgres(pool) => {
            sqlx::query_as(
                "SELECT state, COUNT(*) FROM petstore_order_view WHERE run LIKE $1 GROUP BY state ORDER BY state DESC",
            )
            .bind(like)
            .fetch_all(pool)
            .await
        }
        Database::Sqlite(pool) => {
            sqlx::query_as(
                "SELECT state, COUNT(*) FROM petstore_order_view WHERE run LIKE ?1 GROUP BY state ORDER BY state DESC",
            )
            .bind(like)
            .fetch_all(pool)
            .await
        }
        Database::Url(_) => Ok(vec![]),
    }
}

/// The order placed (appended to its new stream, which publishes `OrderPlaced` through the
/// outbox) and its audit record: one transaction.
async fn place_order(
    bus: &EventBus<Orders>,
    db: &Database,
    order: OrderPlaced,
    tag: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let audit = OrderAudited {
        customer: order.customer.clone(),
        action: "place_order".into(),
        order_id: order.order_id,
    };
    let id = order.order_id;
    let bus = bus.with_context(
        EventContext::default()
            .with_correlation_id(id.to_string())
            .with_tag(tag),
    );
    let store = EventStore::new(&bus)?;
    let events = Order::default().place(order)?;
    macro_rules! in_tx {
        ($pool:expr) => {{
            let mut tx = $pool.begin().await?;
            store
                .append_in::<Order, _>(&mut tx, &id, ExpectedVersion::NoStream, &events)
                .await?;
            bus.enqueue(&mut tx, &audit).await?;
            tx.commit().await?;
        }};
    }
    match db {
        Database::Postgres(pool) => in_tx!(pool),
        Database::Sqlite(pool) => in_tx!(pool),
        Database::Url(_) => return Err("a built bus has a pool".into()),
    }
    Ok(())
}

/// The context of events caused by `order_id` in this run.
fn context(order_id: Uuid, run: &str) -> EventContext {
    EventContext::default()
        .with_correlation_id(order_id.to_string())
        .with_tag(run)
}

fn count(seen: &Shared, topic: &str) {
    *lock(seen).per_topic.entry(topic.to_owned()).or_default() += 1;
}

/// Subscribes payments to orders, notifications to both, a mailer and an audit log.
async fn wire(
    orders: &EventBus<Orders>,
    payments: &EventBus<Payments>,
    notifications: &EventBus<Notifications>,
    seen: &Shared,
    run: &str,
) -> Result<Vec<eventbus::consumer::ConsumerHandle>, Box<dyn std::error::Error>> {
    let this_run = || eventbus::EventFilter::new().tag(run);
    let retry =
        eventbus::RetryPolicy::exponential(Duration::from_millis(50), Duration::from_secs(1))
            .max_attempts(20);
    let mut handles = Vec::new();

    // orders: OrderPaid → the order's `pay` command, appended to its stream (a conflict or a
    // failure is retried; paying a paid order appends nothing, so a redelivery is harmless).
    let store = EventStore::new(orders)?;
    let (bus, r, s) = (orders.clone(), run.to_owned(), Arc::clone(seen));
    handles.push(
        orders
            .consumer("petstore-orders")
            .subscribe::<OrderPaidTopic>()
            .filter(this_run())
            .on::<OrderPaid, _>(move |paid: OrderPaid| {
                let (store, bus, run, seen) =
                    (store.clone(), bus.clone(), r.clone(), Arc::clone(&s));
                async move {
                    let (order, version) = store.load::<Order>(&paid.order_id).await?;
                    let events = order.pay(paid.receipts.join(","))?;
                    if !events.is_empty() {
                        // The events caused by this payment carry its correlation and the run.
                        let store =
                            EventStore::new(&bus.with_context(context(paid.order_id, &run)))?;
                        store
                            .append::<Order>(&paid.order_id, version, &events)
                            .await?;
                        lock(&seen).paid += 1;
                        println!(
                            "{} orders         the {} order is paid (stream version {})",
                            at(),
                            order.pet,
                            version + 1
                        );
                    }
                    Ok::<(), HandlerError>(())
                }
            })
            .retry(retry)
            .start()
            .await?,
    );

    // payments: OrderPlaced → PaymentCaptured (its domain event) + OrderPaid (to orders).
    let (bus, s, r) = (payments.clone(), Arc::clone(seen), run.to_owned());
    handles.push(
        payments
            .consumer("petstore-payments")
            .subscribe::<OrderPlacedTopic>()
            .filter(this_run())
            .on::<OrderPlaced, _>(move |placed: OrderPlaced| {
                let (bus, seen, run) = (bus.clone(), Arc::clone(&s), r.clone());
                async move {
                    {
                        let mut seen = lock(&seen);
                        if let Some(at) = seen.committed.get(&placed.order_id).copied() {
                            seen.latencies_ms.push(at.elapsed().as_secs_f64() * 1000.0);
                        }
                    }
                    count(&seen, OrderPlaced::TOPIC);
                    let amount = Money {
                        amount: format!(
                            "{}.{:02}",
                            placed.total_cents / 100,
                            placed.total_cents % 100
                        )
                        .parse()?,
                        currency: Currency::EUR,
                    };
                    #[allow(deprecated)] // `legacy_ref` is deprecated in the schema
                    let captured = PaymentCaptured {
                        payment_id: Uuid::now_v7(),
                        order_id: placed.order_id,
                        amount: amount.clone(),
                        fees: BTreeMap::from([("processor".to_owned(), "0.30".parse()?)]),
                        attempts: 1,
                        processor_ref: Some(format!("psp-{}", placed.order_id.simple())),
                        legacy_ref: None,
                    };
                    let bus = bus.with_context(context(placed.order_id, &run));
                    bus.publish_domain(&captured).await?;
                    bus.publish_integration(&OrderPaid {
                        order_id: placed.order_id,
                        paid: amount,
                        receipts: vec![format!(
                            "R-{}",
                            &placed.order_id.simple().to_string()[24..]
                        )],
                    })
                    .await?;
                    println!(
                        "{} payments       captured {} for {}",
                        at(),
                        captured.amount.amount.as_str(),
                        placed.pet
                    );
                    Ok::<(), HandlerError>(())
                }
            })
            .retry(retry)
            .start()
            .await?,
    );

    // notifications: keeps who ordered what (from OrderPlaced), and on OrderPaid sends the
    // confirmation. The two topics are not ordered with each other: an OrderPaid that arrives
    // first is retried until its OrderPlaced is known.
    let customers: Arc<Mutex<HashMap<Uuid, String>>> = Arc::default();
    let (c1, c2) = (Arc::clone(&customers), Arc::clone(&customers));
    let (bus, r, s) = (notifications.clone(), run.to_owned(), Arc::clone(seen));
    handles.push(
        notifications
            .consumer("petstore-notifications")
            .subscribe::<OrderPlacedTopic>()
            .on::<OrderPlaced, _>(move |placed: OrderPlaced| {
                c1.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(placed.order_id, placed.customer);
                async {}
            })
            .subscribe::<OrderPaidTopic>()
            .on::<OrderPaid, _>(move |paid: OrderPaid| {
                let customer = c2
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(&paid.order_id)
                    .cloned();
                let (bus, run, seen) = (bus.clone(), r.clone(), Arc::clone(&s));
                async move {
                    let customer = customer.ok_or("the order is not known yet; retrying")?;
                    count(&seen, OrderPaid::TOPIC);
                    let email = ConfirmationEmail {
                        customer,
                        order_id: paid.order_id,
                    };
                    bus.with_context(context(paid.order_id, &run))
                        .publish_notification(&email)
                        .await?;
                    println!(
                        "{} notifications  confirmation queued for {}",
                        at(),
                        email.customer
                    );
                    Ok::<(), HandlerError>(())
                }
            })
            .filter(this_run())
            .retry(retry)
            .start()
            .await?,
    );

    // A mailer that delivers confirmations, and an audit log.
    let s = Arc::clone(seen);
    handles.push(
        notifications
            .consumer("petstore-mailer")
            .subscribe::<ConfirmationEmailTopic>()
            .filter(this_run())
            .on::<ConfirmationEmail, _>(move |email: ConfirmationEmail| {
                count(&s, ConfirmationEmail::TOPIC);
                lock(&s).confirmed += 1;
                println!("{} mailer         emailed {}", at(), email.customer);
                async {}
            })
            .start()
            .await?,
    );
    let s = Arc::clone(seen);
    handles.push(
        orders
            .consumer("petstore-audit-log")
            .subscribe::<OrderAuditedTopic>()
            .filter(this_run())
            .on::<OrderAudited, _>(move |audit: OrderAudited| {
                count(&s, OrderAudited::TOPIC);
                lock(&s).audited += 1;
                let _ = audit;
                async {}
            })
            .start()
            .await?,
    );
    Ok(handles)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

/// Prints the summary; what was lost or dead-lettered.
fn summary(
    bus: &EventBus<Orders>,
    seen: &Shared,
    consumers: &[eventbus::consumer::ConsumerHandle],
    started: Instant,
    expected: u64,
) -> Vec<String> {
    let seen = lock(seen);
    println!(
        "
delivered per topic (this run):"
    );
    for (topic, n) in &seen.per_topic {
        println!("  {n:>4}  {topic}");
    }
    let relay = bus.relay_stats();
    let (published, relay_retried, relay_dead) = relay
        .map(|r| (r.published(), r.retried(), r.dead_lettered()))
        .unwrap_or_default();
    let stats: Vec<_> = consumers.iter().map(|c| c.stats()).collect();
    let handled: u64 = stats.iter().map(|s| s.handled()).sum();
    let retried: u64 = stats.iter().map(|s| s.retried()).sum();
    let dead: u64 = stats.iter().map(|s| s.dead_lettered()).sum();
    let mut lat = seen.latencies_ms.clone();
    lat.sort_by(f64::total_cmp);
    println!(
        "
relay: {published} published, {relay_retried} retried, {relay_dead} dead-lettered; consumers: {handled} handled, {retried} retried, {dead} dead-lettered"
    );
    println!(
        "commit-to-delivery (OrderPlaced → payments): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms over {} events",
        percentile(&lat, 0.50),
        percentile(&lat, 0.95),
        percentile(&lat, 0.99),
        lat.len()
    );
    println!("done in {}", ms(started).trim());
    let payments = seen.per_topic.get(OrderPlaced::TOPIC).copied().unwrap_or(0);
    let lost = [
        ("OrderPlaced delivered to payments", payments),
        ("confirmations delivered", seen.confirmed),
        ("audit records delivered", seen.audited),
    ];
    let mut failures = Vec::new();
    for (what, n) in lost {
        if n < expected {
            failures.push(format!("lost: {what}: {n} of {expected}"));
        }
    }
    if relay_dead > 0 {
        failures.push(format!(
            "the relay dead-lettered {relay_dead} event(s): Kafka refused them {} times each; see why with `eventbus-relay dead` (the outbox's dead table), replay with `eventbus-relay replay`",
            eventbus::OutboxConfig::default().max_attempts
        ));
    }
    for (name, s) in CONSUMERS.iter().zip(&stats) {
        if s.dead_lettered() > 0 {
            failures.push(format!(
                "the consumer `{name}` dead-lettered {} event(s) after their last retry: their handler kept failing (the `tracing` warnings above name the event and the error; the records are on `<topic>.dlq`)",
                s.dead_lettered()
            ));
        }
    }
    if failures.is_empty() {
        println!("every order was placed, paid and confirmed; nothing lost");
    }
    failures
}
