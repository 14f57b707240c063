use eventbus::{DomainEvent, EventBus, Service};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "petstore", default)]
pub struct Petstore;

#[derive(Service)]
#[service(name = "payments")]
pub struct Payments;

/// A payment was captured.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(service = Payments, aggregate = "payment")]
pub struct PaymentCaptured {
    #[event(aggregate_id)]
    pub payment_id: u64,
}

async fn run(bus: EventBus<Petstore>) {
    let _ = bus.publish_domain(&PaymentCaptured { payment_id: 7 }).await;
}

fn main() {}
