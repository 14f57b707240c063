//! Every error type of the crate, in one place: what each says names the thing that is wrong and
//! what to do.

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
    /// An event built at run time (see [`crate::bus::RawEvent`]) has an invalid name or route.
    #[error("invalid event: {0}")]
    Invalid(String),
    /// Kafka did not take the event (Direct mode).
    #[cfg(feature = "kafka")]
    #[error("Kafka did not accept event {event_id} for topic `{topic}`: {source}")]
    Kafka {
        /// The event id.
        event_id: Uuid,
        /// The topic.
        topic: String,
        /// What librdkafka said.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The outbox write failed (Transactional mode); the caller's transaction should roll back.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    #[error("cannot write event {event_id} to the outbox table `{table}`: {source}")]
    Outbox {
        /// The event id.
        event_id: Uuid,
        /// The outbox table.
        table: String,
        /// What the database said.
        #[source]
        source: sqlx::Error,
    },
    /// The operation needs another mode (e.g. `enqueue` on a Direct bus).
    #[error("{operation} needs the {needs} mode; this bus is in the {mode:?} mode")]
    WrongMode {
        /// What was attempted.
        operation: &'static str,
        /// The mode it needs.
        needs: &'static str,
        /// The bus's mode.
        mode: crate::config::Mode,
    },
    /// The event's partition key is an empty string. Its key orders and partitions it (the
    /// outbox shard, the Kafka partition, the consumer's per-key queue): an empty one would
    /// put every such event in one line. An `Option` key field set to `None` sends the event
    /// without a key instead.
    #[error(
        "cannot publish event `{event}`: its partition key ({field}) is empty; give it a value, or make the key field an `Option` and leave it `None` to send the event without a key"
    )]
    EmptyKey {
        /// The event's CloudEvents type.
        event: String,
        /// Which field: ``field `order_id` ``, or ``the envelope's `key` ``.
        field: String,
    },
    /// An envelope names a topic Kafka would refuse, or that breaks the naming rules
    /// (`eventbus_core::naming::check_topic`): refused at the call, not later in the relay.
    #[error(
        "cannot publish event `{event}` to topic {topic:?}: {rule}; set a valid topic on the envelope"
    )]
    InvalidTopic {
        /// The event's CloudEvents type.
        event: String,
        /// The topic.
        topic: String,
        /// The rule it breaks.
        rule: String,
    },
}

/// A setting has a value we cannot use: names the setting, what is wrong and what to do, and
/// for a setting read from a configuration file, the file, line and column.
#[derive(Debug)]
pub struct ConfigError {
    setting: String,
    problem: String,
    /// `setting: problem` (a clause of its own) rather than `setting problem` (a predicate).
    colon: bool,
    file: Option<String>,
    at: Option<(u64, u64)>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid configuration")?;
        if let Some(file) = &self.file {
            write!(f, " in {file}")?;
        }
        let join = if self.colon { ": " } else { " " };
        write!(f, ": {}{join}{}", self.setting, self.problem)?;
        if let Some((line, column)) = self.at {
            write!(f, " (line {line}, column {column})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// `setting` (a name) `problem` (a predicate: "is 0: use at least 1").
    pub(crate) fn invalid(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            setting: setting.into(),
            problem: problem.into(),
            colon: false,
            file: None,
            at: None,
        }
    }

    /// `setting`: `problem` (a clause: "expected an unsigned integer, found \"abc\"").
    pub(crate) fn clause(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            colon: true,
            ..ConfigError::invalid(setting, problem)
        }
    }

    /// The same error, for a setting read from the file `shown`, at `at` (line, column) when
    /// known.
    pub(crate) fn in_file(mut self, shown: &str, at: Option<(u64, u64)>) -> Self {
        self.file = Some(shown.to_owned());
        self.at = self.at.or(at);
        self
    }

    /// The same error at `at` (line, column) of the file being read.
    pub(crate) fn at(mut self, at: impl Into<(u64, u64)>) -> Self {
        self.at = Some(at.into());
        self
    }

    /// The setting it names (`outbox.batch_size`, `EVENTBUS_KAFKA_BROKERS`, ...).
    pub fn setting(&self) -> &str {
        &self.setting
    }

    /// The file it was read from, with the line and column, when it came from a file.
    pub fn location(&self) -> Option<(&str, Option<(u64, u64)>)> {
        self.file.as_deref().map(|file| (file, self.at))
    }
}

/// Why a bus could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database is unreachable or refused the migration.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    #[error("cannot use the database at {url}: {source}; check the URL and that the server is up")]
    Database {
        /// The URL, without its password.
        url: String,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
    /// The brokers did not answer within the start-up check
    /// ([`Builder::kafka_check`](crate::bus::Builder::kafka_check)).
    #[cfg(feature = "kafka")]
    #[error(
        "Kafka at {servers} did not answer within {waited:?} ({error}): check that the brokers are up and reachable from here, and that EVENTBUS_KAFKA_BROKERS (or the KafkaConfig) names them; to start without Kafka, set EVENTBUS_KAFKA_CHECK_SECS=0 or call `Builder::kafka_check(None)` (a Transactional bus keeps its events in the outbox until Kafka is back)"
    )]
    KafkaUnreachable {
        /// The bootstrap servers.
        servers: String,
        /// How long the check waited.
        waited: std::time::Duration,
        /// What librdkafka said.
        error: String,
    },
    /// The Kafka client could not be created.
    #[cfg(feature = "kafka")]
    #[error(
        "cannot create the Kafka client for {servers}: {source}; check the bootstrap servers and properties"
    )]
    Kafka {
        /// The bootstrap servers.
        servers: String,
        /// What librdkafka said.
        #[source]
        source: rdkafka::error::KafkaError,
    },
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
    /// The record carries the event type in another schema version.
    #[error(
        "expected version {expected} of `{event_type}`, found version {found}: decode it as the type declared for that version"
    )]
    WrongVersion {
        /// The type.
        event_type: &'static str,
        /// The version asked for.
        expected: u32,
        /// The record's `ce_schemaversion`.
        found: u32,
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
    /// A header's name is not UTF-8 text: the record's headers cannot be read (the record is
    /// dead-lettered without them).
    #[error(
        "a header name of the record is not UTF-8, so none of its headers can be read: have the producer write header names as UTF-8 text"
    )]
    HeaderNameNotUtf8,
    /// A header has a value we cannot read.
    #[error("the `{header}` header is invalid: {reason}")]
    BadHeader {
        /// The header name.
        header: String,
        /// What is wrong.
        reason: String,
    },
    /// The consumer handles this event type, but not in this schema version.
    #[error(
        "no handler here reads version {version} of `{event_type}` (this consumer handles version(s) {handled:?}): \
         add a handler for the new version's type, or have the producer send a version listed"
    )]
    UnhandledVersion {
        /// The record's `ce_type`.
        event_type: String,
        /// The record's schema version.
        version: u32,
        /// The versions this consumer's handlers read.
        handled: Vec<u32>,
    },
    /// The payload is not JSON, which typed handlers read.
    #[error(
        "the record's content-type is `{content_type}`: typed handlers read JSON \
         (`application/json` or a `+json` type), send the event as JSON"
    )]
    ContentType {
        /// The record's `content-type`.
        content_type: String,
    },
}

/// The error a handler returns.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a consumer could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// `start` was called before any handler was added.
    #[error(
        "the consumer `{group}` has no handlers: add one with `.on::<Event, _>(handler)` before `start`"
    )]
    NoHandlers {
        /// The consumer group.
        group: String,
    },
    /// Two Rust types are handled as the same event type and version on one topic.
    #[error(
        "the consumer `{group}` handles `{event_type}` v{version} on `{topic}` as two Rust types, `{first}` and `{second}`: a record of it could be decoded as either; declare each event type and version with one Rust type (give the other its own `name` or `version`), or handle it once"
    )]
    TwoTypesForOneEvent {
        /// The consumer group.
        group: String,
        /// The topic.
        topic: &'static str,
        /// The CloudEvents type both claim.
        event_type: &'static str,
        /// The version both claim.
        version: u32,
        /// The first type's name.
        first: &'static str,
        /// The second type's name.
        second: &'static str,
    },
    /// The Kafka consumer could not be created or subscribed.
    #[cfg(feature = "kafka")]
    #[error(
        "cannot consume {topics:?} as group `{group}`: {}",
        crate::config::redact::kafka_error_text(source)
    )]
    Kafka {
        /// The group.
        group: String,
        /// The topics.
        topics: Vec<&'static str>,
        /// What librdkafka said.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The inbox table could not be created.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    #[error("cannot create the inbox table: {0}")]
    Inbox(#[source] sqlx::Error),
    /// The bus has no transport this build can consume from.
    #[error(
        "the consumer `{group}` cannot start on a {mode:?} bus: its consumers read from Kafka, and this build of eventbus has no `kafka` feature; enable it in Cargo.toml"
    )]
    NoTransport {
        /// The group.
        group: String,
        /// The bus's mode.
        mode: crate::config::Mode,
    },
}

/// Why a relay stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The relay task panicked or was aborted.
    #[error("the relay task ended abnormally: {0}")]
    Task(String),
}

/// Why a replay of a dead-letter topic failed.
#[cfg(feature = "kafka")]
#[derive(Debug, thiserror::Error)]
#[error("cannot replay the dead-letter topic `{dead_letter_topic}`: {source}")]
pub struct ReplayError {
    pub(crate) dead_letter_topic: String,
    #[source]
    pub(crate) source: rdkafka::error::KafkaError,
}

/// Why events were not appended to a stream (`eventbus::store::EventStore::append`). Nothing was
/// written: the append's transaction (or the caller's, for `append_in`) must roll back.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The stream is not at the expected version: another append won.
    #[error("{}", conflict_text(stream_type, stream_id, *expected, *actual, *winner))]
    Conflict {
        /// The aggregate type.
        stream_type: &'static str,
        /// The aggregate id.
        stream_id: String,
        /// The version the append expected.
        expected: crate::store::ExpectedVersion,
        /// The stream's version when the append was refused.
        actual: u64,
        /// The event that took the version after the expected one: the winner's first event
        /// (`None` when the stream is behind the expected version).
        winner: Option<Uuid>,
    },
    /// An event's aggregate id is not the stream's.
    #[error(
        "event `{event_type}` has the aggregate id {found:?}, but it is appended to the stream `{stream_type}/{stream_id}`: an aggregate's stream holds only events of that aggregate id"
    )]
    WrongStream {
        /// The aggregate type.
        stream_type: &'static str,
        /// The stream appended to.
        stream_id: String,
        /// The event's CloudEvents type.
        event_type: &'static str,
        /// Its aggregate id.
        found: Option<String>,
    },
    /// No events were given.
    #[error("no events to append to the stream `{stream_type}/{stream_id}`")]
    NoEvents {
        /// The aggregate type.
        stream_type: &'static str,
        /// The stream.
        stream_id: String,
    },
    /// An event could not be published through the outbox (serialization, an empty key, the
    /// outbox write, or a bus that is not Transactional).
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The event store's database refused the append.
    #[error("cannot append to the event store `{table}`: {source}")]
    Database {
        /// The events table.
        table: String,
        /// What the database said.
        #[source]
        source: sqlx::Error,
    },
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
fn conflict_text(
    stream_type: &str,
    stream_id: &str,
    expected: crate::store::ExpectedVersion,
    actual: u64,
    winner: Option<Uuid>,
) -> String {
    use crate::store::ExpectedVersion;
    let wanted = match expected {
        ExpectedVersion::Any => "any version".to_owned(),
        ExpectedVersion::NoStream => "no stream (version 0)".to_owned(),
        ExpectedVersion::Exact(v) => format!("version {v}"),
    };
    let who = match (expected, winner) {
        (ExpectedVersion::Exact(v), Some(id)) => format!(
            "event {id} took version {} first (a concurrent append committed before this one)",
            v + 1
        ),
        (ExpectedVersion::NoStream, Some(id)) => {
            format!("event {id} created it first (a concurrent append committed before this one)")
        }
        _ => "the expected version was never appended".to_owned(),
    };
    format!(
        "conflict on stream `{stream_type}/{stream_id}`: the append expected {wanted}, but the stream is at version {actual}; {who}; load the aggregate again and retry the command"
    )
}

/// Why a stream could not be loaded or read (`eventbus::store::EventStore::load`).
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A stored event's type and schema version is not one the aggregate lists or upcasts.
    #[error(
        "stream `{stream_type}/{stream_id}` version {version} holds `{event_type}` in schema version {schema_version}, which the aggregate neither lists in `events(...)` nor upcasts: keep every stored version decodable (declare the old version's struct and `upcast(Old => New)`)"
    )]
    Unknown {
        /// The aggregate type.
        stream_type: &'static str,
        /// The stream.
        stream_id: String,
        /// The event's version in the stream.
        version: u64,
        /// Its CloudEvents type.
        event_type: String,
        /// Its schema version.
        schema_version: u32,
    },
    /// A stored payload does not decode as its type and version.
    #[error(
        "stream `{stream_type}/{stream_id}` version {version}: the payload of `{event_type}` (schema version {schema_version}) does not decode: {source}"
    )]
    Decode {
        /// The aggregate type.
        stream_type: &'static str,
        /// The stream.
        stream_id: String,
        /// The event's version in the stream.
        version: u64,
        /// Its CloudEvents type.
        event_type: String,
        /// Its schema version.
        schema_version: u32,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// The event store's database failed.
    #[error("cannot read the event store `{table}`: {source}")]
    Database {
        /// The events table.
        table: String,
        /// What the database said.
        #[source]
        source: sqlx::Error,
    },
}
