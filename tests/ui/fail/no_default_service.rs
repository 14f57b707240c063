use eventbus::DomainEvent;
use serde::{Deserialize, Serialize};

/// An order was placed.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(aggregate = "order")]
pub struct OrderPlaced {
    #[event(aggregate_id)]
    pub order_id: u64,
}

fn main() {}
