use eventbus::store::{Aggregate, Apply};
use eventbus::{DomainEvent, Service};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "petstore", default)]
pub struct Petstore;

#[derive(Service)]
#[service(name = "payments")]
pub struct Payments;

/// An order was placed.
#[derive(DomainEvent, Serialize, Deserialize, Debug)]
#[event(aggregate = "order")]
pub struct OrderPlaced {
    #[event(aggregate_id)]
    pub order_id: u64,
}

/// The payments service's view of an order was paid: an event of another service.
#[derive(DomainEvent, Serialize, Deserialize, Debug)]
#[event(service = Payments, aggregate = "order")]
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

impl Apply<OrderPaid> for Order {
    fn on(&mut self, _: &OrderPaid) {}
}

fn main() {}
