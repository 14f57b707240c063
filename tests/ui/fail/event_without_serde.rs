use eventbus::{DomainEvent, EventBus, Service};

#[derive(Service)]
#[service(name = "petstore", default)]
pub struct Petstore;

/// An order was placed.
#[derive(DomainEvent)]
#[event(aggregate = "order")]
pub struct OrderPlaced {
    #[event(aggregate_id)]
    pub order_id: u64,
}

async fn run(bus: EventBus<Petstore>) {
    let _ = bus.publish_domain(&OrderPlaced { order_id: 1 }).await;
}

fn main() {}
