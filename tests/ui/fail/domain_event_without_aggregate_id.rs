use eventbus::{DomainEvent, EventBus, Service};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "petstore", default)]
pub struct Petstore;

/// An order was placed.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(aggregate = "order")]
pub struct OrderPlaced {
    pub order_id: u64,
}

async fn run(bus: EventBus<Petstore>) {
    // No cascade: the bus still accepts the event; the only error is the declaration's.
    let _ = bus.publish_domain(&OrderPlaced { order_id: 1 }).await;
}

fn main() {}
