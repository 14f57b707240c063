//! Two domain events of one aggregate on one topic: one publisher, one subscription, both events.
use eventbus::{DomainEvent, EventBus, Service, Topic};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "petstore", default)]
pub struct Petstore;

/// Every order event, in order per order.
#[derive(Topic)]
#[topic(aggregate = "order")]
pub struct OrderTopic;

/// An order was placed.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(aggregate = "order", topic = OrderTopic)]
pub struct OrderPlaced {
    #[event(aggregate_id)]
    pub order_id: u64,
}

/// An order was cancelled.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(aggregate = "order", topic = OrderTopic)]
pub struct OrderCancelled {
    #[event(aggregate_id)]
    pub order_id: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let bus = EventBus::testing(Petstore);
    let _subscription = bus
        .subscribe::<OrderTopic>()
        .on::<OrderPlaced, _>(|_e: OrderPlaced| async {})
        .on::<OrderCancelled, _>(|_e: OrderCancelled| async {})
        .start()
        .await
        .unwrap();
    let orders = bus.publisher::<OrderTopic>();
    orders.publish(&OrderPlaced { order_id: 1 }).await.unwrap();
    orders.publish(&OrderCancelled { order_id: 1 }).await.unwrap();
    assert_eq!(orders.topic(), "domain.petstore.order");
    assert_eq!(<OrderTopic as Topic>::NAME, OrderCancelled::TOPIC);
}
