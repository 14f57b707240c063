use eventbus::{DomainEvent, Service};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "petstore", default)]
pub struct Petstore;

/// An order was placed.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(aggregate = "order", topic = "segment_of_thirty_characters_.segment_of_thirty_characters_.segment_of_thirty_characters_.segment_of_thirty_characters_.segment_of_thirty_characters_.segment_of_thirty_characters_.segment_of_thirty_characters_.segment_of_thirty_characters_.segment_of_thirty_characters_")]
pub struct OrderPlaced {
    #[event(aggregate_id)]
    pub order_id: u64,
}

fn main() {}
