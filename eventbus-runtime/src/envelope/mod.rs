//! The wire format: a CloudEvents 1.0 event in binary content mode (the Kafka protocol binding).
//!
//! Record key = partition key; record value = the payload (JSON); CloudEvents attributes travel as
//! `ce_`-prefixed headers. Any CloudEvents consumer, in any language, can read our topics.
//!
//! One place for the attributes: their header names (`headers.rs`), how an [`Envelope`] writes
//! them, and both decoders (`decode.rs`): [`Envelope::from_record`], and the consumer's fast path,
//! which reads the attributes it needs from the raw headers without building an envelope.

use std::borrow::Cow;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

mod decode;
pub mod headers;

pub(crate) use decode::{Attributes, Defaults, RawAttributes, key_of};
pub(crate) use headers::{CLOUDEVENTS_VERSION, JSON};

use crate::error::{DecodeError, PublishError};
use crate::event::{Category, Event, Service};

/// Correlation, causation and trace ids given to the events a bus publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventContext {
    /// The id shared by every event of one business flow.
    pub correlation_id: Option<String>,
    /// The id of the event that caused this one.
    pub causation_id: Option<String>,
    /// A W3C `traceparent`. With the feature `opentelemetry`, the context of the span that
    /// publishes an event is written instead, when OpenTelemetry records that span.
    pub traceparent: Option<String>,
    /// The W3C `tracestate` that goes with `traceparent`.
    pub tracestate: Option<String>,
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
            tracestate: cause.tracestate.clone(),
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

/// What a new event says of itself (typed, or a `RawEvent`): [`Envelope::stamp`] adds the rest.
pub(crate) struct Described {
    pub(crate) source: Cow<'static, str>,
    pub(crate) event_type: Cow<'static, str>,
    pub(crate) subject: Option<String>,
    pub(crate) topic: Cow<'static, str>,
    pub(crate) key: Option<String>,
    pub(crate) category: Category,
    pub(crate) version: u32,
}

/// One event as it travels: the CloudEvents attributes, the record key and topic, the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `ce_id`: a UUIDv7, so ids sort by creation time.
    pub id: Uuid,
    /// `ce_source`: the publishing service (borrowed when it is a service's name, so a typed
    /// publish allocates no copy of it; likewise the type, topic and content type).
    pub source: Cow<'static, str>,
    /// `ce_type`.
    pub event_type: Cow<'static, str>,
    /// `ce_time`.
    pub time: OffsetDateTime,
    /// `ce_subject`.
    pub subject: Option<String>,
    /// The topic.
    pub topic: Cow<'static, str>,
    /// The record key.
    pub key: Option<String>,
    /// `ce_category`.
    pub category: Category,
    /// `ce_schemaversion`.
    pub version: u32,
    /// `content-type`.
    pub content_type: Cow<'static, str>,
    /// `ce_correlationid`.
    pub correlation_id: Option<String>,
    /// `ce_causationid`.
    pub causation_id: Option<String>,
    /// `ce_traceparent`.
    pub traceparent: Option<String>,
    /// `ce_tracestate`.
    pub tracestate: Option<String>,
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
        let payload = Self::payload(event)?;
        Ok(Self::with_parts(
            event,
            context,
            payload,
            event.partition_key(),
        ))
    }

    /// `event` serialized as JSON: the payload of its envelope.
    pub(crate) fn payload<E: Event>(event: &E) -> Result<Vec<u8>, PublishError> {
        // serde_json's `to_vec` starts at the same capacity.
        let mut payload = Vec::with_capacity(128);
        Envelope::write_payload(event, &mut payload)?;
        Ok(payload)
    }

    /// [`Envelope::payload`], appended to `out` (left as it was when serializing fails).
    pub(crate) fn write_payload<E: Event>(
        event: &E,
        out: &mut Vec<u8>,
    ) -> Result<(), PublishError> {
        let before = out.len();
        serde_json::to_writer(&mut *out, event).map_err(|source| {
            out.truncate(before);
            PublishError::Serialize {
                event: E::EVENT_TYPE,
                source,
            }
        })
    }

    /// [`Envelope::new`], with the payload and the key already computed.
    pub(crate) fn with_parts<E: Event>(
        event: &E,
        context: &EventContext,
        payload: Vec<u8>,
        key: Option<String>,
    ) -> Self {
        let described = Described {
            source: Cow::Borrowed(<E::Service as Service>::NAME),
            event_type: Cow::Borrowed(E::EVENT_TYPE),
            subject: event.subject(),
            topic: Cow::Borrowed(E::TOPIC),
            key,
            category: E::category(),
            version: E::VERSION,
        };
        Envelope::stamp(described, context, payload)
    }

    /// A new event's envelope: what it says of itself, a new id, the current time, `context`.
    pub(crate) fn stamp(event: Described, context: &EventContext, payload: Vec<u8>) -> Self {
        Envelope {
            id: Uuid::now_v7(),
            source: event.source,
            event_type: event.event_type,
            time: OffsetDateTime::now_utc(),
            subject: event.subject,
            topic: event.topic,
            key: event.key,
            category: event.category,
            version: event.version,
            content_type: Cow::Borrowed(JSON),
            correlation_id: context.correlation_id.clone(),
            causation_id: context.causation_id.clone(),
            traceparent: context.traceparent.clone(),
            tracestate: context.tracestate.clone(),
            tenant_id: context.tenant_id.clone(),
            tags: context.tags.clone(),
            payload,
        }
    }

    /// True when this envelope carries an `E`: its type, in its schema version.
    pub fn is<E: Event>(&self) -> bool {
        self.event_type == E::EVENT_TYPE && self.version == E::VERSION
    }

    /// Decodes the payload as an `E`, after checking the type and the version.
    pub fn decode<E: Event>(&self) -> Result<E, DecodeError> {
        if self.event_type != E::EVENT_TYPE {
            return Err(DecodeError::WrongType {
                expected: E::EVENT_TYPE,
                found: self.event_type.to_string(),
            });
        }
        if self.version != E::VERSION {
            return Err(DecodeError::WrongVersion {
                event_type: E::EVENT_TYPE,
                expected: E::VERSION,
                found: self.version,
            });
        }
        serde_json::from_slice(&self.payload).map_err(|source| DecodeError::Payload {
            event_type: self.event_type.to_string(),
            id: self.id,
            source,
        })
    }

    /// The record headers, in a stable order.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(12);
        self.each_header(|name, value| {
            out.push((name, String::from_utf8_lossy(value).into_owned()));
        });
        out
    }

    /// Calls `f` with each record header, in the order of [`Envelope::headers`] (the one list of
    /// them), borrowing what the envelope holds and writing the id, the time and the version in
    /// stack buffers: no allocation per header on the publish path.
    pub(crate) fn each_header(&self, mut f: impl FnMut(&'static str, &[u8])) {
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = self.id.hyphenated().encode_lower(&mut id);
        let mut time = [0u8; 64];
        let time_len = {
            let mut cursor = std::io::Cursor::new(&mut time[..]);
            match self.time.format_into(&mut cursor, &Rfc3339) {
                // What was written (the returned count can fall short of it).
                Ok(_) => cursor.position() as usize,
                // A year RFC 3339 cannot write: seconds since the epoch.
                Err(_) => {
                    use std::io::Write as _;
                    let mut cursor = std::io::Cursor::new(&mut time[..]);
                    let _ = write!(cursor, "{}", self.time.unix_timestamp());
                    cursor.position() as usize
                }
            }
        };
        let mut version = [0u8; 10];
        let version = {
            use std::io::Write as _;
            let mut cursor = std::io::Cursor::new(&mut version[..]);
            let _ = write!(cursor, "{}", self.version);
            let n = cursor.position() as usize;
            &version[..n]
        };
        f(headers::SPEC_VERSION, CLOUDEVENTS_VERSION.as_bytes());
        f(headers::ID, id.as_bytes());
        f(headers::SOURCE, self.source.as_bytes());
        f(headers::TYPE, self.event_type.as_bytes());
        f(headers::TIME, &time[..time_len]);
        f(headers::SCHEMA_VERSION, version);
        f(headers::CATEGORY, self.category.as_str().as_bytes());
        // After the attributes every eventbus consumer needs: theirs stops reading there.
        f(headers::CONTENT_TYPE, self.content_type.as_bytes());
        let optional = [
            (headers::SUBJECT, &self.subject),
            (headers::CORRELATION_ID, &self.correlation_id),
            (headers::CAUSATION_ID, &self.causation_id),
            (headers::TRACEPARENT, &self.traceparent),
            (headers::TRACESTATE, &self.tracestate),
            (headers::TENANT_ID, &self.tenant_id),
        ];
        // CloudEvents forbids empty attribute values: an empty one is left out.
        for (name, value) in optional {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                f(name, v.as_bytes());
            }
        }
        if !self.tags.is_empty() {
            f(headers::TAGS, self.tags.join(",").as_bytes());
        }
    }
}
