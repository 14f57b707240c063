//! Error types.

use uuid::Uuid;

/// Why an event could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The payload could not be serialized.
    #[error(
        "cannot serialize event `{event}` to JSON: {source}; check its fields' `Serialize` impls"
    )]
    Serialize {
        /// The event type.
        event: &'static str,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// An event built at run time (see [`crate::RawEvent`]) has an invalid name or route.
    #[error("invalid event: {0}")]
    Invalid(String),
}

/// Why a record could not be read as an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The record carries another event type.
    #[error("expected an event of type `{expected}`, found `{found}`")]
    WrongType {
        /// The type asked for.
        expected: &'static str,
        /// The record's `ce_type`.
        found: String,
    },
    /// The payload does not match the event's schema.
    #[error("the payload of event {id} (`{event_type}`) does not match its schema: {source}")]
    Payload {
        /// The record's `ce_type`.
        event_type: String,
        /// The record's `ce_id`.
        id: Uuid,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A required CloudEvents header is missing.
    #[error("the record has no `{0}` header: it is not a CloudEvents record in binary mode")]
    MissingHeader(&'static str),
    /// A header has a value we cannot read.
    #[error("the `{header}` header is invalid: {reason}")]
    BadHeader {
        /// The header name.
        header: String,
        /// What is wrong.
        reason: String,
    },
}

/// The error a handler returns.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;
