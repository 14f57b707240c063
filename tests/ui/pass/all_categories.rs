//! One event of each category, published through its category method.
use eventbus::{
    AuditEvent, DomainEvent, EventBus, IntegrationEvent, NotificationEvent, Service, SystemEvent,
};
use serde::{Deserialize, Serialize};

#[derive(Service)]
#[service(name = "petstore", default)]
pub struct Petstore;

#[derive(Service)]
#[service(name = "payments")]
pub struct Payments;

/// An order was placed.
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(aggregate = "order")]
pub struct OrderPlaced {
    #[event(aggregate_id)]
    pub order_id: u64,
}

/// Payments tells the petstore an order is paid.
#[derive(IntegrationEvent, Serialize, Deserialize)]
#[event(source = Payments, target = "petstore")]
pub struct OrderPaid {
    #[event(key)]
    pub order_id: u64,
}

/// Someone signed in.
#[derive(AuditEvent, Serialize, Deserialize)]
#[event(audit_category = "security")]
pub struct SignedIn {
    #[event(actor)]
    pub user: String,
}

/// The service started.
#[derive(SystemEvent, Serialize, Deserialize)]
pub struct Started;

/// A confirmation email.
#[derive(NotificationEvent, Serialize, Deserialize)]
#[event(channel = "email", kind = "order_confirmation")]
pub struct ConfirmationEmail {
    #[event(recipient)]
    pub to: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let bus = EventBus::testing(Petstore);
    bus.publish_domain(&OrderPlaced { order_id: 1 }).await.unwrap();
    // An integration event is published by its source service.
    bus.for_service(Payments)
        .publish_integration(&OrderPaid { order_id: 1 })
        .await
        .unwrap();
    bus.publish_audit(&SignedIn { user: "ada".into() }).await.unwrap();
    bus.publish_system(&Started).await.unwrap();
    bus.publish_notification(&ConfirmationEmail { to: "a@b.c".into() }).await.unwrap();
    assert_eq!(bus.recorded().envelopes().len(), 5);
    assert_eq!(Started::TOPIC, "system.petstore.started");
}
