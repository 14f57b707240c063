use eventbus::{DomainEvent, Service};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "petstore", default)]
pub struct Petstore;

/// An order was placed.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(aggregate = "order")]
pub struct OrderPlaced {
    #[event(aggregate_id)]
    pub order_id: u64,
}

mod again {
    use super::*;

    /// An order was placed, declared a second time under another Rust name.
    #[derive(DomainEvent, Serialize, Deserialize)]
    #[event(aggregate = "order", name = "order_placed")]
    pub struct OrderPlacedAgain {
        #[event(aggregate_id)]
        pub order_id: u64,
    }
}

fn main() {}
