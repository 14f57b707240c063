//! [`EventFilter`]: which events a subscription or plugin receives (the seed's AD-005).

use std::fmt;
use std::sync::Arc;

use crate::envelope::{Attributes, Envelope};
use crate::event::{Category, Event};

type Predicate = Arc<dyn Fn(&Envelope) -> bool + Send + Sync>;

/// Criteria an event must meet. Each criterion given must hold (AND); the values of one criterion
/// are alternatives (OR). An empty filter lets everything through.
///
/// ```
/// use eventbus::{Category, EventFilter};
///
/// let filter = EventFilter::new()
///     .category(Category::Domain)
///     .source_service("petstore")
///     .tenant_id("acme")
///     .payload_field("/total_cents", |v| v.as_u64().is_some_and(|c| c >= 10_000));
/// # let _ = filter;
/// ```
#[derive(Clone, Default)]
pub struct EventFilter {
    event_types: Vec<String>,
    categories: Vec<Category>,
    source_services: Vec<String>,
    tenant_ids: Vec<String>,
    correlation_ids: Vec<String>,
    tags: Vec<String>,
    predicates: Vec<(String, Predicate)>,
}

impl fmt::Debug for EventFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventFilter")
            .field("event_types", &self.event_types)
            .field("categories", &self.categories)
            .field("source_services", &self.source_services)
            .field("tenant_ids", &self.tenant_ids)
            .field("correlation_ids", &self.correlation_ids)
            .field("tags", &self.tags)
            .field(
                "predicates",
                &self
                    .predicates
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl EventFilter {
    /// A filter that lets everything through.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only events of type `E`.
    pub fn event<E: Event>(mut self) -> Self {
        self.event_types.push(E::EVENT_TYPE.to_owned());
        self
    }

    /// Only events with this CloudEvents type (`petstore.order.order_placed`).
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_types.push(event_type.into());
        self
    }

    /// Only events of this category.
    pub fn category(mut self, category: Category) -> Self {
        self.categories.push(category);
        self
    }

    /// Only events published by this service (`ce_source`).
    pub fn source_service(mut self, service: impl Into<String>) -> Self {
        self.source_services.push(service.into());
        self
    }

    /// Only events of this tenant (`ce_tenantid`).
    pub fn tenant_id(mut self, tenant: impl Into<String>) -> Self {
        self.tenant_ids.push(tenant.into());
        self
    }

    /// Only events of this business flow (`ce_correlationid`).
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_ids.push(id.into());
        self
    }

    /// Only events carrying this tag (`ce_tags`).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Only events whose header `name` has value `value`.
    pub fn header(self, name: &str, value: &str) -> Self {
        let (n, v) = (name.to_owned(), value.to_owned());
        self.matching(format!("header {name} = {value}"), move |e| {
            e.headers().iter().any(|(k, val)| *k == n && *val == v)
        })
    }

    /// Only events whose JSON payload has, at `pointer` (RFC 6901: `/order/total`), a value
    /// `test` accepts. A payload that is not JSON, or lacks the field, does not match.
    pub fn payload_field(
        self,
        pointer: &str,
        test: impl Fn(&serde_json::Value) -> bool + Send + Sync + 'static,
    ) -> Self {
        let p = pointer.to_owned();
        self.matching(format!("payload {pointer}"), move |e| {
            serde_json::from_slice::<serde_json::Value>(&e.payload)
                .ok()
                .and_then(|v| v.pointer(&p).map(&test))
                .unwrap_or(false)
        })
    }

    /// Only events `predicate` accepts; `name` shows in `Debug`.
    pub fn matching(
        mut self,
        name: impl Into<String>,
        predicate: impl Fn(&Envelope) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.predicates.push((name.into(), Arc::new(predicate)));
        self
    }

    /// True when the filter needs only the record's headers (it has no predicates).
    pub(crate) fn headers_only(&self) -> bool {
        self.predicates.is_empty()
    }

    /// The criteria on a record's attributes (all but the predicates), with the category the
    /// consumer resolved for it: the one test both the consumer's verdict and
    /// [`EventFilter::matches`] apply.
    pub(crate) fn matches_attributes(&self, a: &Attributes<'_>, category: Category) -> bool {
        fn any_of(wanted: &[String], got: Option<&str>) -> bool {
            wanted.is_empty() || got.is_some_and(|g| wanted.iter().any(|w| w == g))
        }
        any_of(&self.event_types, Some(a.event_type))
            && (self.categories.is_empty() || self.categories.contains(&category))
            && any_of(&self.source_services, Some(a.source))
            && any_of(&self.tenant_ids, a.tenant_id)
            && any_of(&self.correlation_ids, a.correlation_id)
            && (self.tags.is_empty() || a.tags.any(|t| self.tags.iter().any(|w| w == t)))
    }

    /// True when `envelope` meets every criterion.
    pub fn matches(&self, envelope: &Envelope) -> bool {
        self.matches_attributes(&envelope.attributes(), envelope.category)
            && self.predicates.iter().all(|(_, p)| p(envelope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::EventContext;
    use crate::event::Category;

    fn envelope(context: &EventContext, category: Category) -> Envelope {
        let mut e = Envelope::from_record(
            "t",
            Some(b"k"),
            [
                ("ce_specversion", b"1.0".as_slice()),
                ("ce_id", b"0190b2a4-6c5e-7a4e-9a51-0c7c8b4c2a10".as_slice()),
                ("ce_source", b"petstore".as_slice()),
                ("ce_type", b"petstore.order.order_placed".as_slice()),
                ("ce_time", b"2026-01-01T00:00:00Z".as_slice()),
                ("ce_category", category.as_str().as_bytes()),
                ("ce_schemaversion", b"1".as_slice()),
            ],
            b"{}",
        )
        .unwrap();
        e.tenant_id = context.tenant_id.clone();
        e.correlation_id = context.correlation_id.clone();
        e.tags = context.tags.clone();
        e
    }

    /// The fast path's header check decides as `matches` does, criterion by criterion.
    #[test]
    fn header_matching_agrees_with_envelope_matching() {
        let filters = [
            EventFilter::new(),
            EventFilter::new().event_type("petstore.order.order_placed"),
            EventFilter::new().event_type("petstore.order.order_shipped"),
            EventFilter::new().category(Category::Domain),
            EventFilter::new()
                .category(Category::Audit)
                .category(Category::Domain),
            EventFilter::new().source_service("payments"),
            EventFilter::new().tenant_id("acme"),
            EventFilter::new().correlation_id("flow-1"),
            EventFilter::new().tag("blue"),
            EventFilter::new().tag(""),
            EventFilter::new()
                .source_service("petstore")
                .tenant_id("acme")
                .tag("red"),
        ];
        let contexts = [
            EventContext::default(),
            EventContext::default().with_tenant("acme"),
            EventContext::default()
                .with_tenant("other")
                .with_correlation_id("flow-1"),
            EventContext::default().with_tag("blue").with_tag("red"),
            EventContext::default().with_tenant("acme").with_tag("red"),
        ];
        let mut both = [0, 0];
        for filter in &filters {
            for context in &contexts {
                for category in [Category::Domain, Category::Audit, Category::System] {
                    let e = envelope(context, category);
                    let headers = e.headers();
                    let raw = crate::envelope::RawAttributes::read(
                        headers.iter().map(|(n, v)| (*n, v.as_bytes())),
                    );
                    let attributes = raw.check().unwrap();
                    let by_headers = filter.matches_attributes(&attributes, category);
                    assert_eq!(
                        by_headers,
                        filter.matches(&e),
                        "{filter:?} on {context:?}, {category:?}"
                    );
                    both[usize::from(by_headers)] += 1;
                }
            }
        }
        assert!(
            both[0] > 0 && both[1] > 0,
            "some match and some do not: {both:?}"
        );
    }
}
