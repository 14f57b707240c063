//! AD-004: the generated topic names, one test per category, and the names around them.

use eventbus::{Category, Event, Topic};
use eventbus_tests::*;

#[test]
fn domain_topic_is_domain_service_aggregate_event() {
    assert_eq!(OrderPlaced::TOPIC, "domain.petstore.order.order_placed");
    assert_eq!(
        <OrderPlaced as Event>::TOPIC,
        <OrderPlacedTopic as Topic>::NAME
    );
    assert_eq!(OrderPlaced::EVENT_TYPE, "petstore.order.order_placed");
    assert_eq!(OrderPlaced::category(), Category::Domain);
    assert_eq!(
        PaymentCaptured::TOPIC,
        "domain.payments.payment.payment_captured"
    );
}

#[test]
fn per_aggregate_routing_shares_one_topic() {
    assert_eq!(<OrderTopic as Topic>::NAME, "domain.petstore.order");
    assert_eq!(OrderShipped::TOPIC, "domain.petstore.order");
    assert_eq!(OrderCancelled::TOPIC, "domain.petstore.order");
    assert_eq!(OrderCancelled::VERSION, 2);
    // The event type tells them apart on the shared topic.
    assert_ne!(OrderShipped::EVENT_TYPE, OrderCancelled::EVENT_TYPE);
}

#[test]
fn integration_topic_is_integration_source_target_event() {
    assert_eq!(OrderPaid::TOPIC, "integration.payments.petstore.order_paid");
    assert_eq!(OrderPaid::EVENT_TYPE, "payments.order_paid");
    assert_eq!(OrderPaid::category(), Category::Integration);
}

#[test]
fn audit_topic_is_audit_service_category() {
    assert_eq!(UserSignedIn::TOPIC, "audit.petstore.security");
    assert_eq!(UserSignedIn::category(), Category::Audit);
}

#[test]
fn system_topic_is_system_service_event() {
    assert_eq!(ServiceStarted::TOPIC, "system.petstore.service_started");
    assert_eq!(ServiceStarted::category(), Category::System);
}

#[test]
fn notification_topic_is_notifications_channel_kind() {
    assert_eq!(
        OrderConfirmationEmail::TOPIC,
        "notifications.email.order_confirmation"
    );
    assert_eq!(OrderConfirmationEmail::category(), Category::Notification);
}

#[test]
fn partition_keys_follow_the_category_rules() {
    let id = uuid::Uuid::now_v7();
    let placed = OrderPlaced {
        order_id: id,
        total_cents: 1,
    };
    assert_eq!(placed.partition_key(), Some(id.to_string()));
    assert_eq!(placed.subject(), Some(id.to_string()));
    let paid = OrderPaid { order_id: id };
    assert_eq!(paid.partition_key(), Some(id.to_string()));
    let signed_in = UserSignedIn { user: "ada".into() };
    assert_eq!(signed_in.partition_key(), Some("ada".to_owned()));
    let started = ServiceStarted { build: "1".into() };
    assert_eq!(started.partition_key(), None);
    let email = OrderConfirmationEmail {
        email: "a@b.c".into(),
        order_id: id,
    };
    assert_eq!(email.partition_key(), Some("a@b.c".to_owned()));
}

#[test]
fn outbox_statements_name_the_event_and_match_the_table() {
    assert_eq!(
        OrderPlaced::OUTBOX_INSERT_POSTGRES,
        "INSERT INTO eventbus_outbox (event_id, topic, partition_key, event_type, version, headers, payload, shard) \
         VALUES ($1, 'domain.petstore.order.order_placed', $2, 'petstore.order.order_placed', 1, $3, $4, $5)"
    );
    assert_eq!(
        OrderCancelled::OUTBOX_INSERT_SQLITE,
        "INSERT INTO eventbus_outbox (event_id, topic, partition_key, event_type, version, headers, payload, shard) \
         VALUES (?1, 'domain.petstore.order', ?2, 'petstore.order.order_cancelled', 2, ?3, ?4, ?5)"
    );
}
