//! What every envelope meets before the bus takes it: CloudEvents 1.0's rules for the attributes
//! we set, and the topic rules (AD-004, `eventbus_core::naming`).
//!
//! - `subject`: optional, but never empty; an empty aggregate id gives none, not `ce_subject: ""`.
//! - the partition key: an empty key is refused ([`PublishError::EmptyKey`], naming the event and
//!   its key field); no key (`None`) is fine.
//! - an envelope built at run time (`publish_envelope`, `RawEvent`): its topic is checked
//!   ([`PublishError::InvalidTopic`]), and its `id`, `source` and `type` must not be empty (the
//!   derives guarantee all of this at compile time for typed events).

use crate::envelope::Envelope;
use crate::error::PublishError;
use crate::event::Event;

/// `envelope` of the typed event `E`, made conformant.
pub(crate) fn typed<E: Event>(mut envelope: Envelope) -> Result<Envelope, PublishError> {
    typed_key::<E>(envelope.key.as_deref())?;
    no_empty_subject(&mut envelope);
    Ok(envelope)
}

/// Checks the partition key of a typed event `E`, before or after its envelope is built.
pub(crate) fn typed_key<E: Event>(key: Option<&str>) -> Result<(), PublishError> {
    // The field's name is written only for the error: this runs for every event published.
    non_empty_key(key, E::EVENT_TYPE, || match E::KEY_FIELD {
        Some(name) => format!("field `{name}`"),
        None => "the envelope's `key`".to_owned(),
    })
}

/// An empty partition key is refused (a missing one is none); `field` names where it came from.
fn non_empty_key(
    key: Option<&str>,
    event_type: &str,
    field: impl FnOnce() -> String,
) -> Result<(), PublishError> {
    if key.is_some_and(str::is_empty) {
        return Err(PublishError::EmptyKey {
            event: event_type.to_owned(),
            field: field(),
        });
    }
    Ok(())
}

/// An empty subject is none: CloudEvents forbids `ce_subject: ""`.
pub(crate) fn no_empty_subject(envelope: &mut Envelope) {
    if envelope.subject.as_deref().is_some_and(str::is_empty) {
        envelope.subject = None;
    }
}

/// An envelope built at run time, made conformant: its topic and attributes checked too.
pub(crate) fn built(mut envelope: Envelope) -> Result<Envelope, PublishError> {
    let invalid = |attribute: &str| {
        PublishError::Invalid(format!(
            "the envelope's `{attribute}` is empty: CloudEvents requires it (event `{}`, topic {:?})",
            envelope.event_type, envelope.topic
        ))
    };
    if envelope.event_type.trim().is_empty() {
        return Err(invalid("event_type"));
    }
    if envelope.source.trim().is_empty() {
        return Err(invalid("source"));
    }
    if envelope.id.is_nil() {
        return Err(invalid("id"));
    }
    if let Err(rule) = eventbus_core::naming::check_topic(&envelope.topic) {
        // The rule's text repeats the topic; the error names it once.
        let prefix = format!("topic {:?}: ", envelope.topic);
        let rule = rule.strip_prefix(&prefix).unwrap_or(&rule).to_owned();
        return Err(PublishError::InvalidTopic {
            event: envelope.event_type.to_string(),
            topic: envelope.topic.to_string(),
            rule,
        });
    }
    non_empty_key(envelope.key.as_deref(), &envelope.event_type, || {
        "the envelope's `key`".to_owned()
    })?;
    no_empty_subject(&mut envelope);
    Ok(envelope)
}
