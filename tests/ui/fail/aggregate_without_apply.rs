use eventbus::store::{Aggregate, Apply};
use eventbus::{DomainEvent, Service};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "petstore", default)]
pub struct Petstore;

/// An order was placed.
#[derive(DomainEvent, Serialize, Deserialize, Debug)]
#[event(aggregate = "order")]
pub struct OrderPlaced {
    #[event(aggregate_id)]
    pub order_id: u64,
}

/// An order was paid.
#[derive(DomainEvent, Serialize, Deserialize, Debug)]
#[event(aggregate = "order")]
pub struct OrderPaid {
    #[event(aggregate_id)]
    pub order_id: u64,
}

#[derive(Aggregate, Default)]
#[aggregate(events(OrderPlaced, OrderPaid))]
pub struct Order;

impl Apply<OrderPlaced> for Order {
    fn on(&mut self, _: &OrderPlaced) {}
}

fn main() {}
