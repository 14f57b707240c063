//! An aggregate with an upcast, commands returning events, and `apply`.
use eventbus::store::{Aggregate, Apply};
use eventbus::{DomainEvent, Service};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "petstore", default)]
pub struct Petstore;

/// An order was placed.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(aggregate = "order", version = 2)]
pub struct OrderPlaced {
    #[event(aggregate_id)]
    pub order_id: u64,
    pub total_cents: u64,
}

/// An order was placed, as first stored.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(aggregate = "order", name = "order_placed", version = 1)]
pub struct OrderPlacedV1 {
    #[event(aggregate_id)]
    pub order_id: u64,
}

impl From<OrderPlacedV1> for OrderPlaced {
    fn from(v1: OrderPlacedV1) -> Self {
        OrderPlaced { order_id: v1.order_id, total_cents: 0 }
    }
}

/// An order was cancelled.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(aggregate = "order")]
pub struct OrderCancelled {
    #[event(aggregate_id)]
    pub order_id: u64,
}

#[derive(Aggregate, Default, Debug)]
#[aggregate(
    events(OrderPlaced, OrderCancelled),
    upcast(OrderPlacedV1 => OrderPlaced),
    event_enum = OrderEvents,
    derive(Clone, PartialEq)
)]
pub struct Order {
    id: u64,
    cancelled: bool,
}

impl Apply<OrderPlaced> for Order {
    fn on(&mut self, event: &OrderPlaced) {
        self.id = event.order_id;
    }
}

impl Apply<OrderCancelled> for Order {
    fn on(&mut self, _: &OrderCancelled) {
        self.cancelled = true;
    }
}

impl Order {
    fn cancel(&self) -> Vec<OrderEvents> {
        if self.cancelled { vec![] } else { vec![OrderCancelled { order_id: self.id }.into()] }
    }
}

fn main() {
    use eventbus::store::AggregateEvent;
    let mut order = Order::default();
    order.apply(&Order::event(OrderPlaced { order_id: 7, total_cents: 1 }));
    let events = order.cancel();
    assert_eq!(events[0].event_type(), "petstore.order.order_cancelled");
    assert_eq!(events[0].stream_id().as_deref(), Some("7"));
    for event in &events {
        order.apply(event);
    }
    assert!(order.cancelled);
    assert_eq!(Order::TYPE, "order");
}
