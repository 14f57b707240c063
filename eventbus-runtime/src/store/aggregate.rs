//! Aggregates: the traits `#[derive(Aggregate)]` implements, and what its expansion calls.
//!
//! An aggregate is rebuilt from exactly the domain events listed in its
//! `#[aggregate(events(...))]`: the derive generates their enum ([`Aggregate::Event`]), checks at
//! compile time that each is a domain event of the aggregate's service and of that aggregate, and
//! implements [`EventOf`] for each, so applying or emitting any other event does not compile.

use crate::envelope::{Envelope, EventContext};
use crate::error::PublishError;
use crate::event::{Event, Service};
use crate::outbox::Generated;

/// An event-sourced aggregate: a state rebuilt by applying its events in stream order, from
/// [`Default`].
///
/// Implement it with `#[derive(Aggregate)]`:
///
/// ```
/// use eventbus::store::{Aggregate, Apply};
/// use eventbus::{DomainEvent, Service};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Service)]
/// #[service(name = "petstore", default)]
/// pub struct Petstore;
///
/// /// An order was placed.
/// #[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// #[event(aggregate = "order")]
/// pub struct OrderPlaced {
///     #[event(aggregate_id)]
///     pub order_id: uuid::Uuid,
///     pub total_cents: u64,
/// }
///
/// /// An order was paid.
/// #[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// #[event(aggregate = "order")]
/// pub struct OrderPaid {
///     #[event(aggregate_id)]
///     pub order_id: uuid::Uuid,
/// }
///
/// #[derive(Aggregate, Default, Debug)]
/// #[aggregate(events(OrderPlaced, OrderPaid))]
/// pub struct Order {
///     total_cents: u64,
///     paid: bool,
/// }
///
/// impl Apply<OrderPlaced> for Order {
///     fn on(&mut self, event: &OrderPlaced) {
///         self.total_cents = event.total_cents;
///     }
/// }
///
/// impl Apply<OrderPaid> for Order {
///     fn on(&mut self, _: &OrderPaid) {
///         self.paid = true;
///     }
/// }
///
/// // A command: a plain method that returns events.
/// impl Order {
///     pub fn pay(&self, order_id: uuid::Uuid) -> Vec<OrderEvent> {
///         if self.paid { vec![] } else { vec![Order::event(OrderPaid { order_id })] }
///     }
/// }
///
/// fn main() {
///     let id = uuid::Uuid::now_v7();
///     let mut order = Order::default();
///     order.apply(&Order::event(OrderPlaced { order_id: id, total_cents: 4_200 }));
///     for event in order.pay(id) {
///         order.apply(&event);
///     }
///     assert!(order.paid);
///     assert_eq!(Order::TYPE, "order");
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an aggregate",
    label = "not an aggregate",
    note = "declare it with `#[derive(eventbus::store::Aggregate, Default)] #[aggregate(events(...))]`, listing the domain events it is rebuilt from"
)]
pub trait Aggregate: Default + Send + Sync + 'static {
    /// The service whose domain events rebuild it.
    type Service: Service;
    /// The aggregate type's name: its events' `DomainEvent::AGGREGATE`, the store's `stream_type`.
    const TYPE: &'static str;
    /// Its events: the enum `#[derive(Aggregate)]` generates, one variant per listed event.
    type Event: AggregateEvent<Service = Self::Service>;

    /// Changes the state as `event` says. Never fails: an event is a fact; a command decides.
    fn apply(&mut self, event: &Self::Event);

    /// Whether and how the store snapshots it: `None` (the default) never;
    /// `#[aggregate(snapshot(every = 100, version = 1))]` sets it (and needs `Serialize` and
    /// `Deserialize` on the aggregate).
    const SNAPSHOT: Option<SnapshotPolicy> = None;

    /// The state as a snapshot's payload (JSON). Implemented by `#[aggregate(snapshot(..))]`.
    #[doc(hidden)]
    fn __snapshot(&self) -> Option<Result<Vec<u8>, serde_json::Error>> {
        None
    }

    /// The state from a snapshot's payload. Implemented by `#[aggregate(snapshot(..))]`.
    #[doc(hidden)]
    fn __restore(payload: &[u8]) -> Option<Result<Self, serde_json::Error>>
    where
        Self: Sized,
    {
        let _ = payload;
        None
    }

    /// `event` as one of this aggregate's events: what a command returns. Refuses, at compile
    /// time, an event of another aggregate or service.
    fn event<E: EventOf<Self>>(event: E) -> Self::Event
    where
        Self: Sized,
    {
        event.into_event()
    }
}

/// When the store snapshots an aggregate: `#[aggregate(snapshot(every = 100, version = 1))]`.
///
/// An append whose events take the stream across a multiple of `every` (100, 200, …) also writes
/// the state at the new version, in the same transaction; `load` starts from the snapshot when its
/// `version` is the aggregate's, and applies the events after it. Bump `version` whenever the
/// state's serialized form or the meaning of `apply` changes: snapshots of another version are
/// ignored (the aggregate is rebuilt from its events) and replaced by the next one taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnapshotPolicy {
    /// Snapshot at every multiple of this many events (at least 1).
    pub every: u64,
    /// The snapshot schema version.
    pub version: u32,
}

/// A snapshot's payload: the state as JSON.
#[doc(hidden)]
pub fn snapshot_encode<A: serde::Serialize>(
    aggregate: &A,
) -> Option<Result<Vec<u8>, serde_json::Error>> {
    Some(serde_json::to_vec(aggregate))
}

/// The state from a snapshot's payload.
#[doc(hidden)]
pub fn snapshot_decode<A: serde::de::DeserializeOwned>(
    payload: &[u8],
) -> Option<Result<A, serde_json::Error>> {
    Some(serde_json::from_slice(payload))
}

/// `A: Apply<E>`: aggregate `A` changes its state on event `E`. `#[derive(Aggregate)]`'s `apply`
/// calls it for each event it lists.
#[diagnostic::on_unimplemented(
    message = "the aggregate `{Self}` does not say how it applies `{E}`",
    label = "`{E}` is listed in `#[aggregate(events(...))]` of `{Self}`",
    note = "implement it: `impl eventbus::store::Apply<{E}> for {Self} {{ fn on(&mut self, event: &{E}) {{ ... }} }}`"
)]
pub trait Apply<E: EventOf<Self>>: Aggregate {
    /// Changes the state as `event` says.
    fn on(&mut self, event: &E);
}

/// `E: EventOf<A>`: `E` is one of the events aggregate `A` lists (`#[aggregate(events(...))]`).
/// Implemented by `#[derive(Aggregate)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event of the aggregate `{A}`",
    label = "not one of the events `{A}` is rebuilt from",
    note = "an aggregate applies and emits exactly the events listed in its `#[aggregate(events(...))]`: if `{Self}` is a domain event of the same service and aggregate, list it there; otherwise emit an event of `{A}` instead",
    note = "to react to an event of another aggregate or service, consume it and run a command of `{A}`"
)]
pub trait EventOf<A: Aggregate>: Event {
    /// The event as a variant of `A::Event`.
    fn into_event(self) -> A::Event;
}

/// The events of one aggregate, as one type: the enum `#[derive(Aggregate)]` generates. What the
/// event store appends and decodes.
pub trait AggregateEvent: std::fmt::Debug + Send + Sync + Sized + 'static {
    /// The service whose domain events these are.
    type Service: Service;

    /// The CloudEvents type of this variant's event.
    fn event_type(&self) -> &'static str;

    /// The schema version of this variant's event.
    fn schema_version(&self) -> u32;

    /// The aggregate id (`#[event(aggregate_id)]`), as the stream id and `ce_subject`.
    fn stream_id(&self) -> Option<String>;

    /// The envelope (a new id, the time, `context`) and the outbox statement of this event.
    #[doc(hidden)]
    fn __typed(&self, context: &EventContext) -> Result<Typed, PublishError>;

    /// Decodes a stored event of `event_type` in `schema_version`: a listed event in its own
    /// version, or an older version declared with `upcast(Old => New)`, converted. `None` when
    /// the aggregate knows no such type and version.
    #[doc(hidden)]
    fn __decode(
        event_type: &str,
        schema_version: u32,
        payload: &[u8],
    ) -> Option<Result<Self, serde_json::Error>>;
}

/// An event's envelope with the outbox statement of its type.
#[doc(hidden)]
#[derive(Debug)]
pub struct Typed {
    pub(crate) envelope: Envelope,
    pub(crate) generated: Generated,
}

/// The envelope of `event` (what `EventBus::enqueue` builds) and its type's outbox statement.
#[doc(hidden)]
pub fn typed<E: Event>(event: &E, context: &EventContext) -> Result<Typed, PublishError> {
    let envelope = Envelope::new(event, context).and_then(crate::bus::conform::typed::<E>)?;
    Ok(Typed {
        envelope,
        generated: Generated::of::<E>(),
    })
}

/// Decodes a stored payload as an `E`.
#[doc(hidden)]
pub fn decode<E: Event>(payload: &[u8]) -> Result<E, serde_json::Error> {
    serde_json::from_slice(payload)
}

/// Fails to compile unless `E` is a domain event of `S` (the message names aggregate `A`).
#[doc(hidden)]
pub const fn assert_domain_event_of<S, A, E>()
where
    S: Service,
    E: crate::event::DomainEventOf<S, A>,
{
}
