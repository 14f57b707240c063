//! The bounds of the category methods: `publish_audit` takes `E` when
//! `E::Category: AcceptsAudit<E, E::Topic>`, and so on.
//!
//! Each category marker accepts its own method. For the four other markers the impl requires a
//! trait of the event that nothing implements (`E: DomainNotAudit<T>`, ...): the compiler
//! reports that trait, and its message names the method that fits the event. Written out, one
//! trait per pair, because a diagnostic message is a literal.

use super::category;

/// The bound of `publish_domain`: implemented by the [`category::Domain`] marker; the other markers
/// implement it only for events of a never-implemented trait, whose message names their method.
#[diagnostic::on_unimplemented(
    message = "`{E}` (category `{Self}`, topic `{T}`) cannot go through `publish_domain`",
    label = "not a domain event",
    note = "publish `{E}` with the method of its own category, or with `publish`, which takes any event",
    note = "`publish_domain` takes events declared with `#[derive(DomainEvent)]`"
)]
pub trait AcceptsDomain<E, T> {}
impl<E, T> AcceptsDomain<E, T> for category::Domain {}
impl<E: IntegrationNotDomain<T>, T> AcceptsDomain<E, T> for category::Integration {}
/// Not implemented: an integration event given to `publish_domain` is told to use `publish_integration`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is an integration event (topic `{T}`), so it cannot go through `publish_domain`",
    label = "not a domain event",
    note = "publish `{Self}` with `publish_integration`, the method of integration events, or with `publish`, which takes any event",
    note = "`publish_domain` takes events declared with `#[derive(DomainEvent)]`"
)]
pub trait IntegrationNotDomain<T> {}
impl<E: AuditNotDomain<T>, T> AcceptsDomain<E, T> for category::Audit {}
/// Not implemented: an audit event given to `publish_domain` is told to use `publish_audit`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is an audit event (topic `{T}`), so it cannot go through `publish_domain`",
    label = "not a domain event",
    note = "publish `{Self}` with `publish_audit`, the method of audit events, or with `publish`, which takes any event",
    note = "`publish_domain` takes events declared with `#[derive(DomainEvent)]`"
)]
pub trait AuditNotDomain<T> {}
impl<E: SystemNotDomain<T>, T> AcceptsDomain<E, T> for category::System {}
/// Not implemented: a system event given to `publish_domain` is told to use `publish_system`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a system event (topic `{T}`), so it cannot go through `publish_domain`",
    label = "not a domain event",
    note = "publish `{Self}` with `publish_system`, the method of system events, or with `publish`, which takes any event",
    note = "`publish_domain` takes events declared with `#[derive(DomainEvent)]`"
)]
pub trait SystemNotDomain<T> {}
impl<E: NotificationNotDomain<T>, T> AcceptsDomain<E, T> for category::Notification {}
/// Not implemented: a notification event given to `publish_domain` is told to use `publish_notification`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a notification event (topic `{T}`), so it cannot go through `publish_domain`",
    label = "not a domain event",
    note = "publish `{Self}` with `publish_notification`, the method of notification events, or with `publish`, which takes any event",
    note = "`publish_domain` takes events declared with `#[derive(DomainEvent)]`"
)]
pub trait NotificationNotDomain<T> {}

/// The bound of `publish_integration`: implemented by the [`category::Integration`] marker; the other markers
/// implement it only for events of a never-implemented trait, whose message names their method.
#[diagnostic::on_unimplemented(
    message = "`{E}` (category `{Self}`, topic `{T}`) cannot go through `publish_integration`",
    label = "not an integration event",
    note = "publish `{E}` with the method of its own category, or with `publish`, which takes any event",
    note = "`publish_integration` takes events declared with `#[derive(IntegrationEvent)]`"
)]
pub trait AcceptsIntegration<E, T> {}
impl<E, T> AcceptsIntegration<E, T> for category::Integration {}
impl<E: DomainNotIntegration<T>, T> AcceptsIntegration<E, T> for category::Domain {}
/// Not implemented: a domain event given to `publish_integration` is told to use `publish_domain`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a domain event (topic `{T}`), so it cannot go through `publish_integration`",
    label = "not an integration event",
    note = "publish `{Self}` with `publish_domain`, the method of domain events, or with `publish`, which takes any event",
    note = "`publish_integration` takes events declared with `#[derive(IntegrationEvent)]`"
)]
pub trait DomainNotIntegration<T> {}
impl<E: AuditNotIntegration<T>, T> AcceptsIntegration<E, T> for category::Audit {}
/// Not implemented: an audit event given to `publish_integration` is told to use `publish_audit`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is an audit event (topic `{T}`), so it cannot go through `publish_integration`",
    label = "not an integration event",
    note = "publish `{Self}` with `publish_audit`, the method of audit events, or with `publish`, which takes any event",
    note = "`publish_integration` takes events declared with `#[derive(IntegrationEvent)]`"
)]
pub trait AuditNotIntegration<T> {}
impl<E: SystemNotIntegration<T>, T> AcceptsIntegration<E, T> for category::System {}
/// Not implemented: a system event given to `publish_integration` is told to use `publish_system`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a system event (topic `{T}`), so it cannot go through `publish_integration`",
    label = "not an integration event",
    note = "publish `{Self}` with `publish_system`, the method of system events, or with `publish`, which takes any event",
    note = "`publish_integration` takes events declared with `#[derive(IntegrationEvent)]`"
)]
pub trait SystemNotIntegration<T> {}
impl<E: NotificationNotIntegration<T>, T> AcceptsIntegration<E, T> for category::Notification {}
/// Not implemented: a notification event given to `publish_integration` is told to use `publish_notification`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a notification event (topic `{T}`), so it cannot go through `publish_integration`",
    label = "not an integration event",
    note = "publish `{Self}` with `publish_notification`, the method of notification events, or with `publish`, which takes any event",
    note = "`publish_integration` takes events declared with `#[derive(IntegrationEvent)]`"
)]
pub trait NotificationNotIntegration<T> {}

/// The bound of `publish_audit`: implemented by the [`category::Audit`] marker; the other markers
/// implement it only for events of a never-implemented trait, whose message names their method.
#[diagnostic::on_unimplemented(
    message = "`{E}` (category `{Self}`, topic `{T}`) cannot go through `publish_audit`",
    label = "not an audit event",
    note = "publish `{E}` with the method of its own category, or with `publish`, which takes any event",
    note = "`publish_audit` takes events declared with `#[derive(AuditEvent)]`"
)]
pub trait AcceptsAudit<E, T> {}
impl<E, T> AcceptsAudit<E, T> for category::Audit {}
impl<E: DomainNotAudit<T>, T> AcceptsAudit<E, T> for category::Domain {}
/// Not implemented: a domain event given to `publish_audit` is told to use `publish_domain`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a domain event (topic `{T}`), so it cannot go through `publish_audit`",
    label = "not an audit event",
    note = "publish `{Self}` with `publish_domain`, the method of domain events, or with `publish`, which takes any event",
    note = "`publish_audit` takes events declared with `#[derive(AuditEvent)]`"
)]
pub trait DomainNotAudit<T> {}
impl<E: IntegrationNotAudit<T>, T> AcceptsAudit<E, T> for category::Integration {}
/// Not implemented: an integration event given to `publish_audit` is told to use `publish_integration`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is an integration event (topic `{T}`), so it cannot go through `publish_audit`",
    label = "not an audit event",
    note = "publish `{Self}` with `publish_integration`, the method of integration events, or with `publish`, which takes any event",
    note = "`publish_audit` takes events declared with `#[derive(AuditEvent)]`"
)]
pub trait IntegrationNotAudit<T> {}
impl<E: SystemNotAudit<T>, T> AcceptsAudit<E, T> for category::System {}
/// Not implemented: a system event given to `publish_audit` is told to use `publish_system`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a system event (topic `{T}`), so it cannot go through `publish_audit`",
    label = "not an audit event",
    note = "publish `{Self}` with `publish_system`, the method of system events, or with `publish`, which takes any event",
    note = "`publish_audit` takes events declared with `#[derive(AuditEvent)]`"
)]
pub trait SystemNotAudit<T> {}
impl<E: NotificationNotAudit<T>, T> AcceptsAudit<E, T> for category::Notification {}
/// Not implemented: a notification event given to `publish_audit` is told to use `publish_notification`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a notification event (topic `{T}`), so it cannot go through `publish_audit`",
    label = "not an audit event",
    note = "publish `{Self}` with `publish_notification`, the method of notification events, or with `publish`, which takes any event",
    note = "`publish_audit` takes events declared with `#[derive(AuditEvent)]`"
)]
pub trait NotificationNotAudit<T> {}

/// The bound of `publish_system`: implemented by the [`category::System`] marker; the other markers
/// implement it only for events of a never-implemented trait, whose message names their method.
#[diagnostic::on_unimplemented(
    message = "`{E}` (category `{Self}`, topic `{T}`) cannot go through `publish_system`",
    label = "not a system event",
    note = "publish `{E}` with the method of its own category, or with `publish`, which takes any event",
    note = "`publish_system` takes events declared with `#[derive(SystemEvent)]`"
)]
pub trait AcceptsSystem<E, T> {}
impl<E, T> AcceptsSystem<E, T> for category::System {}
impl<E: DomainNotSystem<T>, T> AcceptsSystem<E, T> for category::Domain {}
/// Not implemented: a domain event given to `publish_system` is told to use `publish_domain`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a domain event (topic `{T}`), so it cannot go through `publish_system`",
    label = "not a system event",
    note = "publish `{Self}` with `publish_domain`, the method of domain events, or with `publish`, which takes any event",
    note = "`publish_system` takes events declared with `#[derive(SystemEvent)]`"
)]
pub trait DomainNotSystem<T> {}
impl<E: IntegrationNotSystem<T>, T> AcceptsSystem<E, T> for category::Integration {}
/// Not implemented: an integration event given to `publish_system` is told to use `publish_integration`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is an integration event (topic `{T}`), so it cannot go through `publish_system`",
    label = "not a system event",
    note = "publish `{Self}` with `publish_integration`, the method of integration events, or with `publish`, which takes any event",
    note = "`publish_system` takes events declared with `#[derive(SystemEvent)]`"
)]
pub trait IntegrationNotSystem<T> {}
impl<E: AuditNotSystem<T>, T> AcceptsSystem<E, T> for category::Audit {}
/// Not implemented: an audit event given to `publish_system` is told to use `publish_audit`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is an audit event (topic `{T}`), so it cannot go through `publish_system`",
    label = "not a system event",
    note = "publish `{Self}` with `publish_audit`, the method of audit events, or with `publish`, which takes any event",
    note = "`publish_system` takes events declared with `#[derive(SystemEvent)]`"
)]
pub trait AuditNotSystem<T> {}
impl<E: NotificationNotSystem<T>, T> AcceptsSystem<E, T> for category::Notification {}
/// Not implemented: a notification event given to `publish_system` is told to use `publish_notification`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a notification event (topic `{T}`), so it cannot go through `publish_system`",
    label = "not a system event",
    note = "publish `{Self}` with `publish_notification`, the method of notification events, or with `publish`, which takes any event",
    note = "`publish_system` takes events declared with `#[derive(SystemEvent)]`"
)]
pub trait NotificationNotSystem<T> {}

/// The bound of `publish_notification`: implemented by the [`category::Notification`] marker; the other markers
/// implement it only for events of a never-implemented trait, whose message names their method.
#[diagnostic::on_unimplemented(
    message = "`{E}` (category `{Self}`, topic `{T}`) cannot go through `publish_notification`",
    label = "not a notification event",
    note = "publish `{E}` with the method of its own category, or with `publish`, which takes any event",
    note = "`publish_notification` takes events declared with `#[derive(NotificationEvent)]`"
)]
pub trait AcceptsNotification<E, T> {}
impl<E, T> AcceptsNotification<E, T> for category::Notification {}
impl<E: DomainNotNotification<T>, T> AcceptsNotification<E, T> for category::Domain {}
/// Not implemented: a domain event given to `publish_notification` is told to use `publish_domain`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a domain event (topic `{T}`), so it cannot go through `publish_notification`",
    label = "not a notification event",
    note = "publish `{Self}` with `publish_domain`, the method of domain events, or with `publish`, which takes any event",
    note = "`publish_notification` takes events declared with `#[derive(NotificationEvent)]`"
)]
pub trait DomainNotNotification<T> {}
impl<E: IntegrationNotNotification<T>, T> AcceptsNotification<E, T> for category::Integration {}
/// Not implemented: an integration event given to `publish_notification` is told to use `publish_integration`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is an integration event (topic `{T}`), so it cannot go through `publish_notification`",
    label = "not a notification event",
    note = "publish `{Self}` with `publish_integration`, the method of integration events, or with `publish`, which takes any event",
    note = "`publish_notification` takes events declared with `#[derive(NotificationEvent)]`"
)]
pub trait IntegrationNotNotification<T> {}
impl<E: AuditNotNotification<T>, T> AcceptsNotification<E, T> for category::Audit {}
/// Not implemented: an audit event given to `publish_notification` is told to use `publish_audit`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is an audit event (topic `{T}`), so it cannot go through `publish_notification`",
    label = "not a notification event",
    note = "publish `{Self}` with `publish_audit`, the method of audit events, or with `publish`, which takes any event",
    note = "`publish_notification` takes events declared with `#[derive(NotificationEvent)]`"
)]
pub trait AuditNotNotification<T> {}
impl<E: SystemNotNotification<T>, T> AcceptsNotification<E, T> for category::System {}
/// Not implemented: a system event given to `publish_notification` is told to use `publish_system`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a system event (topic `{T}`), so it cannot go through `publish_notification`",
    label = "not a notification event",
    note = "publish `{Self}` with `publish_system`, the method of system events, or with `publish`, which takes any event",
    note = "`publish_notification` takes events declared with `#[derive(NotificationEvent)]`"
)]
pub trait SystemNotNotification<T> {}
