//! The contracts generated from `schemas/` against the Rust the same schemas generate.
//!
//! - The AsyncAPI document is snapshotted (`snapshots/contracts__asyncapi.snap`); the official
//!   parser checks it in `scripts/contracts/check`.
//! - Each event version's JSON Schema must accept what the generated serializers produce:
//!   [`payloads_and_their_json_schemas`] writes the schemas, sample payloads serialized from the
//!   generated types and payloads that must be rejected, with a `manifest.json` listing them, to
//!   `$EVENTBUS_CONTRACTS_DIR` (or a directory under the target dir); `scripts/contracts/check`
//!   runs it and validates every payload with ajv (JSON Schema 2020-12).

use std::collections::BTreeSet;
use std::path::PathBuf;

use eventbus::Event;
use eventbus::types::{Bytes, Date, Decimal, Timestamp, Uuid};
use eventbus_tests::payments_schema::{
    CardDetails, Currency, Money, OrderPaid, PaymentAuthorized, PaymentCaptured, PaymentCapturedV1,
    PaymentMethod, ProcessorLatencyHigh, ReceiptEmail, RefundIssued,
};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn catalog() -> eventbus_codegen::schema::Catalog {
    let mut config = eventbus_codegen::Config::new();
    config
        .schemas(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/"))
        .no_lock();
    config.load().expect("schemas/ loads")
}

#[test]
fn asyncapi_document_snapshot() {
    insta::assert_snapshot!(
        "asyncapi",
        eventbus_codegen::contracts::asyncapi(&catalog())
    );
}

fn money(amount: &str, currency: Currency) -> Result<Money, String> {
    Ok(Money {
        amount: amount.parse::<Decimal>()?,
        currency,
    })
}

/// The JSON Schema file of an event type: `{service}.{name}.v{version}.schema.json`.
fn schema_of<E: Event>() -> String {
    format!("payments.{}.v{}.schema.json", E::NAME, E::VERSION)
}

/// One payload to validate: the schema file, a name, the JSON, and whether it must pass.
struct Sample {
    schema: String,
    what: String,
    payload: Value,
    valid: bool,
}

fn valid<E: Event + serde::Serialize>(what: &str, event: &E) -> Result<Sample, serde_json::Error> {
    Ok(Sample {
        schema: schema_of::<E>(),
        what: what.to_owned(),
        payload: serde_json::to_value(event)?,
        valid: true,
    })
}

/// A payload the schema must reject: `base` (a valid payload) changed by `edit`.
fn invalid<E: Event>(what: &str, base: &Value, edit: impl FnOnce(&mut Value)) -> Sample {
    let mut payload = base.clone();
    edit(&mut payload);
    Sample {
        schema: schema_of::<E>(),
        what: what.to_owned(),
        payload,
        valid: false,
    }
}

fn samples() -> Result<Vec<Sample>, Box<dyn std::error::Error>> {
    let (payment_id, order_id) = (Uuid::now_v7(), Uuid::now_v7());
    let card = PaymentAuthorized {
        payment_id,
        order_id,
        amount: money("12.50", Currency::EUR)?,
        method: PaymentMethod::Card,
        card: Some(CardDetails {
            last4: "4242".into(),
            brand: Some("Visa".into()),
            expires: "2030-12-31".parse::<Date>()?,
        }),
        authorized_at: Timestamp::now(),
    };
    let transfer = PaymentAuthorized {
        method: PaymentMethod::BankTransfer,
        card: None,
        amount: money("-0.01", Currency::GBP)?,
        ..card.clone()
    };
    // `legacy_ref` is deprecated (`#[deprecated]`), yet part of v2: a producer still names it.
    #[allow(deprecated)]
    let captured = PaymentCaptured {
        payment_id,
        order_id,
        amount: money("12.50", Currency::EUR)?,
        fees: [
            ("processor".to_owned(), "0.30".parse::<Decimal>()?),
            ("fx".to_owned(), "0".parse::<Decimal>()?),
        ]
        .into_iter()
        .collect(),
        attempts: u32::MAX,
        processor_ref: Some("ch_1".into()),
        legacy_ref: None,
    };
    let captured_v1 = PaymentCapturedV1 {
        payment_id,
        order_id,
        amount: money("12.50", Currency::USD)?,
    };
    let paid = OrderPaid {
        order_id,
        paid: money("100", Currency::EUR)?,
        receipts: vec!["R-1".into(), "R-2".into()],
    };
    let refund = RefundIssued {
        operator: "ops@example.com".into(),
        payment_id,
        amount: money("5.00", Currency::EUR)?,
        reason: "damaged".into(),
        evidence: Some(Bytes(vec![0, 1, 2, 255])),
    };
    let latency = ProcessorLatencyHigh {
        processor: "acme".into(),
        p99_ms: 1234.5,
        sample: i64::MIN,
        details: json!({"status": "degraded", "regions": ["eu"]}),
    };
    let email = ReceiptEmail {
        email: "customer@example.com".into(),
        order_id,
        amount: money("12.50", Currency::EUR)?,
        sent_on: Some("2025-01-31".parse::<Date>()?),
        r#type: "final".into(),
    };
    let captured_json = serde_json::to_value(&captured)?;
    let v1_json = serde_json::to_value(&captured_v1)?;
    let card_json = serde_json::to_value(&card)?;
    let latency_json = serde_json::to_value(&latency)?;
    Ok(vec![
        valid("paid by card", &card)?,
        valid("paid by bank transfer, no card", &transfer)?,
        valid("v2", &captured)?,
        valid("v1", &captured_v1)?,
        valid("integration", &paid)?,
        valid("audit, with bytes", &refund)?,
        valid("system, with any JSON", &latency)?,
        valid("notification, raw identifier field", &email)?,
        // Each must be rejected: a schema that accepts anything would let these through.
        invalid::<PaymentCaptured>("the amount as a number", &captured_json, |v| {
            v["amount"]["amount"] = json!(12.5);
        }),
        invalid::<PaymentCaptured>("a required field missing", &captured_json, |v| {
            if let Some(m) = v.as_object_mut() {
                m.remove("attempts");
            }
        }),
        invalid::<PaymentCaptured>("a negative u32", &captured_json, |v| {
            v["attempts"] = json!(-1);
        }),
        invalid::<PaymentCaptured>("a u32 past its maximum", &captured_json, |v| {
            v["attempts"] = json!(u64::from(u32::MAX) + 1);
        }),
        // 2^63 + 2048: the first value past i64::MAX that a validator reading numbers as
        // doubles (JavaScript) can tell from it.
        invalid::<ProcessorLatencyHigh>("an i64 past its maximum", &latency_json, |v| {
            v["sample"] = json!(9_223_372_036_854_777_856_u64);
        }),
        invalid::<ProcessorLatencyHigh>("an i64 below its minimum", &latency_json, |v| {
            v["sample"] = json!(-1e19);
        }),
        invalid::<ProcessorLatencyHigh>("an i64 with a fraction", &latency_json, |v| {
            v["sample"] = json!(1.5);
        }),
        invalid::<PaymentCapturedV1>("a currency outside the enum", &v1_json, |v| {
            v["amount"]["currency"] = json!("XXX");
        }),
        invalid::<PaymentCapturedV1>("a payment id that is not a uuid", &v1_json, |v| {
            v["payment_id"] = json!("not-a-uuid");
        }),
        invalid::<PaymentAuthorized>("a timestamp that is not RFC 3339", &card_json, |v| {
            v["authorized_at"] = json!("yesterday");
        }),
        invalid::<PaymentAuthorized>("a date that is not a date", &card_json, |v| {
            v["card"]["expires"] = json!("2030-13-45");
        }),
    ])
}

#[test]
fn payloads_and_their_json_schemas() -> TestResult {
    let dir = match std::env::var_os("EVENTBUS_CONTRACTS_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("contracts"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let schemas = eventbus_codegen::contracts::json_schemas(&catalog());
    let names: BTreeSet<&str> = schemas.iter().map(|(n, _)| n.as_str()).collect();
    for (name, text) in &schemas {
        std::fs::write(dir.join(name), text)?;
    }
    let samples = samples()?;
    let mut manifest = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        assert!(names.contains(s.schema.as_str()), "no schema {}", s.schema);
        let file = format!(
            "{:02}.{}.{}.json",
            i,
            s.schema.trim_end_matches(".schema.json"),
            if s.valid { "valid" } else { "invalid" }
        );
        std::fs::write(dir.join(&file), serde_json::to_string_pretty(&s.payload)?)?;
        manifest
            .push(json!({"schema": s.schema, "payload": file, "valid": s.valid, "what": s.what}));
    }
    // Every event version has at least one payload that must pass, and the set has negatives.
    let covered: BTreeSet<&str> = samples
        .iter()
        .filter(|s| s.valid)
        .map(|s| s.schema.as_str())
        .collect();
    assert_eq!(covered, names, "a sample payload for every JSON Schema");
    assert!(samples.iter().any(|s| !s.valid));
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    Ok(())
}

/// The outbox migrations the runtime ships are the codegen's askama templates, rendered for the
/// default table (regenerate with `cargo run -p eventbus-codegen -- migrations -o eventbus-runtime/migrations`).
#[test]
fn the_runtime_migrations_are_the_rendered_templates() {
    use eventbus_codegen::sql::{Dialect, outbox_migration};
    for (dialect, shipped) in [
        (
            Dialect::Postgres,
            include_str!("../../eventbus-runtime/migrations/postgres.sql"),
        ),
        (
            Dialect::Sqlite,
            include_str!("../../eventbus-runtime/migrations/sqlite.sql"),
        ),
    ] {
        assert_eq!(
            outbox_migration(dialect, "eventbus_outbox").unwrap(),
            shipped,
            "{dialect:?}: run `cargo run -p eventbus-codegen -- migrations -o eventbus-runtime/migrations`"
        );
    }
    assert!(
        outbox_migration(Dialect::Postgres, "drop table x;")
            .unwrap_err()
            .contains("not a plain SQL identifier")
    );
    let custom = outbox_migration(Dialect::Sqlite, "shop_outbox").unwrap();
    assert!(custom.contains("CREATE TABLE IF NOT EXISTS shop_outbox_dead"));
}

/// The event store migrations the runtime ships are the codegen's templates
/// (`templates/store_*.sql`) rendered for the default store, and the runtime's migration for
/// another store is the codegen's for it.
#[test]
fn the_runtime_store_migrations_are_the_rendered_templates() {
    use eventbus_codegen::sql::{Dialect, store_migration};
    for (dialect, shipped) in [
        (
            Dialect::Postgres,
            include_str!("../../eventbus-runtime/migrations/store_postgres.sql"),
        ),
        (
            Dialect::Sqlite,
            include_str!("../../eventbus-runtime/migrations/store_sqlite.sql"),
        ),
    ] {
        assert_eq!(
            store_migration(dialect, eventbus::store::DEFAULT_STORE).unwrap(),
            shipped,
            "{dialect:?}: run `cargo run -p eventbus-codegen -- migrations -o eventbus-runtime/migrations`"
        );
        assert_eq!(
            store_migration(dialect, "shop").unwrap(),
            eventbus::store::migration(dialect, "shop").unwrap()
        );
    }
    assert!(
        store_migration(Dialect::Postgres, "drop table x;")
            .unwrap_err()
            .contains("not a plain SQL identifier")
    );
}
