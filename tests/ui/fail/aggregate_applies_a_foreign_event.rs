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
#[aggregate(events(OrderPlaced))]
pub struct Order {
    adopted: bool,
}

impl Apply<OrderPlaced> for Order {
    fn on(&mut self, _: &OrderPlaced) {}
}

// Applying an event the aggregate does not list.
impl Apply<PetAdopted> for Order {
    fn on(&mut self, _: &PetAdopted) {
        self.adopted = true;
    }
}

impl Order {
    // A command emitting an event of another aggregate.
    pub fn adopt(&self, pet_id: u64) -> Vec<OrderEvent> {
        vec![Order::event(PetAdopted { pet_id })]
    }
}

fn main() {}
