//! The seed's unified interface (AD-002): a publish method per category, each accepting only its
//! category, and [`TopicPublisher`], bound to one topic type.

use std::marker::PhantomData;

use super::{EventBus, Receipt};
use crate::BoxFuture;
use crate::error::PublishError;
use crate::event::{
    AcceptsAudit, AcceptsDomain, AcceptsIntegration, AcceptsNotification, AcceptsSystem, Event,
    OwnedBy, RoutedTo, Service, Topic,
};

impl<S: Service> EventBus<S> {
    /// Publishes a domain event of this service (the seed's `publish_domain_event`).
    pub fn publish_domain<E>(&self, event: &E) -> BoxFuture<'_, Result<Receipt, PublishError>>
    where
        E: Event + OwnedBy<S>,
        E::Category: AcceptsDomain<E, E::Topic>,
    {
        self.publish(event)
    }

    /// Publishes an integration event.
    pub fn publish_integration<E>(&self, event: &E) -> BoxFuture<'_, Result<Receipt, PublishError>>
    where
        E: Event + OwnedBy<S>,
        E::Category: AcceptsIntegration<E, E::Topic>,
    {
        self.publish(event)
    }

    /// Publishes an audit event (the seed's `publish_audit_event`).
    pub fn publish_audit<E>(&self, event: &E) -> BoxFuture<'_, Result<Receipt, PublishError>>
    where
        E: Event + OwnedBy<S>,
        E::Category: AcceptsAudit<E, E::Topic>,
    {
        self.publish(event)
    }

    /// Publishes a system event.
    pub fn publish_system<E>(&self, event: &E) -> BoxFuture<'_, Result<Receipt, PublishError>>
    where
        E: Event + OwnedBy<S>,
        E::Category: AcceptsSystem<E, E::Topic>,
    {
        self.publish(event)
    }

    /// Publishes a notification event (the seed's `publish_notification_event`).
    pub fn publish_notification<E>(&self, event: &E) -> BoxFuture<'_, Result<Receipt, PublishError>>
    where
        E: Event + OwnedBy<S>,
        E::Category: AcceptsNotification<E, E::Topic>,
    {
        self.publish(event)
    }

    /// A publisher bound to topic `T`: it accepts only events routed to `T`.
    pub fn publisher<T: Topic>(&self) -> TopicPublisher<S, T> {
        TopicPublisher {
            bus: self.clone(),
            _topic: PhantomData,
        }
    }
}

/// A publisher bound to one topic type; see [`EventBus::publisher`].
pub struct TopicPublisher<S: Service, T: Topic> {
    bus: EventBus<S>,
    _topic: PhantomData<fn() -> T>,
}

impl<S: Service, T: Topic> TopicPublisher<S, T> {
    /// The topic's name.
    pub fn topic(&self) -> &'static str {
        T::NAME
    }

    /// Publishes an event routed to `T`.
    pub fn publish<E>(&self, event: &E) -> BoxFuture<'_, Result<Receipt, PublishError>>
    where
        E: RoutedTo<T> + OwnedBy<S>,
    {
        self.bus.publish(event)
    }
}
