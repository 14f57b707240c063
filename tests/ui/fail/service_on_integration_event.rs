use eventbus::{IntegrationEvent, Service};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "petstore", default)]
pub struct Petstore;

#[derive(Service)]
#[service(name = "payments")]
pub struct Payments;

/// Payments tells orders that an order is paid.
#[derive(IntegrationEvent, Serialize, Deserialize)]
#[event(service = Payments, target = "orders")]
pub struct OrderPaid {
    #[event(key)]
    pub order_id: u64,
}

fn main() {}
