//! Derive macros for [eventbus](https://docs.rs/eventbus) events. Use them through `eventbus`
//! (feature `derive`, on by default): `#[derive(eventbus::DomainEvent)]`.
//!
//! This crate is a thin shell: parsing, validation and expansion live in `eventbus-codegen`, so a
//! hand-written event and one generated from a YAML schema expand identically.

use eventbus_codegen::Category;
use eventbus_codegen::derive::{expand_aggregate, expand_event, expand_service, expand_topic};
use proc_macro::TokenStream;

/// Declares a domain event: `#[event(aggregate = "order")]` and an `#[event(aggregate_id)]` field.
/// Topic `domain.{service}.{aggregate}.{event}`; key: the aggregate id.
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn domain_event(input: TokenStream) -> TokenStream {
    expand_event(Category::Domain, input.into()).into()
}

/// Declares an integration event: `#[event(target = "orders")]` and an `#[event(key)]` field.
/// Topic `integration.{source}.{target}.{event}`.
#[proc_macro_derive(IntegrationEvent, attributes(event))]
pub fn integration_event(input: TokenStream) -> TokenStream {
    expand_event(Category::Integration, input.into()).into()
}

/// Declares an audit event: `#[event(audit_category = "security")]` and an `#[event(actor)]` (or
/// `#[event(key)]`) field. Topic `audit.{service}.{audit_category}`.
#[proc_macro_derive(AuditEvent, attributes(event))]
pub fn audit_event(input: TokenStream) -> TokenStream {
    expand_event(Category::Audit, input.into()).into()
}

/// Declares a system event. Topic `system.{service}.{event}`; key: an `#[event(key)]` field or none.
#[proc_macro_derive(SystemEvent, attributes(event))]
pub fn system_event(input: TokenStream) -> TokenStream {
    expand_event(Category::System, input.into()).into()
}

/// Declares a notification event: `#[event(channel = "email", kind = "order_confirmation")]` and an
/// `#[event(recipient)]` field. Topic `notifications.{channel}.{kind}`.
#[proc_macro_derive(NotificationEvent, attributes(event))]
pub fn notification_event(input: TokenStream) -> TokenStream {
    expand_event(Category::Notification, input.into()).into()
}

/// Declares a service: `#[service(name = "petstore", default)]` on a unit struct.
#[proc_macro_derive(Service, attributes(service))]
pub fn service(input: TokenStream) -> TokenStream {
    expand_service(input.into()).into()
}

/// Declares a shared topic: `#[topic(aggregate = "order")]` (per-aggregate routing) or
/// `#[topic(name = "...")]`, on a unit struct.
#[proc_macro_derive(Topic, attributes(topic))]
pub fn topic(input: TokenStream) -> TokenStream {
    expand_topic(input.into()).into()
}

/// Declares an event-sourced aggregate (`eventbus::store`, features `postgres`/`sqlite`):
/// `#[aggregate(events(OrderPlaced, OrderPaid))]` on a struct with `Default`; also `service`,
/// `name` (the events' `aggregate`), `upcast(OldVersion => Event)`, `event_enum`, `derive(..)`,
/// `snapshot(every = 100, version = 1)` (snapshots, with `Serialize`/`Deserialize` on the state).
/// Generates the enum of its events (`OrderEvent`) and checks each is a domain event of the
/// aggregate's service and of that aggregate.
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn aggregate(input: TokenStream) -> TokenStream {
    expand_aggregate(input.into()).into()
}
