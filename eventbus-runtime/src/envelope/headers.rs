//! Header names (CloudEvents Kafka binding, binary mode; extensions are lower-case
//! alphanumerics).

/// `ce_specversion`: always `1.0`.
pub const SPEC_VERSION: &str = "ce_specversion";
/// `ce_id`: the event id (UUIDv7).
pub const ID: &str = "ce_id";
/// `ce_source`: the service that published the event.
pub const SOURCE: &str = "ce_source";
/// `ce_type`: the event type (`Event::EVENT_TYPE`).
pub const TYPE: &str = "ce_type";
/// `ce_time`: when the event was created (RFC 3339).
pub const TIME: &str = "ce_time";
/// `ce_subject`: the aggregate id of a domain event.
pub const SUBJECT: &str = "ce_subject";
/// `content-type`: the payload's media type.
pub const CONTENT_TYPE: &str = "content-type";
/// `ce_schemaversion` (extension): the event's schema version.
pub const SCHEMA_VERSION: &str = "ce_schemaversion";
/// `ce_category` (extension): the event category.
pub const CATEGORY: &str = "ce_category";
/// `ce_correlationid` (extension): the id shared by every event of one business flow.
pub const CORRELATION_ID: &str = "ce_correlationid";
/// `ce_causationid` (extension): the id of the event that caused this one.
pub const CAUSATION_ID: &str = "ce_causationid";
/// `ce_traceparent` (CloudEvents distributed-tracing extension): the W3C trace context.
pub const TRACEPARENT: &str = "ce_traceparent";
/// `ce_tracestate` (CloudEvents distributed-tracing extension): the W3C `tracestate`, vendor
/// data that goes with `ce_traceparent`.
pub const TRACESTATE: &str = "ce_tracestate";
/// `ce_tenantid` (extension): the tenant the event belongs to.
pub const TENANT_ID: &str = "ce_tenantid";
/// `ce_tags` (extension): comma-separated labels for filtering.
pub const TAGS: &str = "ce_tags";

/// The CloudEvents spec version we write.
pub(crate) const CLOUDEVENTS_VERSION: &str = "1.0";
/// The payload's media type.
pub(crate) const JSON: &str = "application/json";
