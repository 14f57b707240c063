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

/// A pet was adopted: an event of the aggregate `pet`.
#[derive(DomainEvent, Serialize, Deserialize, Debug)]
#[event(aggregate = "pet")]
pub struct PetAdopted {
    #[event(aggregate_id)]
    pub pet_id: u64,
}

#[derive(Aggregate, Default)]
#[aggregate(events(OrderPlaced, PetAdopted))]
pub struct Order;

impl Apply<OrderPlaced> for Order {
    fn on(&mut self, _: &OrderPlaced) {}
}

impl Apply<PetAdopted> for Order {
    fn on(&mut self, _: &PetAdopted) {}
}

fn main() {}
