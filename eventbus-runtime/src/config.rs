//! Configuration: Kafka and the outbox, with defaults, overridable by environment (AD-008).
//!
//! Secrets (SASL passwords, database passwords) never appear in `Debug` output or logs.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::error::ConfigError;

/// A secret string: shown as `"***"` by `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the client that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// SASL over TLS (`SASL_SSL`) with SCRAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslScram {
    /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// The user.
    pub username: String,
    /// The password (never printed).
    pub password: Secret,
}

/// How to reach Kafka.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `host:port` of one or more brokers.
    pub bootstrap_servers: Vec<String>,
    /// SASL_SSL with SCRAM, when the cluster requires it.
    pub sasl: Option<SaslScram>,
    /// Any librdkafka property (`linger.ms`, `compression.type`, `ssl.ca.location`, ...); applied
    /// last, so it overrides ours. Values of properties whose name contains `password`, `secret`
    /// or `key` are not printed.
    pub properties: BTreeMap<String, String>,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let secret = ["password", "secret", "key"].iter().any(|s| k.contains(s));
                (k.as_str(), if secret { "***" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("sasl", &self.sasl)
            .field("properties", &properties)
            .finish()
    }
}

impl KafkaConfig {
    /// Brokers at `servers` (`"host:port,host:port"`).
    pub fn new(servers: &str) -> Self {
        KafkaConfig {
            bootstrap_servers: servers
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            sasl: None,
            properties: BTreeMap::new(),
        }
    }

    /// From the environment: `EVENTBUS_KAFKA_BROKERS`, and for SASL_SSL
    /// `EVENTBUS_KAFKA_SASL_MECHANISM`, `EVENTBUS_KAFKA_USERNAME`, `EVENTBUS_KAFKA_PASSWORD`.
    /// `None` when no broker is configured (the embedded default applies).
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        let Ok(servers) = std::env::var("EVENTBUS_KAFKA_BROKERS") else {
            return Ok(None);
        };
        let mut config = KafkaConfig::new(&servers);
        if config.bootstrap_servers.is_empty() {
            return Err(ConfigError::invalid(
                "EVENTBUS_KAFKA_BROKERS",
                "is empty: give host:port[,host:port]",
            ));
        }
        if let Ok(username) = std::env::var("EVENTBUS_KAFKA_USERNAME") {
            let password = std::env::var("EVENTBUS_KAFKA_PASSWORD").map_err(|_| {
                ConfigError::invalid(
                    "EVENTBUS_KAFKA_PASSWORD",
                    "is missing while EVENTBUS_KAFKA_USERNAME is set",
                )
            })?;
            let mechanism = std::env::var("EVENTBUS_KAFKA_SASL_MECHANISM")
                .unwrap_or_else(|_| "SCRAM-SHA-512".to_owned());
            config = config.with_sasl_scram(&mechanism, &username, Secret::new(password))?;
        }
        Ok(Some(config))
    }

    /// Uses SASL_SSL with SCRAM (`SCRAM-SHA-256` or `SCRAM-SHA-512`).
    pub fn with_sasl_scram(
        mut self,
        mechanism: &str,
        username: &str,
        password: Secret,
    ) -> Result<Self, ConfigError> {
        if !matches!(mechanism, "SCRAM-SHA-256" | "SCRAM-SHA-512") {
            return Err(ConfigError::invalid(
                "sasl mechanism",
                format!("{mechanism:?} is not supported: use SCRAM-SHA-256 or SCRAM-SHA-512"),
            ));
        }
        self.sasl = Some(SaslScram {
            mechanism: mechanism.to_owned(),
            username: username.to_owned(),
            password,
        });
        Ok(self)
    }

    /// Sets any librdkafka property.
    pub fn with_property(mut self, key: &str, value: impl Into<String>) -> Self {
        self.properties.insert(key.to_owned(), value.into());
        self
    }

    /// The librdkafka configuration: ours, then the user's properties.
    pub(crate) fn client_config(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap_servers.join(","));
        if let Some(sasl) = &self.sasl {
            c.set("security.protocol", "SASL_SSL")
                .set("sasl.mechanism", &sasl.mechanism)
                .set("sasl.username", &sasl.username)
                .set("sasl.password", sasl.password.expose());
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

/// Exponential backoff with full jitter and a cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The factor between two delays.
    pub multiplier: f64,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt + 1` (after `attempt` failures, from 1): a random value
    /// between half and all of `initial * multiplier^(attempt-1)`, capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .multiplier
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let base = self.initial.as_secs_f64() * exp;
        let capped = base.min(self.max.as_secs_f64());
        let jittered = capped * (0.5 + rand::random::<f64>() * 0.5);
        Duration::from_secs_f64(jittered)
    }
}

/// The outbox and its relay.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxConfig {
    /// The outbox table (an SQL identifier, optionally `schema.table`); the dead table is
    /// `{table}_dead`.
    pub table: String,
    /// Rows the relay reads and sends per batch.
    pub batch_size: usize,
    /// How often the relay polls when no notification wakes it.
    pub poll_interval: Duration,
    /// Attempts before a row moves to the dead table.
    pub max_attempts: u32,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// Shards: rows carry `hash(key) mod shards`; relays own shards (PostgreSQL advisory locks).
    pub shards: u32,
    /// How long sent rows are kept (`Duration::ZERO`: deleted at once).
    pub retention: Duration,
    /// Also publish dead events to this topic, with the error in headers.
    pub dlq_topic: Option<String>,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            table: "eventbus_outbox".to_owned(),
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            max_attempts: 10,
            backoff: Backoff::default(),
            shards: 16,
            retention: Duration::ZERO,
            dlq_topic: None,
        }
    }
}

impl OutboxConfig {
    /// Checks every value; the error names the setting and what to do.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::outbox::check_table_name(&self.table)?;
        if self.batch_size == 0 {
            return Err(ConfigError::invalid(
                "outbox batch_size",
                "is 0: use at least 1",
            ));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::invalid(
                "outbox max_attempts",
                "is 0: use at least 1",
            ));
        }
        if self.shards == 0 || self.shards > 1024 {
            return Err(ConfigError::invalid(
                "outbox shards",
                format!("is {}: use 1 to 1024", self.shards),
            ));
        }
        if self.backoff.multiplier < 1.0 || self.backoff.initial > self.backoff.max {
            return Err(ConfigError::invalid(
                "outbox backoff",
                "needs multiplier >= 1 and initial <= max",
            ));
        }
        if let Some(dlq) = &self.dlq_topic {
            crate::routing::check_topic(dlq)
                .map_err(|e| ConfigError::invalid("outbox dlq_topic", e))?;
        }
        Ok(())
    }

    /// Overrides from the environment: `EVENTBUS_OUTBOX_TABLE`, `EVENTBUS_OUTBOX_BATCH_SIZE`,
    /// `EVENTBUS_OUTBOX_POLL_MS`, `EVENTBUS_OUTBOX_MAX_ATTEMPTS`, `EVENTBUS_OUTBOX_SHARDS`,
    /// `EVENTBUS_OUTBOX_RETENTION_SECS`, `EVENTBUS_OUTBOX_DLQ_TOPIC`.
    pub fn from_env(mut self) -> Result<Self, ConfigError> {
        fn num<T: std::str::FromStr>(name: &'static str) -> Result<Option<T>, ConfigError> {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| ConfigError::invalid(name, format!("{v:?} is not a number"))),
                Err(_) => Ok(None),
            }
        }
        if let Ok(t) = std::env::var("EVENTBUS_OUTBOX_TABLE") {
            self.table = t;
        }
        if let Some(v) = num("EVENTBUS_OUTBOX_BATCH_SIZE")? {
            self.batch_size = v;
        }
        if let Some(v) = num("EVENTBUS_OUTBOX_POLL_MS")? {
            self.poll_interval = Duration::from_millis(v);
        }
        if let Some(v) = num("EVENTBUS_OUTBOX_MAX_ATTEMPTS")? {
            self.max_attempts = v;
        }
        if let Some(v) = num("EVENTBUS_OUTBOX_SHARDS")? {
            self.shards = v;
        }
        if let Some(v) = num("EVENTBUS_OUTBOX_RETENTION_SECS")? {
            self.retention = Duration::from_secs(v);
        }
        if let Ok(t) = std::env::var("EVENTBUS_OUTBOX_DLQ_TOPIC") {
            self.dlq_topic = Some(t);
        }
        self.validate()?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_printed() {
        let c = KafkaConfig::new("k:9092")
            .with_sasl_scram("SCRAM-SHA-512", "app", Secret::new("hunter2"))
            .unwrap()
            .with_property("ssl.key.password", "hunter3");
        let printed = format!("{c:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("hunter3"),
            "{printed}"
        );
        assert!(printed.contains("app"));
    }

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let d1 = b.delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = b.delay(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            assert!(b.delay(30) <= Duration::from_secs(1));
        }
    }

    #[test]
    fn bad_settings_are_named() {
        let err = OutboxConfig {
            table: "outbox; drop".into(),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("outbox; drop"), "{err}");
        let err = OutboxConfig {
            shards: 0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("shards"), "{err}");
    }
}
