//! The petstore: three services in one process, talking only through events.
//!
//! - **orders** places orders and publishes `OrderPlaced` (a domain event it owns);
//! - **payments** reacts to `OrderPlaced`, captures the payment (`PaymentCaptured`, its own
//!   domain event) and tells orders with an integration event (`OrderPaid`);
//! - **notifications** reacts to `OrderPaid` and sends a confirmation (`ConfirmationEmail`).
//!
//! Audit and system events go alongside. The run prints a timeline, then a summary per topic, and
//! exits non-zero if any event is missing.
//!
//! This version runs on the Testing mode (in memory). The outbox, the relay and Kafka come with
//! the Transactional and Direct modes.

use std::process::ExitCode;
use std::time::Instant;

use eventbus::{
    AuditEvent, DomainEvent, EventBus, EventContext, HandlerError, IntegrationEvent,
    NotificationEvent, Service, SystemEvent,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The orders service (the crate's default service).
#[derive(Service)]
#[service(name = "orders", default)]
struct Orders;

/// The payments service.
#[derive(Service)]
#[service(name = "payments")]
struct Payments;

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

/// A payment for an order was captured.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(service = Payments, aggregate = "payment")]
struct PaymentCaptured {
    #[event(aggregate_id)]
    payment_id: Uuid,
    order_id: Uuid,
    amount_cents: u64,
}

/// Payments tells orders that an order is paid.
#[derive(IntegrationEvent, Serialize, Deserialize, Debug, Clone)]
#[event(source = Payments, target = "orders")]
struct OrderPaid {
    #[event(key)]
    order_id: Uuid,
    customer: String,
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
}

/// A service started.
#[derive(SystemEvent, Serialize, Deserialize, Debug, Clone)]
struct ServiceStarted {
    service: String,
}

const CUSTOMERS: [(&str, &str, u64); 4] = [
    ("ada@example.com", "parrot", 12_000),
    ("grace@example.com", "tortoise", 8_500),
    ("linus@example.com", "penguin", 20_000),
    ("ken@example.com", "gopher", 4_200),
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let started = Instant::now();
    let orders = EventBus::testing(Orders);
    let payments = orders.for_service(Payments);
    let notifications = orders.for_service(Notifications);
    println!(
        "petstore: mode {:?}, three services on one bus\n",
        orders.mode()
    );

    if let Err(e) = wire(&payments, &notifications).await {
        eprintln!("petstore: cannot subscribe: {e}");
        return ExitCode::FAILURE;
    }

    for service in ["orders", "payments", "notifications"] {
        let event = ServiceStarted {
            service: service.to_owned(),
        };
        if let Err(e) = orders.publish_system(&event).await {
            eprintln!("petstore: cannot publish {event:?}: {e}");
            return ExitCode::FAILURE;
        }
    }

    for (customer, pet, total_cents) in CUSTOMERS {
        let placed = OrderPlaced {
            order_id: Uuid::now_v7(),
            customer: customer.to_owned(),
            pet: pet.to_owned(),
            total_cents,
        };
        println!(
            "{:>8} orders        placed {} for {customer}",
            ms(started),
            placed.pet
        );
        let audited = OrderAudited {
            customer: customer.to_owned(),
            action: "place_order".into(),
        };
        let result = async {
            orders.publish_domain(&placed).await?;
            orders.publish_audit(&audited).await
        };
        if let Err(e) = result.await {
            eprintln!("petstore: cannot publish order events: {e}");
            return ExitCode::FAILURE;
        }
    }

    summary(&orders, started)
}

/// Subscribes payments to orders, and notifications to payments.
async fn wire(
    payments: &EventBus<Payments>,
    notifications: &EventBus<Notifications>,
) -> Result<(), eventbus::SubscribeError> {
    let bus = payments.clone();
    payments
        .subscribe::<OrderPlacedTopic>()
        .on::<OrderPlaced, _>(move |placed: OrderPlaced| {
            let bus = bus.clone();
            async move {
                let captured = PaymentCaptured {
                    payment_id: Uuid::now_v7(),
                    order_id: placed.order_id,
                    amount_cents: placed.total_cents,
                };
                bus.publish_domain(&captured).await?;
                bus.publish_integration(&OrderPaid {
                    order_id: placed.order_id,
                    customer: placed.customer.clone(),
                })
                .await?;
                println!(
                    "{:>8} payments      captured {} cents",
                    "", captured.amount_cents
                );
                Ok::<(), HandlerError>(())
            }
        })
        .start()
        .await?;

    let bus = notifications.clone();
    notifications
        .subscribe::<OrderPaidTopic>()
        .on::<OrderPaid, _>(move |paid: OrderPaid| {
            let bus = bus.clone();
            async move {
                let email = ConfirmationEmail {
                    customer: paid.customer,
                    order_id: paid.order_id,
                };
                bus.with_context(
                    EventContext::default().with_correlation_id(paid.order_id.to_string()),
                )
                .publish_notification(&email)
                .await?;
                println!("{:>8} notifications emailed {}", "", email.customer);
                Ok::<(), HandlerError>(())
            }
        })
        .start()
        .await?;
    Ok(())
}

fn summary(bus: &EventBus<Orders>, started: Instant) -> ExitCode {
    let recorded = bus.recorded();
    let mut topics: Vec<(String, usize)> = Vec::new();
    for envelope in recorded.envelopes() {
        match topics.iter_mut().find(|(t, _)| *t == envelope.topic) {
            Some((_, n)) => *n += 1,
            None => topics.push((envelope.topic.clone(), 1)),
        }
    }
    println!("\nevents per topic:");
    for (topic, n) in &topics {
        println!("  {n:>4}  {topic}");
    }
    let orders = CUSTOMERS.len();
    let expected = [
        ("OrderPlaced", recorded.count::<OrderPlaced>()),
        ("PaymentCaptured", recorded.count::<PaymentCaptured>()),
        ("OrderPaid", recorded.count::<OrderPaid>()),
        ("ConfirmationEmail", recorded.count::<ConfirmationEmail>()),
        ("OrderAudited", recorded.count::<OrderAudited>()),
    ];
    let failures = recorded.failures();
    println!(
        "\ndelivered {} events in {}, handler failures: {}",
        recorded.envelopes().len(),
        ms(started),
        failures.len()
    );
    let lost: Vec<_> = expected.iter().filter(|(_, n)| *n != orders).collect();
    if lost.is_empty() && failures.is_empty() {
        println!("every order was placed, paid and confirmed");
        ExitCode::SUCCESS
    } else {
        for (name, n) in lost {
            eprintln!("LOST: expected {orders} {name} events, saw {n}");
        }
        for f in failures {
            eprintln!("FAILED: {} in {}: {}", f.event_type, f.handler, f.error);
        }
        ExitCode::FAILURE
    }
}

fn ms(since: Instant) -> String {
    format!("{:.1}ms", since.elapsed().as_secs_f64() * 1000.0)
}
