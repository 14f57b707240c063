//! CloudEvents conformance at publish, on every mode and both layers: no empty `ce_subject` on
//! the wire, an empty partition key refused naming the event and its key field, an envelope's
//! topic checked at the call (not later in the relay).

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use eventbus::bus::{EventPublisher, RawEvent};
use eventbus::{Envelope, EventBus, EventContext, PublishError};
use eventbus_tests::{OrderConfirmationEmail, OrderPlaced, Petstore, UserSignedIn};

/// Each mode's bus on `layer`: Testing, Direct, Transactional.
async fn buses(layer: &support::Layer) -> Vec<(&'static str, EventBus<Petstore>)> {
    vec![
        ("testing", EventBus::testing(Petstore)),
        ("direct", support::direct_bus(layer).await),
        ("transactional", support::transactional_bus(layer).await),
    ]
}

/// An envelope like a bridge would build: `OrderPlaced`'s, with `subject`, `key` and `topic`
/// replaced.
fn envelope(subject: Option<&str>, key: Option<&str>, topic: &str) -> Envelope {
    let mut e = Envelope::new(&OrderPlaced::numbered(1)[0], &EventContext::default()).unwrap();
    e.subject = subject.map(str::to_owned);
    e.key = key.map(str::to_owned);
    e.topic = topic.to_owned().into();
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_partition_key_is_refused_naming_the_event_and_its_field() {
    for layer in support::layers().await {
        for (mode, bus) in buses(&layer).await {
            let email = OrderConfirmationEmail {
                email: String::new(),
                order_id: uuid::Uuid::now_v7(),
            };
            let error = bus.publish_notification(&email).await.unwrap_err();
            assert!(
                matches!(&error, PublishError::EmptyKey { event, field }
                    if event == OrderConfirmationEmail::EVENT_TYPE && field == "field `email`"),
                "{} {mode}: {error:?}",
                layer.name
            );
            let shown = error.to_string();
            assert!(
                shown.contains(OrderConfirmationEmail::EVENT_TYPE)
                    && shown.contains("`email`")
                    && shown.contains("is empty")
                    && shown.contains("Option"),
                "{shown}"
            );
            // In a batch too, before anything is written.
            let signed_in = [
                UserSignedIn { user: "ada".into() },
                UserSignedIn {
                    user: String::new(),
                },
            ];
            let error = bus.publish_all(&signed_in).await.unwrap_err();
            assert!(
                matches!(&error, PublishError::EmptyKey { field, .. } if field == "field `user`"),
                "{} {mode}: {error}",
                layer.name
            );
            // Events built at run time name the role of their key.
            let error = bus
                .publish_raw(RawEvent::domain(
                    "order",
                    "",
                    "order_placed",
                    serde_json::json!({}),
                ))
                .await
                .unwrap_err();
            assert!(
                error.to_string().contains("(the aggregate id) is empty"),
                "{} {mode}: {error}",
                layer.name
            );
            let error = bus
                .publish_envelope(envelope(Some("x"), Some(""), OrderPlaced::TOPIC))
                .await
                .unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("(the envelope's `key`) is empty"),
                "{error}"
            );
            bus.shutdown().await;
        }
        assert_eq!(
            layer.store.pending().await.unwrap(),
            0,
            "{}: nothing refused reached the outbox",
            layer.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_topic_is_refused_at_the_call_naming_the_topic_and_the_rule() {
    for layer in support::layers().await {
        for (mode, bus) in buses(&layer).await {
            for (topic, rule) in [
                ("Orders.Placed", "contains 'O'"),
                ("domain..order", "is empty"),
                ("", "is empty"),
            ] {
                let error = bus
                    .publish_envelope(envelope(None, Some("k"), topic))
                    .await
                    .unwrap_err();
                match &error {
                    PublishError::InvalidTopic {
                        topic: named,
                        rule: said,
                        event,
                    } => {
                        assert_eq!(named, topic);
                        assert!(said.contains(rule), "{said}");
                        assert_eq!(event, OrderPlaced::EVENT_TYPE);
                    }
                    other => panic!("{} {mode}: {other:?}", layer.name),
                }
                assert!(error.to_string().contains(&format!("{topic:?}")), "{error}");
            }
            let long = "a".repeat(250);
            let error = bus
                .publish_envelope(envelope(None, None, &long))
                .await
                .unwrap_err();
            assert!(error.to_string().contains("249"), "{error}");
            let mut nameless = envelope(None, None, OrderPlaced::TOPIC);
            nameless.event_type = "".into();
            let error = bus.publish_envelope(nameless).await.unwrap_err();
            assert!(
                error.to_string().contains("`event_type` is empty"),
                "{error}"
            );
            bus.shutdown().await;
        }
        assert_eq!(layer.store.pending().await.unwrap(), 0, "{}", layer.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_subject_is_left_out_of_the_record() {
    for layer in support::layers().await {
        let topic = format!("eventbus.tests.subjects-{}", uuid::Uuid::now_v7().simple());
        let reader = support::Reader::at_end(&layer.kafka, &topic).await;
        let direct = support::direct_bus(&layer).await;
        let transactional = support::transactional_bus(&layer).await;
        direct
            .publish_envelope(envelope(Some(""), Some("k1"), &topic))
            .await
            .unwrap();
        transactional
            .publish_envelope(envelope(Some(""), Some("k2"), &topic))
            .await
            .unwrap();
        direct
            .publish_envelope(envelope(Some("order-3"), Some("k3"), &topic))
            .await
            .unwrap();
        let records = reader.read(Duration::from_secs(30), |r| r.len() >= 3);
        assert_eq!(records.len(), 3, "{}", layer.name);
        for record in &records {
            let subject = record.header("ce_subject");
            match record.key.as_deref() {
                Some("k3") => assert_eq!(subject.as_deref(), Some("order-3")),
                _ => assert_eq!(subject, None, "{}: {record:?}", layer.name),
            }
        }
        // A Testing bus records the same envelope.
        let testing = EventBus::testing(Petstore);
        testing
            .publish_envelope(envelope(Some(""), Some("k"), OrderPlaced::TOPIC))
            .await
            .unwrap();
        assert_eq!(testing.recorded().envelopes()[0].subject, None);
        direct.shutdown().await;
        transactional.shutdown().await;
    }
}
