//! Fixture events shared by the integration tests: one service per crate default, and one event of
//! each category.

use eventbus::{
    AuditEvent, DomainEvent, IntegrationEvent, NotificationEvent, Service, SystemEvent, Topic,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The petstore service, the crate's default.
#[derive(Service, Debug)]
#[service(name = "petstore", default)]
pub struct Petstore;

/// The payments service.
#[derive(Service, Debug)]
#[service(name = "payments")]
pub struct Payments;

/// An order was placed.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(aggregate = "order")]
pub struct OrderPlaced {
    /// The order.
    #[event(aggregate_id)]
    pub order_id: Uuid,
    /// What it costs.
    pub total_cents: u64,
}

impl OrderPlaced {
    /// `n` new orders costing 0, 1, 2, ... cents.
    pub fn numbered(n: u64) -> Vec<OrderPlaced> {
        (0..n)
            .map(|total_cents| OrderPlaced {
                order_id: Uuid::now_v7(),
                total_cents,
            })
            .collect()
    }
}

/// The per-aggregate topic of orders: every order event in one topic, in order per order id.
#[derive(Topic, Debug)]
#[topic(aggregate = "order")]
pub struct OrderTopic;

/// An order was shipped (routed per aggregate).
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(aggregate = "order", topic = OrderTopic)]
pub struct OrderShipped {
    /// The order.
    #[event(aggregate_id)]
    pub order_id: Uuid,
}

/// An order was cancelled (routed per aggregate).
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(aggregate = "order", topic = OrderTopic, version = 2)]
pub struct OrderCancelled {
    /// The order.
    #[event(aggregate_id)]
    pub order_id: Uuid,
    /// Why.
    pub reason: String,
}

/// A payment was captured (owned by payments).
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(service = Payments, aggregate = "payment")]
pub struct PaymentCaptured {
    /// The payment.
    #[event(aggregate_id)]
    pub payment_id: Uuid,
    /// The order it pays.
    pub order_id: Uuid,
}

/// Payments tells orders that an order is paid.
#[derive(IntegrationEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(source = Payments, target = "petstore")]
pub struct OrderPaid {
    /// The order; the key.
    #[event(key)]
    pub order_id: Uuid,
}

/// A user signed in.
#[derive(AuditEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(audit_category = "security")]
pub struct UserSignedIn {
    /// Who.
    #[event(actor)]
    pub user: String,
}

/// The service started.
#[derive(SystemEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ServiceStarted {
    /// Its version.
    pub build: String,
}

/// Tell a customer their order is confirmed.
#[derive(NotificationEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(channel = "email", kind = "order_confirmation")]
pub struct OrderConfirmationEmail {
    /// To whom.
    #[event(recipient)]
    pub email: String,
    /// Which order.
    pub order_id: Uuid,
}

/// A per-key counter ticked (the ordering tests' event): `seq` is the key's counter value after
/// this tick, so a consumer can check per-key order.
#[derive(SystemEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "eventbus.tests.ticks")]
pub struct Tick {
    /// The counter.
    #[event(key)]
    pub key: String,
    /// Its value after this tick.
    pub seq: u64,
    /// Which writer ticked it.
    pub writer: u32,
}

/// An event whose size the test chooses (the poison tests' event).
#[derive(SystemEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "eventbus.tests.blobs")]
pub struct Blob {
    /// The key.
    #[event(key)]
    pub key: String,
    /// Filler.
    pub data: String,
}

/// An event the dead-letter tests send alone to its topic (whose size limit they change).
#[derive(SystemEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "eventbus.tests.letters")]
pub struct Letter {
    /// The key.
    #[event(key)]
    pub key: String,
    /// Filler.
    pub data: String,
}

/// The payments service, generated from `schemas/payments.yaml` by `build.rs`.
pub mod payments_schema {
    eventbus::include_events!("payments");
}

/// A unit of work (the consumer tests' event).
#[derive(SystemEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "eventbus.tests.jobs")]
pub struct Job {
    /// The key: jobs of one key are handled in order.
    #[event(key)]
    pub key: String,
    /// Which test run.
    pub run: String,
    /// Its number.
    pub n: u64,
    /// A job the handler refuses until fixed.
    pub poison: bool,
}

/// A parcel to ship: the event of the tests of records written by other producers
/// (`tests/foreign_records.rs`), on a topic of its own.
#[derive(SystemEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "eventbus.tests.parcels")]
pub struct Parcel {
    /// The key: parcels of one key are handled in order.
    #[event(key)]
    pub key: String,
    /// Which test run.
    pub run: String,
    /// Its number.
    pub n: u64,
}

/// A parcel, version 2: the same CloudEvents type as [`Parcel`] with a field more.
#[derive(SystemEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "parcel", version = 2, topic = ParcelTopic)]
pub struct ParcelV2 {
    /// The key.
    #[event(key)]
    pub key: String,
    /// Which test run.
    pub run: String,
    /// Its number.
    pub n: u64,
    /// How urgent it is.
    pub priority: u8,
}

/// The README's Rust examples, compiled (and run where they can) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// `docs/outbox.md`'s examples.
#[cfg(doctest)]
#[doc = include_str!("../../docs/outbox.md")]
pub struct OutboxDocDoctests;

/// `docs/consumers.md`'s examples.
#[cfg(doctest)]
#[doc = include_str!("../../docs/consumers.md")]
pub struct ConsumersDocDoctests;

/// `docs/event-sourcing.md`'s examples.
#[cfg(doctest)]
#[doc = include_str!("../../docs/event-sourcing.md")]
pub struct EventSourcingDocDoctests;

/// `docs/schema.md`'s examples.
#[cfg(doctest)]
#[doc = include_str!("../../docs/schema.md")]
pub struct SchemaDocDoctests;
