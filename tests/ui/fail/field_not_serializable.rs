use eventbus::{DomainEvent, Service};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "petstore", default)]
pub struct Petstore;

pub struct CardNumber(String);

/// An order was paid.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(aggregate = "order")]
pub struct OrderPaid {
    #[event(aggregate_id)]
    pub order_id: u64,
    pub card: CardNumber,
}

fn main() {}
