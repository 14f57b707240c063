//! The dynamic publisher: events known only at run time, behind an object-safe trait (the seed's
//! `EventPublisher` adapter).

use crate::BoxFuture;
use crate::bus::Receipt;
use crate::envelope::{Envelope, EventContext};
use crate::error::PublishError;
use crate::event::Category;

/// An object-safe publisher: `Arc<dyn EventPublisher>` for code that does not know its events'
/// types at compile time (plugins, bridges, the seed's `EventPublisher` callers).
///
/// Typed code should prefer [`crate::EventBus`]'s methods: they check routing at compile time.
pub trait EventPublisher: Send + Sync {
    /// The publishing service's name (`ce_source`).
    fn service(&self) -> &'static str;

    /// The context stamped on published events.
    fn context(&self) -> EventContext {
        EventContext::default()
    }

    /// Publishes a complete envelope. [`crate::EventBus`] checks it first and refuses, naming
    /// the event and the rule, a topic that breaks the topic rules
    /// ([`PublishError::InvalidTopic`]), an empty partition key ([`PublishError::EmptyKey`]) and
    /// an empty `event_type`, `source` or nil `id`; an empty `subject` is dropped (CloudEvents
    /// forbids an empty `subject`).
    fn publish_envelope(&self, envelope: Envelope) -> BoxFuture<'_, Result<Receipt, PublishError>>;

    /// Validates and publishes an event described at run time.
    fn publish_raw(&self, event: RawEvent) -> BoxFuture<'_, Result<Receipt, PublishError>> {
        match event.into_envelope(self.service(), &self.context()) {
            Ok(envelope) => self.publish_envelope(envelope),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

/// An event described at run time. Names are validated as the derives validate them.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    category: Category,
    name: String,
    version: u32,
    route: Vec<String>,
    key: Option<String>,
    subject: Option<String>,
    payload: serde_json::Value,
}

impl RawEvent {
    fn new(category: Category, name: &str, route: Vec<&str>, payload: serde_json::Value) -> Self {
        RawEvent {
            category,
            name: name.to_owned(),
            version: 1,
            route: route.into_iter().map(str::to_owned).collect(),
            key: None,
            subject: None,
            payload,
        }
    }

    /// A domain event of the publishing service: `domain.{service}.{aggregate}.{name}`.
    pub fn domain(
        aggregate: &str,
        aggregate_id: &str,
        name: &str,
        payload: serde_json::Value,
    ) -> Self {
        let mut e = RawEvent::new(Category::Domain, name, vec![aggregate], payload);
        e.key = Some(aggregate_id.to_owned());
        e.subject = Some(aggregate_id.to_owned());
        e
    }

    /// An integration event: `integration.{service}.{target}.{name}`.
    pub fn integration(target: &str, key: &str, name: &str, payload: serde_json::Value) -> Self {
        let mut e = RawEvent::new(Category::Integration, name, vec![target], payload);
        e.key = Some(key.to_owned());
        e
    }

    /// An audit event: `audit.{service}.{audit_category}`, keyed by the actor.
    pub fn audit(
        audit_category: &str,
        actor: &str,
        name: &str,
        payload: serde_json::Value,
    ) -> Self {
        let mut e = RawEvent::new(Category::Audit, name, vec![audit_category], payload);
        e.key = Some(actor.to_owned());
        e
    }

    /// A system event: `system.{service}.{name}`.
    pub fn system(name: &str, payload: serde_json::Value) -> Self {
        RawEvent::new(Category::System, name, vec![], payload)
    }

    /// A notification: `notifications.{channel}.{kind}`, keyed by the recipient.
    pub fn notification(
        channel: &str,
        kind: &str,
        recipient: &str,
        name: &str,
        payload: serde_json::Value,
    ) -> Self {
        let mut e = RawEvent::new(Category::Notification, name, vec![channel, kind], payload);
        e.key = Some(recipient.to_owned());
        e
    }

    /// Sets the schema version (1 by default).
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// The topic, CloudEvents type and envelope, after validating every name.
    pub fn into_envelope(
        self,
        service: &str,
        context: &EventContext,
    ) -> Result<Envelope, PublishError> {
        let check = |what: &str, value: &str| -> Result<(), PublishError> {
            crate::event::routing::check_segment(value)
                .map_err(|reason| PublishError::Invalid(format!("{what} {value:?}: {reason}")))
        };
        check("service", service)?;
        check("event name", &self.name)?;
        for segment in &self.route {
            check("topic segment", segment)?;
        }
        if self.version == 0 {
            return Err(PublishError::Invalid(format!(
                "event {:?} has version 0: versions start at 1",
                self.name
            )));
        }
        let at = |i: usize| self.route.get(i).map(String::as_str);
        let route = eventbus_core::category::Route {
            category: self.category,
            name: &self.name,
            aggregate: at(0).filter(|_| self.category == Category::Domain),
            target: at(0).filter(|_| self.category == Category::Integration),
            audit_category: at(0).filter(|_| self.category == Category::Audit),
            channel: at(0).filter(|_| self.category == Category::Notification),
            kind: at(1).filter(|_| self.category == Category::Notification),
        };
        let topic = eventbus_core::category::join(&route.default_topic(), service);
        let event_type = eventbus_core::category::join(&route.event_type(), service);
        if self.key.as_deref().is_some_and(str::is_empty) {
            let field = match self.category {
                Category::Domain => "the aggregate id",
                Category::Audit => "the actor",
                Category::Notification => "the recipient",
                _ => "the key",
            };
            return Err(PublishError::EmptyKey {
                event: event_type,
                field: field.to_owned(),
            });
        }
        crate::event::routing::check_topic(&topic).map_err(PublishError::Invalid)?;
        let payload =
            serde_json::to_vec(&self.payload).map_err(|source| PublishError::Serialize {
                event: "raw event",
                source,
            })?;
        let described = crate::envelope::Described {
            source: service.to_owned().into(),
            event_type: event_type.into(),
            subject: self.subject,
            topic: topic.into(),
            key: self.key,
            category: self.category,
            version: self.version,
        };
        Ok(Envelope::stamp(described, context, payload))
    }
}
