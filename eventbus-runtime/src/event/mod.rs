//! The traits generated code implements: events, their categories, services and topics.
//!
//! Routing lives in these types. A category method (`publish_audit`) accepts only its category, a
//! bus publishes only the domain events its service owns, and a publisher or subscription bound to
//! a topic type accepts only the events routed to it: misrouting is a compile error whose message
//! names the event, what it is, and what to do instead.

use serde::Serialize;
use serde::de::DeserializeOwned;

mod accepts;
mod key;
pub mod routing;

pub use accepts::*;

pub use key::PartitionKey;
pub(crate) use key::fnv1a;

pub use eventbus_core::Category;

/// Marker types for the categories, used as [`Event::Category`].
pub mod category {
    use super::Category;

    /// Implemented by the five category markers.
    pub trait CategoryMarker: Send + Sync + 'static {
        /// The category this marker stands for.
        const CATEGORY: Category;
    }

    macro_rules! markers {
        ($($name:ident),*) => {$(
            #[doc = concat!("The `", stringify!($name), "` category.")]
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
            pub enum $name {}
            impl CategoryMarker for $name {
                const CATEGORY: Category = Category::$name;
            }
        )*};
    }
    markers!(Domain, Integration, Audit, System, Notification);
}

/// A service: the owner of domain events and the source of the events it publishes.
///
/// Declare one with `#[derive(Service)]` on a unit struct; `#[service(default)]` at the crate root
/// makes it the service of every event in the crate that does not name another.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an eventbus service",
    label = "not declared as a service",
    note = "declare it with `#[derive(eventbus::Service)] #[service(name = \"...\")] pub struct {Self};`"
)]
pub trait Service: Send + Sync + 'static {
    /// The service's name: a topic segment (`[a-z0-9_-]+`).
    const NAME: &'static str;
}

/// A Kafka topic, as a type. Each event is routed to exactly one topic ([`Event::Topic`]).
///
/// The derives declare one per event (`OrderPlacedTopic`); `#[derive(Topic)]` declares one shared
/// by several events (per-aggregate routing).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an eventbus topic",
    label = "not a topic type",
    note = "topics are the `<Event>Topic` types the event derives declare, or unit structs with `#[derive(eventbus::Topic)]`"
)]
pub trait Topic: Send + Sync + 'static {
    /// The topic's name on the broker.
    const NAME: &'static str;
}

/// An event: a typed payload with a name, a version, a category, a topic and a partition key.
///
/// Implemented by the derives (`#[derive(DomainEvent)]`, ...); do not implement it by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an eventbus event",
    label = "not an event",
    note = "declare it with one of the event derives: `#[derive(DomainEvent)]`, `IntegrationEvent`, `AuditEvent`, `SystemEvent` or `NotificationEvent`"
)]
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The category marker ([`category::Domain`], ...).
    type Category: category::CategoryMarker;
    /// The owning service (for integration events, the source service).
    type Service: Service;
    /// The topic this event is published to.
    type Topic: Topic;
    /// The snake_case name on the wire.
    const NAME: &'static str;
    /// The CloudEvents `type`: `{service}.{aggregate}.{name}` for domain events,
    /// `{service}.{name}` for the others.
    const EVENT_TYPE: &'static str;
    /// The schema version, from 1.
    const VERSION: u32;
    /// What the event means (its doc comment).
    const DESCRIPTION: &'static str;
    /// The topic's name (`<Self::Topic as Topic>::NAME`).
    const TOPIC: &'static str;
    /// The statement that writes this event to the default outbox table, PostgreSQL dialect.
    ///
    /// Binds: `$1` event id (uuid), `$2` partition key (text, nullable), `$3` headers (jsonb),
    /// `$4` payload (bytea), `$5` shard (integer).
    const OUTBOX_INSERT_POSTGRES: &'static str;
    /// The same statement in the SQLite dialect (`?1` … `?5`).
    const OUTBOX_INSERT_SQLITE: &'static str;

    /// The Rust name of the field the partition key comes from (`#[event(aggregate_id)]`,
    /// `#[event(key)]`, `actor`, `recipient`), for messages; `None` when the event has no key.
    const KEY_FIELD: Option<&'static str> = None;

    /// The partition key: records with one key keep their order. An empty key is refused at
    /// publish ([`crate::PublishError::EmptyKey`]); an `Option` key field set to `None` sends
    /// the event without a key.
    fn partition_key(&self) -> Option<String>;

    /// The CloudEvents `subject`: the aggregate id for domain events.
    fn subject(&self) -> Option<String> {
        None
    }

    /// The category as a value.
    fn category() -> Category {
        <Self::Category as category::CategoryMarker>::CATEGORY
    }
}

/// A domain event: `domain.{service}.{aggregate}.{event}`, keyed by the aggregate id.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a domain event",
    label = "not a domain event",
    note = "declare `{Self}` with `#[derive(DomainEvent)]`, or use the API of its own category"
)]
pub trait DomainEvent: Event {
    /// The aggregate type's name.
    const AGGREGATE: &'static str;
}

/// An integration event: `integration.{source}.{target}.{event}`, keyed by its key field.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an integration event",
    label = "not an integration event",
    note = "declare `{Self}` with `#[derive(IntegrationEvent)]`, or use the API of its own category"
)]
pub trait IntegrationEvent: Event {
    /// The target service's name.
    const TARGET: &'static str;
}

/// An audit event: `audit.{service}.{audit_category}`, keyed by its key or actor.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an audit event",
    label = "not an audit event",
    note = "declare `{Self}` with `#[derive(AuditEvent)]`, or use the API of its own category"
)]
pub trait AuditEvent: Event {
    /// The audit category.
    const AUDIT_CATEGORY: &'static str;
}

/// A system event: `system.{service}.{event}`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a system event",
    label = "not a system event",
    note = "declare `{Self}` with `#[derive(SystemEvent)]`, or use the API of its own category"
)]
pub trait SystemEvent: Event {}

/// A notification event: `notifications.{channel}.{kind}`, keyed by the recipient.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a notification event",
    label = "not a notification event",
    note = "declare `{Self}` with `#[derive(NotificationEvent)]`, or use the API of its own category"
)]
pub trait NotificationEvent: Event {
    /// The delivery channel.
    const CHANNEL: &'static str;
    /// The notification type.
    const KIND: &'static str;
}

/// `E: OwnedBy<S>`: the bus of service `S` may publish `E`.
///
/// Every event is owned by one service — its `service` (the crate's default service when
/// omitted), or, for an integration event, its `source` — and only that service's bus
/// publishes it: `ce_source` always names the service that declared the event, so consumers
/// and the contracts can trust it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is an event of another service, so the bus of `{S}` cannot publish it",
    label = "owned by another service",
    note = "a service publishes only its own events (`ce_source` names the owner): if `{S}` owns it, declare it with `#[event(service = {S})]` (an integration event: `#[event(source = {S})]`); to tell other services what happened, declare an event of `{S}` (an integration event, `#[derive(IntegrationEvent)]`) and publish that"
)]
pub trait OwnedBy<S: Service> {}

/// `E: DomainEventOf<S, A>`: `E` is a domain event of service `S`, so aggregate `A` of `S` may be
/// rebuilt from it (`eventbus::store`). Implemented by `#[derive(DomainEvent)]` for the event's
/// own service, for every aggregate type: `#[derive(Aggregate)]` requires it of each event it
/// lists, and checks the event's `aggregate` at compile time.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a domain event of `{S}`, so the aggregate `{A}` of `{S}` cannot be rebuilt from it",
    label = "not a domain event of `{S}`",
    note = "an aggregate applies and emits only domain events of its own service (declared with `#[derive(DomainEvent)]` and `#[event(service = {S})]`, or the crate's default service)",
    note = "to react to another service's event, consume it (`bus.consumer(..)`) and run a command of `{A}` that emits an event of `{S}`"
)]
pub trait DomainEventOf<S: Service, A: ?Sized> {}

/// `E: RoutedTo<T>`: event `E` is published to topic `T`. Implemented by the derives, for every
/// topic type, where [`RoutedHere`] holds: so a wrong topic is reported naming the event's own.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not routed to the topic `{T}`",
    label = "`{Self}` is published to another topic",
    note = "an event arrives only on the topic it is routed to: bind the publisher or subscription to that topic, or route the event to `{T}` with `#[event(topic = {T})]`"
)]
pub trait RoutedTo<T: Topic>: Event {}

/// `Own: RoutedHere<T, E>`: `Own`, the topic event `E` is routed to, is `T`. The derives bound
/// `E: RoutedTo<T>` by it, so a publisher or subscription bound to another topic is told which
/// topic the event is on.
#[diagnostic::on_unimplemented(
    message = "`{E}` is routed to the topic `{Self}`, not to `{T}`",
    label = "`{E}` is published to `{Self}`",
    note = "an event arrives only on the topic it is routed to: bind the publisher or subscription to `{Self}`, or route `{E}` to `{T}` with `#[event(topic = {T})]`"
)]
pub trait RoutedHere<T, E> {}
impl<T, E> RoutedHere<T, E> for T {}
