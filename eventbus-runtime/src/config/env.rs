//! The environment (AD-008): `EVENTBUS_KAFKA_*` and `EVENTBUS_OUTBOX_*` over the settings.

use std::time::Duration;

use super::{KafkaConfig, OutboxConfig, Secret};
use crate::error::ConfigError;

impl KafkaConfig {
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
}

impl OutboxConfig {
    /// Overrides from the environment: `EVENTBUS_OUTBOX_TABLE`, `EVENTBUS_OUTBOX_BATCH_SIZE`,
    /// `EVENTBUS_OUTBOX_POLL_MS`, `EVENTBUS_OUTBOX_MAX_ATTEMPTS`, `EVENTBUS_OUTBOX_SHARDS`,
    /// `EVENTBUS_OUTBOX_RETENTION_SECS`, `EVENTBUS_OUTBOX_DEAD_LETTER_TOPIC`.
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
        if let Some(v) = num("EVENTBUS_OUTBOX_COMPACT_ABOVE_BYTES")? {
            self.compact_above_bytes = v;
        }
        if let Ok(t) = std::env::var("EVENTBUS_OUTBOX_DEAD_LETTER_TOPIC") {
            self.dead_letter_topic = Some(t);
        }
        self.validate()?;
        Ok(self)
    }
}
