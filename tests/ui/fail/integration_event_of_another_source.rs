use eventbus::{EventBus, IntegrationEvent, Service};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "petstore", default)]
pub struct Petstore;

#[derive(Service)]
#[service(name = "payments")]
pub struct Payments;

/// Payments tells the petstore an order was paid.
#[derive(IntegrationEvent, Serialize, Deserialize)]
#[event(source = Payments, target = "petstore")]
pub struct OrderPaid {
    #[event(key)]
    pub order_id: u64,
}

async fn run(bus: EventBus<Petstore>) {
    // The petstore cannot speak for payments: `ce_source` would lie.
    let _ = bus.publish_integration(&OrderPaid { order_id: 7 }).await;
}

fn main() {}
