//! The wire format: a CloudEvents 1.0 event in binary content mode (the Kafka protocol binding).
//!
//! Record key = partition key; record value = the payload (JSON); CloudEvents attributes travel as
//! `ce_`-prefixed headers. Any CloudEvents consumer, in any language, can read our topics.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::error::{DecodeError, PublishError};
use crate::event::{Category, Event, Service};

/// Header names (CloudEvents Kafka binding, binary mode; extensions are lower-case alphanumerics).
pub mod headers {
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
    /// `ce_tenantid` (extension): the tenant the event belongs to.
    pub const TENANT_ID: &str = "ce_tenantid";
    /// `ce_tags` (extension): comma-separated labels for filtering.
    pub const TAGS: &str = "ce_tags";
}

/// The CloudEvents spec version we write.
pub(crate) const SPEC_VERSION: &str = "1.0";
/// The payload's media type.
pub(crate) const JSON: &str = "application/json";

/// Correlation, causation and trace ids given to the events a bus publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventContext {
    /// The id shared by every event of one business flow.
    pub correlation_id: Option<String>,
    /// The id of the event that caused this one.
    pub causation_id: Option<String>,
    /// A W3C `traceparent`.
    pub traceparent: Option<String>,
    /// The tenant.
    pub tenant_id: Option<String>,
    /// Labels consumers can filter on.
    pub tags: Vec<String>,
}

impl EventContext {
    /// The context of events published in reaction to `cause`: same correlation (or the cause's
    /// id when it had none), caused by the cause, same trace.
    pub fn caused_by(cause: &Envelope) -> Self {
        EventContext {
            correlation_id: Some(
                cause
                    .correlation_id
                    .clone()
                    .unwrap_or_else(|| cause.id.to_string()),
            ),
            causation_id: Some(cause.id.to_string()),
            traceparent: cause.traceparent.clone(),
            tenant_id: cause.tenant_id.clone(),
            tags: Vec::new(),
        }
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the tenant.
    pub fn with_tenant(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant_id.into());
        self
    }

    /// Adds a tag (no commas).
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into().replace(',', "_"));
        self
    }

    /// Sets the W3C `traceparent`.
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }
}

/// One event as it travels: the CloudEvents attributes, the record key and topic, the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `ce_id`: a UUIDv7, so ids sort by creation time.
    pub id: Uuid,
    /// `ce_source`: the publishing service.
    pub source: String,
    /// `ce_type`.
    pub event_type: String,
    /// `ce_time`.
    pub time: OffsetDateTime,
    /// `ce_subject`.
    pub subject: Option<String>,
    /// The topic.
    pub topic: String,
    /// The record key.
    pub key: Option<String>,
    /// `ce_category`.
    pub category: Category,
    /// `ce_schemaversion`.
    pub version: u32,
    /// `content-type`.
    pub content_type: String,
    /// `ce_correlationid`.
    pub correlation_id: Option<String>,
    /// `ce_causationid`.
    pub causation_id: Option<String>,
    /// `ce_traceparent`.
    pub traceparent: Option<String>,
    /// `ce_tenantid`.
    pub tenant_id: Option<String>,
    /// `ce_tags`.
    pub tags: Vec<String>,
    /// The record value.
    pub payload: Vec<u8>,
}

impl Envelope {
    /// Wraps `event`, serialized as JSON, with a new id and the current time.
    pub fn new<E: Event>(event: &E, context: &EventContext) -> Result<Self, PublishError> {
        let payload = serde_json::to_vec(event).map_err(|source| PublishError::Serialize {
            event: E::EVENT_TYPE,
            source,
        })?;
        Ok(Envelope {
            id: Uuid::now_v7(),
            source: <E::Service as Service>::NAME.to_owned(),
            event_type: E::EVENT_TYPE.to_owned(),
            time: OffsetDateTime::now_utc(),
            subject: event.subject(),
            topic: E::TOPIC.to_owned(),
            key: event.partition_key(),
            category: E::category(),
            version: E::VERSION,
            content_type: JSON.to_owned(),
            correlation_id: context.correlation_id.clone(),
            causation_id: context.causation_id.clone(),
            traceparent: context.traceparent.clone(),
            tenant_id: context.tenant_id.clone(),
            tags: context.tags.clone(),
            payload,
        })
    }

    /// True when this envelope carries an `E`.
    pub fn is<E: Event>(&self) -> bool {
        self.event_type == E::EVENT_TYPE
    }

    /// Decodes the payload as an `E`, after checking the type.
    pub fn decode<E: Event>(&self) -> Result<E, DecodeError> {
        if !self.is::<E>() {
            return Err(DecodeError::WrongType {
                expected: E::EVENT_TYPE,
                found: self.event_type.clone(),
            });
        }
        serde_json::from_slice(&self.payload).map_err(|source| DecodeError::Payload {
            event_type: self.event_type.clone(),
            id: self.id,
            source,
        })
    }

    /// The record headers, in a stable order.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let time = self
            .time
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.time.unix_timestamp().to_string());
        let mut out = vec![
            (headers::SPEC_VERSION, SPEC_VERSION.to_owned()),
            (headers::ID, self.id.to_string()),
            (headers::SOURCE, self.source.clone()),
            (headers::TYPE, self.event_type.clone()),
            (headers::TIME, time),
            (headers::SCHEMA_VERSION, self.version.to_string()),
            (headers::CATEGORY, self.category.as_str().to_owned()),
            // After the attributes every eventbus consumer needs: theirs stops reading there.
            (headers::CONTENT_TYPE, self.content_type.clone()),
        ];
        let optional = [
            (headers::SUBJECT, &self.subject),
            (headers::CORRELATION_ID, &self.correlation_id),
            (headers::CAUSATION_ID, &self.causation_id),
            (headers::TRACEPARENT, &self.traceparent),
            (headers::TENANT_ID, &self.tenant_id),
        ];
        out.extend(
            optional
                .into_iter()
                .filter_map(|(name, value)| value.clone().map(|v| (name, v))),
        );
        if !self.tags.is_empty() {
            out.push((headers::TAGS, self.tags.join(",")));
        }
        out
    }

    /// Rebuilds an envelope from a record: its topic, key, headers and value.
    pub fn from_record<'h>(
        topic: &str,
        key: Option<&[u8]>,
        record_headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
        payload: &[u8],
    ) -> Result<Self, DecodeError> {
        // Borrowed: a consumer reads every record through here, so no copy until the envelope.
        let mut found: Vec<(&str, &str)> = Vec::with_capacity(16);
        for (name, value) in record_headers {
            let value = std::str::from_utf8(value).map_err(|_| DecodeError::BadHeader {
                header: name.to_owned(),
                reason: "not UTF-8".to_owned(),
            })?;
            found.push((name, value));
        }
        let get_str = |name: &str| found.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let get = |name: &str| get_str(name).map(str::to_owned);
        let require_str =
            |name: &'static str| get_str(name).ok_or(DecodeError::MissingHeader(name));
        let require = |name: &'static str| require_str(name).map(str::to_owned);
        let bad = |header: &str, reason: String| DecodeError::BadHeader {
            header: header.to_owned(),
            reason,
        };

        let spec = require_str(headers::SPEC_VERSION)?;
        if spec != SPEC_VERSION {
            return Err(bad(
                headers::SPEC_VERSION,
                format!("unsupported version {spec}"),
            ));
        }
        let id = require_str(headers::ID)?;
        let time = require_str(headers::TIME)?;
        let category = require_str(headers::CATEGORY)?;
        let version = require_str(headers::SCHEMA_VERSION)?;
        let key = key
            .map(|k| String::from_utf8(k.to_vec()).map_err(|_| bad("key", "not UTF-8".to_owned())))
            .transpose()?;
        Ok(Envelope {
            id: Uuid::parse_str(id).map_err(|e| bad(headers::ID, e.to_string()))?,
            source: require(headers::SOURCE)?,
            event_type: require(headers::TYPE)?,
            time: OffsetDateTime::parse(time, &Rfc3339)
                .map_err(|e| bad(headers::TIME, e.to_string()))?,
            subject: get(headers::SUBJECT),
            topic: topic.to_owned(),
            key,
            category: Category::parse(category)
                .ok_or_else(|| bad(headers::CATEGORY, format!("unknown category {category:?}")))?,
            version: version.parse().map_err(|_| {
                bad(
                    headers::SCHEMA_VERSION,
                    format!("{version:?} is not a number"),
                )
            })?,
            content_type: get(headers::CONTENT_TYPE).unwrap_or_else(|| JSON.to_owned()),
            correlation_id: get(headers::CORRELATION_ID),
            causation_id: get(headers::CAUSATION_ID),
            traceparent: get(headers::TRACEPARENT),
            tenant_id: get(headers::TENANT_ID),
            tags: get_str(headers::TAGS)
                .map(|t| {
                    t.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            payload: payload.to_vec(),
        })
    }
}
