//! Golden tests of the expansion: the formatted code each derive generates is snapshotted, so every
//! change to generated code shows up, reviewed, in the diff. Refresh with
//! `INSTA_UPDATE=always cargo test -p eventbus-tests --test golden` (or `cargo insta review`).

use eventbus_codegen::Category;
use eventbus_codegen::derive::{expand_event, expand_service, expand_topic};
use proc_macro2::TokenStream;

fn expand(category: Category, input: &str) -> String {
    let tokens: TokenStream = input.parse().expect("fixture parses");
    eventbus_codegen::format(expand_event(category, tokens))
}

#[test]
fn domain_event() {
    insta::assert_snapshot!(expand(
        Category::Domain,
        r#"
        /// An order was placed.
        #[event(aggregate = "order", version = 2)]
        pub struct OrderPlaced {
            #[event(aggregate_id)]
            pub order_id: Uuid,
            pub total_cents: u64,
        }
        "#
    ));
}

#[test]
fn domain_event_on_a_shared_aggregate_topic() {
    insta::assert_snapshot!(expand(
        Category::Domain,
        r#"
        /// An order was cancelled.
        #[event(service = Petstore, aggregate = "order", topic = OrderTopic)]
        pub(crate) struct OrderCancelled {
            #[event(aggregate_id)]
            order_id: Uuid,
            #[serde(skip)]
            cache: Cache,
        }
        "#
    ));
}

#[test]
fn integration_event() {
    insta::assert_snapshot!(expand(
        Category::Integration,
        r#"
        /// Payments tells orders that an order is paid.
        #[event(source = Payments, target = "orders")]
        pub struct OrderPaid {
            #[event(key)]
            pub order_id: Uuid,
        }
        "#
    ));
}

#[test]
fn audit_event() {
    insta::assert_snapshot!(expand(
        Category::Audit,
        r#"
        /// A user signed in.
        #[event(audit_category = "security")]
        pub struct UserSignedIn {
            #[event(actor)]
            pub user: String,
        }
        "#
    ));
}

#[test]
fn system_event() {
    insta::assert_snapshot!(expand(
        Category::System,
        r#"
        /// The service started.
        #[event(topic = "ops.lifecycle")]
        pub struct ServiceStarted {
            pub build: String,
        }
        "#
    ));
}

#[test]
fn notification_event() {
    insta::assert_snapshot!(expand(
        Category::Notification,
        r#"
        /// Tell a customer their order is confirmed.
        #[event(channel = "email", kind = "order_confirmation")]
        pub struct OrderConfirmationEmail {
            #[event(recipient)]
            pub email: String,
        }
        "#
    ));
}

#[test]
fn invalid_event_expands_to_errors_and_fallback_impls() {
    insta::assert_snapshot!(expand(
        Category::Domain,
        r#"
        /// An order was placed.
        #[event(agregate = "order", version = 0)]
        pub struct OrderPlaced {
            pub order_id: Uuid,
        }
        "#
    ));
}

#[test]
fn service_and_topic() {
    let service: TokenStream = r#"#[service(name = "petstore", default)] pub struct Petstore;"#
        .parse()
        .unwrap();
    let topic: TokenStream = r#"#[topic(aggregate = "order")] pub struct OrderTopic;"#
        .parse()
        .unwrap();
    let mut out = expand_service(service);
    out.extend(expand_topic(topic));
    insta::assert_snapshot!(eventbus_codegen::format(out));
}
