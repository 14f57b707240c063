//! The five consumer groups of the run, and what they saw.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventbus::store::EventStore;
use eventbus::{EventBus, EventContext, HandlerError};
use uuid::Uuid;

use crate::orders::{Order, OrderAudited, OrderAuditedTopic, OrderPlaced, OrderPlacedTopic};
use crate::payments::{Currency, Money, OrderPaid, OrderPaidTopic, PaymentCaptured, Payments};
use crate::{ConfirmationEmail, ConfirmationEmailTopic, Notifications, Orders, at};

/// What the consumers saw: deliveries per topic and commit-to-delivery latencies.
#[derive(Default)]
pub(crate) struct Observed {
    pub(crate) committed: HashMap<Uuid, Instant>,
    pub(crate) latencies_ms: Vec<f64>,
    pub(crate) per_topic: BTreeMap<String, u64>,
    pub(crate) confirmed: u64,
    pub(crate) audited: u64,
    pub(crate) paid: u64,
}

pub(crate) type Shared = Arc<Mutex<Observed>>;

pub(crate) fn lock(seen: &Shared) -> std::sync::MutexGuard<'_, Observed> {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn count(seen: &Shared, topic: &str) {
    *lock(seen).per_topic.entry(topic.to_owned()).or_default() += 1;
}

/// The context of events caused by `order_id` in this run.
pub(crate) fn context(order_id: Uuid, run: &str) -> EventContext {
    EventContext::default()
        .with_correlation_id(order_id.to_string())
        .with_tag(run)
}

/// The consumer groups, in the order `wire` starts them.
pub(crate) const CONSUMERS: [&str; 5] = [
    "petstore-orders",
    "petstore-payments",
    "petstore-notifications",
    "petstore-mailer",
    "petstore-audit-log",
];

/// A consumer's state in words.
pub(crate) fn describe(health: eventbus::consumer::ConsumerHealth) -> String {
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

/// Subscribes payments to orders, notifications to both, a mailer and an audit log.
pub(crate) async fn wire(
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
