//! Name, topic and crate overrides, an explicit key beside the aggregate id, optional keys, and
//! serde attributes on fields.
use eventbus::{DomainEvent, Event, Service, SystemEvent};
use serde::{Deserialize, Serialize};

mod services {
    #[derive(eventbus::Service)]
    #[service(name = "legacy-billing")]
    pub struct Billing;
}

#[derive(Service)]
#[service(default)]
pub struct Petstore;

struct NotSerializable;

impl Default for NotSerializable {
    fn default() -> Self {
        NotSerializable
    }
}

/// An invoice was issued (the legacy name and topic are kept).
#[derive(DomainEvent, Serialize, Deserialize)]
#[event(
    crate = ::eventbus,
    service = services::Billing,
    aggregate = "invoice",
    name = "invoice-issued",
    topic = "billing.invoices.v1",
    version = 3
)]
pub struct InvoiceIssued {
    #[event(aggregate_id)]
    pub invoice_id: String,
    #[event(key)]
    pub customer_id: Option<u32>,
    #[serde(skip)]
    cache: NotSerializable,
}

/// A cache was flushed; no key: spread over partitions.
#[derive(SystemEvent, Serialize, Deserialize)]
pub struct CacheFlushed {
    pub entries: u64,
}

fn main() {
    assert_eq!(Petstore::NAME_FOR_TEST, "petstore");
    assert_eq!(InvoiceIssued::TOPIC, "billing.invoices.v1");
    assert_eq!(InvoiceIssued::EVENT_TYPE, "legacy-billing.invoice.invoice-issued");
    assert_eq!(InvoiceIssued::VERSION, 3);
    let e = InvoiceIssued { invoice_id: "i-1".into(), customer_id: None, cache: NotSerializable };
    assert_eq!(e.partition_key(), None, "an empty optional key sends no key");
    assert_eq!(e.subject().as_deref(), Some("i-1"));
    assert_eq!(CacheFlushed::TOPIC, "system.petstore.cache_flushed");
}

impl Petstore {
    const NAME_FOR_TEST: &'static str = <Petstore as eventbus::Service>::NAME;
}
