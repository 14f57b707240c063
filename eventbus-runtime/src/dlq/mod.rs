//! Dead letters: one header vocabulary for every record that could not be delivered, whether the
//! relay gave up on it (its outbox row moved to the dead table, and the record to the outbox's
//! `dead_letter_topic`) or a consumer did (after its last attempt, to `{topic}.dlq`), and
//! [`read`], which lists them, and [`replay`], which puts either back on its original topic.
//!
//! A dead letter carries the original record (key, headers, payload) plus:
//!
//! | header | what |
//! |---|---|
//! | `eventbus_dlq_topic` | the topic it was bound for (where [`replay`] puts it back) |
//! | `eventbus_dlq_partition`, `eventbus_dlq_offset` | where it was read (consumer only) |
//! | `eventbus_dlq_error` | the last error |
//! | `eventbus_dlq_attempts` | attempts made |
//! | `eventbus_dlq_failed_in` | what gave up: the handler's name, or `eventbus-relay` |
//! | `eventbus_dlq_group` | the consumer group (consumer only) |
//! | `eventbus_dlq_class` | the [`ErrorClass`] of the last error (`broker_refused`, `handler`, ...) |
//!
//! The relay's dead table keeps the class in the dead row's `headers` object, under the same
//! `eventbus_dlq_class` key (no column of its own: the table's schema is unchanged, so tables
//! created by earlier versions need no migration; a row dead-lettered before has no class, and
//! counts as `unknown`). A replay back into the outbox removes it.
//!
//! # Notifications
//!
//! Every dead letter is announced, once:
//!
//! - as a [`DeadLettered`] system event on the topic `system.eventbus.dead_lettered`
//!   ([`DeadLetteredTopic`]), published by what dead-lettered the record (the relay, with its
//!   producer; a Kafka consumer, with its own; a consumer on a Testing bus, through the bus's
//!   in-memory transport, so `bus.recorded()` sees it). The event is declared here with the
//!   project's own `#[derive(SystemEvent)]`, owned by the runtime's service [`Eventbus`]
//!   (`ce_source` `eventbus`): one topic for every service of a cluster, typed, which an alerting
//!   service subscribes to like any other
//!   (`bus.consumer("alerts").subscribe::<DeadLetteredTopic>().on::<DeadLettered, _>(h)`). The
//!   payload names the `service` (the consumer's bus; the relay's, when a bus runs it) and the
//!   outbox `table`, so instances tell their own apart; its key is the dead letter's topic.
//! - to the hook given with `on_dead_letter` (on the consumer, on the bus builder for its
//!   in-process relay, on [`crate::relay::Relay`]): a function called in process, for alerting,
//!   before the event is published. A hook that panics is logged, not propagated.
//!
//! **How many.** The notification follows the dead letter's write: a consumer publishes it after
//! the dead-letter topic acknowledged the record and before the record's offset is stored; the
//! relay after the dead-letter topic (when it has one) and before the row moves to the dead table.
//! Retries of the dead-letter write do not repeat it. A crash between the dead letter and the
//! offset commit (or the row's move) redelivers the record, which is dead-lettered and announced
//! again: at least once, like the dead letter itself. A failure to publish the notification is
//! logged (and retried by the consumer, whose offset waits for it); the hook was already called.
//! A dead letter of a [`DeadLettered`] event itself (an alerting consumer that fails) is not
//! announced on the topic, so that a failing consumer of notifications cannot feed itself; its
//! hook is still called.

use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

#[cfg(feature = "kafka")]
mod records;
#[cfg(feature = "kafka")]
pub use records::*;

/// The header (and, in the dead table, the key of the dead row's `headers`) holding the
/// [`ErrorClass`] of the last error ([`ErrorClass::as_str`]).
pub const CLASS: &str = "eventbus_dlq_class";

/// Why a record was dead-lettered: the class of its last error, so operators count by cause.
///
/// It travels with the dead letter (the `eventbus_dlq_class` header), its counter's `class`
/// label, its gauges and its notification ([`DeadLettered::class`]); [`ErrorClass::as_str`] is the
/// text in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The path to a dependency failed (a broker or database unreachable, an inbox transaction
    /// that did not commit): a retry later may succeed.
    Transient,
    /// The broker refused the record itself (too large, invalid, not authorized for the topic):
    /// retrying does not help.
    BrokerRefused,
    /// The record is not what the consumer reads: bad CloudEvents headers, a version no handler
    /// reads, not JSON, a payload that does not match the event's schema (a contract error).
    Decode,
    /// A handler returned an error.
    Handler,
    /// A handler did not finish within the retry policy's attempt timeout, or the broker did not
    /// acknowledge in time.
    Timeout,
    /// A handler panicked.
    Panic,
}

impl ErrorClass {
    /// Every class, in declaration order.
    pub const ALL: [ErrorClass; 6] = [
        ErrorClass::Transient,
        ErrorClass::BrokerRefused,
        ErrorClass::Decode,
        ErrorClass::Handler,
        ErrorClass::Timeout,
        ErrorClass::Panic,
    ];

    /// Its stable snake_case name: the header value, the metric label, the JSON value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::BrokerRefused => "broker_refused",
            ErrorClass::Decode => "decode",
            ErrorClass::Handler => "handler",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Panic => "panic",
        }
    }

    /// The class named `name` ([`ErrorClass::as_str`]).
    pub fn from_name(name: &str) -> Option<Self> {
        ErrorClass::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The class of an error of the Kafka producer: the relay's failed sends.
    #[cfg(feature = "kafka")]
    pub(crate) fn of_kafka(error: &rdkafka::error::KafkaError) -> Self {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode as C;
        match error.rdkafka_error_code() {
            Some(C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut) => {
                ErrorClass::Timeout
            }
            Some(
                C::AllBrokersDown
                | C::BrokerTransportFailure
                | C::QueueFull
                | C::NetworkException
                | C::NotLeaderForPartition
                | C::LeaderNotAvailable
                | C::NotEnoughReplicas
                | C::NotEnoughReplicasAfterAppend
                | C::UnknownTopicOrPartition
                | C::NotCoordinator
                | C::CoordinatorNotAvailable
                | C::BrokerNotAvailable
                | C::Fatal,
            ) => ErrorClass::Transient,
            // Whatever else the broker answered is about the record (too large, invalid, not
            // authorized, a policy): retrying it does not help.
            Some(_) => ErrorClass::BrokerRefused,
            None if matches!(error, KafkaError::Canceled) => ErrorClass::Transient,
            None => ErrorClass::BrokerRefused,
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorClass {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorClass::from_name(s).ok_or_else(|| {
            let names: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
            format!("no error class `{s}`: one of {}", names.join(", "))
        })
    }
}

/// The service of the events the runtime publishes itself (`ce_source` `eventbus`): the owner of
/// [`DeadLettered`].
#[derive(eventbus_derive::Service, Debug, Clone, Copy)]
#[service(name = "eventbus", crate = crate)]
pub struct Eventbus;

/// A record was dead-lettered, by the relay or by a consumer: what, where, why (its class), after
/// how many attempts.
#[derive(eventbus_derive::SystemEvent, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[event(service = Eventbus, crate = crate)]
pub struct DeadLettered {
    /// The class of the last error.
    pub class: ErrorClass,
    /// What gave up: the handler's name, `decoder`, or `eventbus-relay`.
    pub failed_in: String,
    /// The topic the record was bound for (relay) or read from (consumer): the partition key.
    #[event(key)]
    pub topic: String,
    /// Where the dead letter went: the dead-letter topic (`None`: a relay without one, whose dead
    /// letters are only in its dead table; a Testing bus).
    pub dead_letter_topic: Option<String>,
    /// The relay's outbox table (its dead table is `{table}_dead`).
    pub table: Option<String>,
    /// The consumer group (consumer).
    pub group: Option<String>,
    /// The service of the consumer's bus, or of the bus running the relay.
    pub service: Option<String>,
    /// The partition the record was read from (consumer on Kafka).
    pub partition: Option<i32>,
    /// Its offset there.
    pub offset: Option<i64>,
    /// The record's `ce_type`, when it has one.
    pub event_type: Option<String>,
    /// The record's `ce_id`, when it has one.
    pub event_id: Option<String>,
    /// The last error.
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
    /// When it was dead-lettered (RFC 3339, UTC).
    pub dead_lettered_at: String,
}

impl DeadLettered {
    /// The time now, as [`DeadLettered::dead_lettered_at`] has it.
    pub(crate) fn now() -> String {
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    }

    /// True when this announces the dead letter of a notification: it is not published (see the
    /// module's docs).
    pub(crate) fn is_of_a_notification(&self) -> bool {
        self.event_type.as_deref() == Some(DeadLettered::EVENT_TYPE)
    }

    /// Its envelope, caused by the dead record.
    pub(crate) fn envelope(&self) -> Option<crate::Envelope> {
        let context = crate::EventContext {
            causation_id: self.event_id.clone(),
            ..crate::EventContext::default()
        };
        match crate::Envelope::new(self, &context) {
            Ok(envelope) => Some(envelope),
            Err(e) => {
                tracing::error!(error = %e, "eventbus: cannot encode a dead-letter notification");
                None
            }
        }
    }
}

/// The function given to `on_dead_letter`: called once per dead letter, in process.
pub type DeadLetterHook = Arc<dyn Fn(&DeadLettered) + Send + Sync>;

/// Calls `hook`, if any, with `notice`; a panic in it is logged.
pub(crate) fn call_hook(hook: Option<&DeadLetterHook>, notice: &DeadLettered) {
    let Some(hook) = hook else { return };
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(notice))).is_err() {
        tracing::error!(topic = %notice.topic, class = %notice.class,
            "eventbus: the on_dead_letter hook panicked");
    }
}

/// The dead-letter topics this process writes to (consumers' `{topic}.dlq` or their own, the
/// relay's `dead_letter_topic`): the operations API counts their records for its gauges.
pub(crate) fn known_topics() -> Vec<String> {
    let mut topics: Vec<String> = crate::lock(registry()).iter().cloned().collect();
    topics.sort();
    topics
}

/// Remembers `topic` as a dead-letter topic of this process.
pub(crate) fn register_topic(topic: &str) {
    let mut known = crate::lock(registry());
    if !known.iter().any(|t| t == topic) {
        known.push(topic.to_owned());
    }
}

fn registry() -> &'static Mutex<Vec<String>> {
    static KNOWN: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    KNOWN.get_or_init(Mutex::default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, SystemEvent};

    #[test]
    fn the_notification_is_a_system_event_of_the_runtime_service() {
        fn system<E: SystemEvent>() {}
        system::<DeadLettered>();
        assert_eq!(DeadLettered::TOPIC, "system.eventbus.dead_lettered");
        assert_eq!(DeadLettered::EVENT_TYPE, "eventbus.dead_lettered");
        let notice = DeadLettered {
            class: ErrorClass::BrokerRefused,
            failed_in: "eventbus-relay".into(),
            topic: "domain.petstore.order".into(),
            dead_letter_topic: None,
            table: Some("eventbus_outbox".into()),
            group: None,
            service: Some("petstore".into()),
            partition: None,
            offset: None,
            event_type: Some("petstore.order.order_placed".into()),
            event_id: Some("0193".into()),
            error: "Message size too large".into(),
            attempts: 3,
            dead_lettered_at: DeadLettered::now(),
        };
        assert_eq!(
            notice.partition_key().as_deref(),
            Some("domain.petstore.order")
        );
        let json = serde_json::to_value(&notice).unwrap();
        assert_eq!(json["class"], "broker_refused");
        let envelope = notice.envelope().unwrap();
        assert_eq!(envelope.source, "eventbus");
        assert_eq!(envelope.causation_id.as_deref(), Some("0193"));
        assert_eq!(envelope.decode::<DeadLettered>().unwrap(), notice);
    }

    #[test]
    fn a_class_reads_back_from_its_name() {
        for class in ErrorClass::ALL {
            assert_eq!(class.as_str().parse::<ErrorClass>(), Ok(class));
            assert_eq!(
                serde_json::to_value(class).unwrap(),
                serde_json::Value::from(class.as_str())
            );
        }
        assert!("outage".parse::<ErrorClass>().is_err());
    }

    #[cfg(feature = "kafka")]
    #[test]
    fn producer_errors_are_classified() {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode as C;
        let class = |code| ErrorClass::of_kafka(&KafkaError::MessageProduction(code));
        assert_eq!(class(C::MessageSizeTooLarge), ErrorClass::BrokerRefused);
        assert_eq!(class(C::InvalidRecord), ErrorClass::BrokerRefused);
        assert_eq!(
            class(C::TopicAuthorizationFailed),
            ErrorClass::BrokerRefused
        );
        assert_eq!(class(C::MessageTimedOut), ErrorClass::Timeout);
        assert_eq!(class(C::AllBrokersDown), ErrorClass::Transient);
        assert_eq!(
            ErrorClass::of_kafka(&KafkaError::Canceled),
            ErrorClass::Transient
        );
    }
}
