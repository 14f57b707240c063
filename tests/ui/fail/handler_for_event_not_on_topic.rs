use eventbus::{DomainEvent, EventBus, Service};
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

/// A payment was captured.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(aggregate = "payment")]
pub struct PaymentCaptured {
    #[event(aggregate_id)]
    pub payment_id: u64,
}

async fn run(bus: EventBus<Petstore>) {
    let _ = bus
        .subscribe::<OrderPlacedTopic>()
        .on::<PaymentCaptured, _>(|_e: PaymentCaptured| async {})
        .start()
        .await;
}

fn main() {}
