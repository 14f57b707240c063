use eventbus::store::{Aggregate, Apply};
use eventbus::{DomainEvent, Service};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "petstore", default)]
pub struct Petstore;

/// An order was placed (version 2).
#[derive(DomainEvent, Serialize, Deserialize, Debug)]
#[event(aggregate = "order", version = 2)]
pub struct OrderPlaced {
    #[event(aggregate_id)]
    pub order_id: u64,
    pub total_cents: u64,
}

/// An order was paid: not a version of `OrderPlaced`.
#[derive(DomainEvent, Serialize, Deserialize, Debug)]
#[event(aggregate = "order")]
pub struct OrderPaid {
    #[event(aggregate_id)]
    pub order_id: u64,
}

impl From<OrderPaid> for OrderPlaced {
    fn from(paid: OrderPaid) -> Self {
        OrderPlaced { order_id: paid.order_id, total_cents: 0 }
    }
}

#[derive(Aggregate, Default)]
#[aggregate(events(OrderPlaced), upcast(OrderPaid => OrderPlaced))]
pub struct Order;

impl Apply<OrderPlaced> for Order {
    fn on(&mut self, _: &OrderPlaced) {}
}

fn main() {}
