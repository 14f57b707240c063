use eventbus::{DomainEvent, Service};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "petstore", default)]
pub struct Petstore;

/// Something happened to an order.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(aggregate = "order")]
pub enum OrderEvent {
    Placed { order_id: u64 },
    Cancelled { order_id: u64 },
}

fn main() {}
