use eventbus::{DomainEvent, Service};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "petstore", default)]
pub struct Petstore;

/// An order line was added.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(aggregate = "Order Lines")]
pub struct LineAdded {
    #[event(aggregate_id)]
    pub order_id: u64,
}

fn main() {}
