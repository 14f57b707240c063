//! YAML schemas: a YAML event and the same event written by hand expand to identical code and
//! identical wire bytes; generated types round-trip; older versions stay decodable.

use eventbus::types::{Decimal, Uuid};
use eventbus_codegen::Category;
use eventbus_codegen::derive::expand_event;
use eventbus_tests::payments_schema::{
    Currency, Money, PaymentCaptured, PaymentCapturedV1, PaymentTopic,
};
use proc_macro2::TokenStream;
use quote::ToTokens;

/// The generated declaration of `name` in the payments schema.
fn generated_struct(name: &str) -> syn::ItemStruct {
    let config = {
        let mut c = eventbus_codegen::Config::new();
        c.schemas(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/"))
            .no_lock();
        c
    };
    let catalog = config.load().expect("schemas load");
    let service = catalog
        .services
        .iter()
        .find(|s| s.name == "payments")
        .expect("payments service");
    let tokens = eventbus_codegen::schema::rust::RustOptions::default().service(service);
    let file: syn::File = syn::parse2(tokens).expect("generated code parses");
    file.items
        .into_iter()
        .find_map(|item| match item {
            syn::Item::Struct(s) if s.ident == name => Some(s),
            _ => None,
        })
        .expect("struct generated")
}

fn expand(category: Category, item: TokenStream) -> String {
    eventbus_codegen::format(expand_event(category, item))
}

#[test]
fn yaml_and_hand_written_events_expand_identically() {
    let yaml = generated_struct("PaymentCapturedV1").to_token_stream();
    let hand: TokenStream = r#"
        /// The authorized amount was captured (version 1, kept for old payloads).
        #[derive(Debug, Clone, PartialEq, ::eventbus::DomainEvent)]
        #[event(service = Payments, name = "payment_captured", aggregate = "payment", version = 1, topic = PaymentTopic)]
        pub struct PaymentCapturedV1 {
            /// The payment.
            #[event(aggregate_id)]
            pub payment_id: ::eventbus::types::Uuid,
            /// The order it pays.
            pub order_id: ::eventbus::types::Uuid,
            /// The captured amount.
            pub amount: Money,
        }
    "#
    .parse()
    .expect("hand-written event parses");
    let from_yaml = expand(Category::Domain, yaml);
    assert!(from_yaml.contains("impl ::eventbus::__private::Event for PaymentCapturedV1"));
    assert_eq!(from_yaml, expand(Category::Domain, hand));
}

/// The same event, by hand, for the wire comparison.
mod by_hand {
    use eventbus::DomainEvent;
    use eventbus_tests::payments_schema::{Money, PaymentTopic, Payments};
    use serde::{Deserialize, Serialize};

    /// The authorized amount was captured (version 1, kept for old payloads).
    #[derive(Debug, Clone, PartialEq, DomainEvent, Serialize, Deserialize)]
    #[event(service = Payments, name = "payment_captured", aggregate = "payment", version = 1, topic = PaymentTopic)]
    pub(crate) struct PaymentCapturedV1 {
        /// The payment.
        #[event(aggregate_id)]
        pub(crate) payment_id: eventbus::types::Uuid,
        /// The order it pays.
        pub(crate) order_id: eventbus::types::Uuid,
        /// The captured amount.
        pub(crate) amount: Money,
    }
}

fn money() -> Result<Money, String> {
    Ok(Money {
        amount: "12.50".parse::<Decimal>()?,
        currency: Currency::EUR,
    })
}

#[test]
fn yaml_and_hand_written_events_have_identical_wire_bytes() -> Result<(), Box<dyn std::error::Error>>
{
    use eventbus::Event;
    let (payment_id, order_id) = (Uuid::now_v7(), Uuid::now_v7());
    let yaml = PaymentCapturedV1 {
        payment_id,
        order_id,
        amount: money()?,
    };
    let hand = by_hand::PaymentCapturedV1 {
        payment_id,
        order_id,
        amount: money()?,
    };
    assert_eq!(serde_json::to_vec(&yaml)?, serde_json::to_vec(&hand)?);
    assert_eq!(
        <PaymentCapturedV1 as Event>::TOPIC,
        <by_hand::PaymentCapturedV1 as Event>::TOPIC
    );
    assert_eq!(PaymentCapturedV1::TOPIC, "domain.payments.payment");
    assert_eq!(
        PaymentCapturedV1::EVENT_TYPE,
        "payments.payment.payment_captured"
    );
    assert_eq!(yaml.partition_key(), hand.partition_key());
    let _: PaymentTopic = PaymentTopic;
    Ok(())
}

#[test]
fn a_v1_payload_decodes_as_v1_and_as_v2() -> Result<(), Box<dyn std::error::Error>> {
    let v1 = PaymentCapturedV1 {
        payment_id: Uuid::now_v7(),
        order_id: Uuid::now_v7(),
        amount: money()?,
    };
    let bytes = serde_json::to_vec(&v1)?;
    // A consumer keeps v1's type for old payloads...
    assert_eq!(serde_json::from_slice::<PaymentCapturedV1>(&bytes)?, v1);
    // ...and v2 reads a v1 payload when v2 only added fields with defaults: here v2 added
    // `fees`, `attempts` (required), so v2 rejects it, which is why v2 is a new version.
    assert!(serde_json::from_slice::<PaymentCaptured>(&bytes).is_err());
    // Optional fields added in v2 decode as `None` from payloads that lack them.
    let v2 = serde_json::json!({
        "payment_id": v1.payment_id, "order_id": v1.order_id, "amount": {"amount": "12.50", "currency": "EUR"},
        "fees": {"processor": "0.30"}, "attempts": 1
    });
    let decoded: PaymentCaptured = serde_json::from_value(v2)?;
    assert_eq!(decoded.processor_ref, None);
    #[allow(deprecated)]
    let legacy_ref = decoded.legacy_ref;
    assert_eq!(legacy_ref, None);
    assert_eq!(PaymentCaptured::VERSION, 2);
    assert_eq!(PaymentCapturedV1::VERSION, 1);
    assert_eq!(PaymentCaptured::NAME, PaymentCapturedV1::NAME);
    Ok(())
}

/// What a consumer of `payment_captured` makes of a record, whichever version produced it.
#[derive(Debug, PartialEq)]
enum Captured {
    V1(PaymentCapturedV1),
    V2(PaymentCaptured),
}

/// A consumer's decoding: the record's `ce_schemaversion` header chooses the type.
fn consume(
    topic: &str,
    key: Option<&[u8]>,
    headers: &[(&str, String)],
    value: &[u8],
) -> Result<Captured, Box<dyn std::error::Error>> {
    let envelope = eventbus::Envelope::from_record(
        topic,
        key,
        headers.iter().map(|(n, v)| (*n, v.as_bytes())),
        value,
    )?;
    Ok(match envelope.version {
        1 => Captured::V1(envelope.decode::<PaymentCapturedV1>()?),
        2 => Captured::V2(envelope.decode::<PaymentCaptured>()?),
        v => return Err(format!("unknown version {v} of payment_captured").into()),
    })
}

#[test]
fn a_consumer_reads_v1_and_v2_records_of_one_event() -> Result<(), Box<dyn std::error::Error>> {
    use eventbus::{Envelope, EventContext};
    let v1 = PaymentCapturedV1 {
        payment_id: Uuid::now_v7(),
        order_id: Uuid::now_v7(),
        amount: money()?,
    };
    // `legacy_ref` is deprecated (`#[deprecated]`), yet part of v2: a producer still names it.
    #[allow(deprecated)]
    let v2 = PaymentCaptured {
        payment_id: v1.payment_id,
        order_id: v1.order_id,
        amount: money()?,
        fees: [("processor".to_owned(), "0.30".parse::<Decimal>()?)]
            .into_iter()
            .collect(),
        attempts: 2,
        processor_ref: Some("ch_1".into()),
        legacy_ref: None,
    };
    // Both versions travel on one topic, with one key (the payment), as real records would.
    let records = [
        Envelope::new(&v1, &EventContext::default())?,
        Envelope::new(&v2, &EventContext::default())?,
    ];
    assert_eq!(records[0].topic, records[1].topic);
    assert_eq!(records[0].key, records[1].key);
    let mut got = Vec::new();
    for r in &records {
        got.push(consume(
            &r.topic,
            r.key.as_deref().map(str::as_bytes),
            &r.headers(),
            &r.payload,
        )?);
    }
    assert_eq!(got, [Captured::V1(v1), Captured::V2(v2)]);
    Ok(())
}

#[test]
fn a_deprecated_schema_field_is_deprecated_in_rust() {
    let item = generated_struct("PaymentCaptured");
    let field = item
        .fields
        .iter()
        .find(|f| f.ident.as_ref().is_some_and(|i| i == "legacy_ref"))
        .expect("legacy_ref");
    let deprecated: Vec<String> = field
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("deprecated"))
        .map(|a| a.to_token_stream().to_string())
        .collect();
    assert_eq!(
        deprecated,
        [r#"# [deprecated (note = "use processor_ref")]"#]
    );
}
