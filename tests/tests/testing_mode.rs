//! The Testing mode: recording, typed assertions, local dispatch, and the wire envelope.

use std::sync::{Arc, Mutex};

use eventbus::bus::EventPublisher;
use eventbus::bus::RawEvent;
use eventbus::envelope::headers;
use eventbus::{Envelope, EventBus, EventContext, Mode, PublishError};
use eventbus_tests::*;
use uuid::Uuid;

fn placed(total_cents: u64) -> OrderPlaced {
    OrderPlaced {
        order_id: Uuid::now_v7(),
        total_cents,
    }
}

#[tokio::test]
async fn recorder_returns_typed_events_in_order() {
    let bus = EventBus::testing(Petstore);
    assert_eq!(bus.mode(), Mode::Testing);
    let (a, b) = (placed(1), placed(2));
    bus.publish_domain(&a).await.unwrap();
    bus.publish_audit(&UserSignedIn { user: "ada".into() })
        .await
        .unwrap();
    b.publish(&bus).await.unwrap();

    assert_eq!(bus.recorded().published::<OrderPlaced>(), vec![a, b]);
    assert_eq!(bus.recorded().count::<UserSignedIn>(), 1);
    assert_eq!(bus.recorded().count::<OrderShipped>(), 0);
    assert_eq!(bus.recorded().on_topic::<OrderPlacedTopic>().len(), 2);
    bus.recorded().clear();
    assert!(bus.recorded().envelopes().is_empty());
}

#[tokio::test]
async fn receipt_and_envelope_carry_cloudevents_attributes() {
    let bus = EventBus::testing(Petstore).with_context(
        EventContext::default()
            .with_correlation_id("flow-1")
            .with_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    let event = placed(42);
    let receipt = bus.publish_domain(&event).await.unwrap();
    let envelope = bus.recorded().envelopes().pop().unwrap();

    assert_eq!(receipt.event_id, envelope.id);
    assert_eq!(receipt.topic, "domain.petstore.order.order_placed");
    assert_eq!(envelope.id.get_version_num(), 7, "event ids are UUIDv7");
    assert_eq!(
        envelope.key.as_deref(),
        Some(event.order_id.to_string().as_str())
    );

    let hdrs = envelope.headers();
    let get = |name: &str| {
        hdrs.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get(headers::SPEC_VERSION), Some("1.0"));
    assert_eq!(get(headers::TYPE), Some("petstore.order.order_placed"));
    assert_eq!(get(headers::SOURCE), Some("petstore"));
    assert_eq!(
        get(headers::SUBJECT),
        Some(event.order_id.to_string().as_str())
    );
    assert_eq!(get(headers::CONTENT_TYPE), Some("application/json"));
    assert_eq!(get(headers::SCHEMA_VERSION), Some("1"));
    assert_eq!(get(headers::CATEGORY), Some("domain"));
    assert_eq!(get(headers::CORRELATION_ID), Some("flow-1"));
    assert!(get(headers::TRACEPARENT).is_some());
    assert!(get(headers::CAUSATION_ID).is_none());

    // The record a Kafka consumer would see reads back to the same envelope.
    let raw: Vec<(&str, Vec<u8>)> = hdrs
        .iter()
        .map(|(n, v)| (*n, v.as_bytes().to_vec()))
        .collect();
    let back = Envelope::from_record(
        &envelope.topic,
        envelope.key.as_deref().map(str::as_bytes),
        raw.iter().map(|(n, v)| (*n, v.as_slice())),
        &envelope.payload,
    )
    .unwrap();
    assert_eq!(back, envelope);
    assert_eq!(back.decode::<OrderPlaced>().unwrap(), event);
    assert!(
        back.decode::<OrderShipped>().is_err(),
        "decoding checks the event type"
    );
}

#[tokio::test]
async fn a_record_without_cloudevents_headers_is_rejected_by_name() {
    let err = Envelope::from_record("t", None, [("ce_id", b"x".as_slice())], b"{}").unwrap_err();
    assert!(err.to_string().contains("ce_specversion"), "{err}");
}

#[tokio::test]
async fn subscriptions_dispatch_locally_and_unsubscribe() {
    let bus = EventBus::testing(Petstore);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_in_handler = Arc::clone(&seen);
    let handle = bus
        .subscribe::<OrderTopic>()
        .on::<OrderShipped, _>(move |e: OrderShipped| {
            let seen = Arc::clone(&seen_in_handler);
            async move { seen.lock().unwrap().push(e.order_id) }
        })
        .on::<OrderCancelled, _>(|e: OrderCancelled| async move {
            if e.reason == "fail" {
                Err("refused")
            } else {
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();

    let id = Uuid::now_v7();
    bus.publish_domain(&OrderShipped { order_id: id })
        .await
        .unwrap();
    bus.publish_domain(&OrderCancelled {
        order_id: id,
        reason: "fail".into(),
    })
    .await
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![id]);
    let failures = bus.recorded().failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].event_type, "petstore.order.order_cancelled");
    assert_eq!(failures[0].error, "refused");

    handle.unsubscribe();
    bus.publish_domain(&OrderShipped { order_id: id })
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "no delivery after unsubscribe"
    );
}

#[tokio::test]
async fn a_subscription_without_handlers_does_not_start() {
    let bus = EventBus::testing(Petstore);
    let err = bus.subscribe::<OrderTopic>().start().await.unwrap_err();
    assert!(err.to_string().contains("`petstore`"), "{err}");
}

/// `OrderShipped` as another crate would declare it: the same event type and version under
/// another Rust type. (In one crate, two derives claiming it do not compile.)
#[derive(serde::Serialize, serde::Deserialize)]
struct ShippedElsewhere {
    order_id: Uuid,
}

impl eventbus::Event for ShippedElsewhere {
    type Category = eventbus::event::category::Domain;
    type Service = Petstore;
    type Topic = OrderTopic;
    const NAME: &'static str = OrderShipped::NAME;
    const EVENT_TYPE: &'static str = OrderShipped::EVENT_TYPE;
    const VERSION: u32 = OrderShipped::VERSION;
    const DESCRIPTION: &'static str = "An order was shipped.";
    const TOPIC: &'static str = OrderShipped::TOPIC;
    const OUTBOX_INSERT_POSTGRES: &'static str =
        <OrderShipped as eventbus::Event>::OUTBOX_INSERT_POSTGRES;
    const OUTBOX_INSERT_SQLITE: &'static str =
        <OrderShipped as eventbus::Event>::OUTBOX_INSERT_SQLITE;
    fn partition_key(&self) -> Option<String> {
        Some(self.order_id.to_string())
    }
}

impl eventbus::event::RoutedTo<OrderTopic> for ShippedElsewhere {}

#[tokio::test]
async fn two_rust_types_for_one_event_type_and_version_do_not_start() {
    let bus = EventBus::testing(Petstore);
    let err = bus
        .subscribe::<OrderTopic>()
        .on::<OrderShipped, _>(|_: OrderShipped| async {})
        .on::<ShippedElsewhere, _>(|_: ShippedElsewhere| async {})
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            eventbus::error::SubscribeError::TwoTypesForOneEvent { .. }
        ),
        "{err}"
    );
    let text = err.to_string();
    for part in [
        "`petstore.order.order_shipped` v1",
        "`domain.petstore.order`",
        "OrderShipped`",
        "ShippedElsewhere`",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    // One type handled twice is not two types.
    bus.subscribe::<OrderTopic>()
        .on::<OrderShipped, _>(|_: OrderShipped| async {})
        .on::<OrderShipped, _>(|_: OrderShipped| async {})
        .start()
        .await
        .unwrap();
}

#[tokio::test]
async fn services_share_one_testing_bus() {
    let orders = EventBus::testing(Petstore);
    let payments = orders.for_service(Payments);
    payments
        .publish_domain(&PaymentCaptured {
            payment_id: Uuid::now_v7(),
            order_id: Uuid::now_v7(),
        })
        .await
        .unwrap();
    payments
        .publish_integration(&OrderPaid {
            order_id: Uuid::now_v7(),
        })
        .await
        .unwrap();
    assert_eq!(orders.recorded().count::<PaymentCaptured>(), 1);
    let paid = orders.recorded().envelopes_of::<OrderPaid>();
    assert_eq!(paid[0].source, "payments");
}

#[tokio::test]
async fn caused_events_carry_correlation_and_causation() {
    let bus = EventBus::testing(Petstore);
    bus.publish_domain(&placed(1)).await.unwrap();
    let cause = bus.recorded().envelopes().pop().unwrap();
    bus.with_context(EventContext::caused_by(&cause))
        .publish_notification(&OrderConfirmationEmail {
            email: "a@b.c".into(),
            order_id: Uuid::nil(),
        })
        .await
        .unwrap();
    let effect = bus.recorded().envelopes().pop().unwrap();
    assert_eq!(effect.causation_id, Some(cause.id.to_string()));
    assert_eq!(effect.correlation_id, Some(cause.id.to_string()));
}

#[tokio::test]
async fn the_dynamic_publisher_validates_names_at_run_time() {
    let bus: Arc<dyn EventPublisher> = Arc::new(EventBus::testing(Petstore));
    let receipt = bus
        .publish_raw(RawEvent::domain(
            "order",
            "o-1",
            "order_archived",
            serde_json::json!({"by": "ops"}),
        ))
        .await
        .unwrap();
    assert_eq!(receipt.topic, "domain.petstore.order.order_archived");

    let err = bus
        .publish_raw(RawEvent::audit(
            "Security Events",
            "ada",
            "login",
            serde_json::json!({}),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Invalid(_)));
    assert!(err.to_string().contains("\"Security Events\""), "{err}");

    let long = "x".repeat(250);
    let err = bus
        .publish_raw(RawEvent::system(&long, serde_json::json!(null)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at most 249"), "{err}");
}

#[tokio::test]
async fn the_testing_transport_gives_a_record_the_consumers_verdict() {
    // The same verdict as on Kafka: a record of a handled type in a version no handler reads
    // fails before any handler runs, naming the versions handled.
    let bus = EventBus::testing(Petstore);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let in_handler = Arc::clone(&seen);
    let _handle = bus
        .subscribe::<ParcelTopic>()
        .on::<Parcel, _>(move |p: Parcel| {
            in_handler.lock().unwrap().push(p.n);
            async {}
        })
        .start()
        .await
        .unwrap();
    let (key, run) = ("k".to_owned(), "r".to_owned());
    bus.publish_system(&Parcel {
        key: key.clone(),
        run: run.clone(),
        n: 1,
    })
    .await
    .unwrap();
    bus.publish_system(&ParcelV2 {
        key,
        run,
        n: 2,
        priority: 1,
    })
    .await
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), [1]);
    let failures = bus.recorded().failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].handler, "decoder");
    assert!(
        failures[0]
            .error
            .contains("no handler here reads version 2 of `petstore.parcel`"),
        "{}",
        failures[0].error
    );
}

#[tokio::test]
async fn recorded_events_are_selected_by_type_and_version() {
    let bus = EventBus::testing(Petstore);
    let (key, run) = ("k".to_owned(), "r".to_owned());
    let v1 = Parcel {
        key: key.clone(),
        run: run.clone(),
        n: 1,
    };
    let v2 = ParcelV2 {
        key,
        run,
        n: 2,
        priority: 9,
    };
    bus.publish_system(&v1).await.unwrap();
    bus.publish_system(&v2).await.unwrap();
    let recorded = bus.recorded();
    assert_eq!(recorded.published::<Parcel>(), [v1]);
    assert_eq!(recorded.published::<ParcelV2>(), [v2]);
    assert_eq!(recorded.count::<Parcel>(), 1);
    let error = recorded.envelopes()[1].decode::<Parcel>().unwrap_err();
    assert!(
        error
            .to_string()
            .contains("expected version 1 of `petstore.parcel`, found version 2"),
        "{error}"
    );
}

/// On a Testing bus a failed delivery is the dead letter: recorded with its class, announced once
/// by a `DeadLettered` event through the in-memory transport (so `recorded()` has it) and to the
/// consumer's hook. A consumer of the notifications that fails is not announced again.
#[tokio::test]
async fn a_failed_delivery_is_announced_once_with_its_class() {
    use eventbus::dlq::{DeadLettered, DeadLetteredTopic, ErrorClass};
    let bus = EventBus::testing(Petstore);
    let hooked: Arc<Mutex<Vec<DeadLettered>>> = Arc::default();
    let hook = Arc::clone(&hooked);
    let _orders = bus
        .consumer("orders")
        .on_dead_letter(move |n| hook.lock().unwrap().push(n.clone()))
        .subscribe::<OrderTopic>()
        .on::<OrderCancelled, _>(|e: OrderCancelled| async move {
            if e.reason == "panic" {
                panic!("cannot cancel");
            }
            Err::<(), _>("refused")
        })
        .start()
        .await
        .unwrap();
    let alerts = Arc::new(Mutex::new(0));
    let seen = Arc::clone(&alerts);
    let _alerts = bus
        .consumer("alerts")
        .subscribe::<DeadLetteredTopic>()
        .on::<DeadLettered, _>(move |_n: DeadLettered| {
            *seen.lock().unwrap() += 1;
            async { Err::<(), _>("the pager is down") }
        })
        .start()
        .await
        .unwrap();

    let id = Uuid::now_v7();
    bus.publish_domain(&OrderCancelled {
        order_id: id,
        reason: "no".into(),
    })
    .await
    .unwrap();
    bus.publish_domain(&OrderCancelled {
        order_id: id,
        reason: "panic".into(),
    })
    .await
    .unwrap();

    let announced = bus.recorded().published::<DeadLettered>();
    assert_eq!(announced.len(), 2, "{announced:?}");
    assert_eq!(
        announced.iter().map(|n| n.class).collect::<Vec<_>>(),
        [ErrorClass::Handler, ErrorClass::Panic]
    );
    assert_eq!(announced[0].group.as_deref(), Some("orders"));
    assert_eq!(announced[0].service.as_deref(), Some("petstore"));
    assert_eq!(announced[0].topic, OrderCancelled::TOPIC);
    assert_eq!(announced[0].error, "refused");
    assert_eq!(*hooked.lock().unwrap(), announced);
    // The alerting consumer saw both, failed both, and was not announced in turn.
    assert_eq!(*alerts.lock().unwrap(), 2);
    let failures = bus.recorded().failures();
    assert_eq!(failures.len(), 4, "{failures:?}");
    assert_eq!(failures[0].class, ErrorClass::Handler);
}
