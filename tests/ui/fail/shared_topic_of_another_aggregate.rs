use eventbus::{DomainEvent, Service};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "petstore", default)]
pub struct Petstore;

use eventbus::Topic;

/// Every order event, in order per order.
#[derive(Topic)]
#[topic(aggregate = "order")]
pub struct OrderTopic;

/// A payment was captured.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(aggregate = "payment", topic = OrderTopic)]
pub struct PaymentCaptured {
    #[event(aggregate_id)]
    pub payment_id: u64,
}

fn main() {}
