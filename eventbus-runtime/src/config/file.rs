//! The configuration file (AD-008), read by [`Builder::config_file`](crate::bus::Builder::config_file),
//! whose documentation gives the format.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{KafkaConfig, OutboxConfig, Secret};
use crate::error::ConfigError;

/// The file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) mode: Option<FileMode>,
    pub(crate) database_url: Option<String>,
    pub(crate) kafka: Option<FileKafka>,
    pub(crate) outbox: Option<FileOutbox>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FileMode {
    Transactional,
    Direct,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileKafka {
    brokers: String,
    sasl: Option<FileSasl>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSasl {
    #[serde(default = "scram_512")]
    mechanism: String,
    username: String,
    password_env: String,
}

fn scram_512() -> String {
    "SCRAM-SHA-512".to_owned()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileOutbox {
    table: Option<String>,
    batch_size: Option<usize>,
    poll_interval_ms: Option<u64>,
    max_attempts: Option<u32>,
    shards: Option<u32>,
    retention_secs: Option<u64>,
    dead_letter_topic: Option<String>,
}

impl FileConfig {
    /// Reads and checks `path`.
    pub(crate) fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid(
                format!("file {shown}"),
                format!("cannot be read: {e}; check the path (relative paths start from the working directory)"),
            )
        })?;
        Self::parse(&text, &shown)
    }

    /// Parses the text of the file `shown`.
    pub(crate) fn parse(text: &str, shown: &str) -> Result<FileConfig, ConfigError> {
        if text.trim().is_empty() {
            return Ok(FileConfig::default());
        }
        serde_saphyr::from_str::<FileConfig>(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            ConfigError::invalid(
                format!("file {shown}{at}"),
                format!(
                    "{}; the keys are mode, database_url, kafka (brokers, sasl, properties) and outbox (table, batch_size, poll_interval_ms, max_attempts, shards, retention_secs, dead_letter_topic)",
                    e.without_snippet()
                ),
            )
        })
    }
}

impl FileKafka {
    /// The Kafka settings, the SASL password read from its variable.
    pub(crate) fn into_config(self) -> Result<KafkaConfig, ConfigError> {
        let mut config = KafkaConfig::new(&self.brokers);
        if config.bootstrap_servers.is_empty() {
            return Err(ConfigError::invalid(
                "kafka.brokers",
                "is empty: give host:port[,host:port]",
            ));
        }
        if let Some(sasl) = self.sasl {
            let password = std::env::var(&sasl.password_env).map_err(|_| {
                ConfigError::invalid(
                    "kafka.sasl.password_env",
                    format!(
                        "names {}, which is not set: export the password in it",
                        sasl.password_env
                    ),
                )
            })?;
            config =
                config.with_sasl_scram(&sasl.mechanism, &sasl.username, Secret::new(password))?;
        }
        for (key, value) in self.properties {
            config = config.with_property(&key, value);
        }
        Ok(config)
    }
}

impl FileOutbox {
    /// `base` with what the file sets.
    pub(crate) fn apply(self, mut base: OutboxConfig) -> OutboxConfig {
        if let Some(v) = self.table {
            base.table = v;
        }
        if let Some(v) = self.batch_size {
            base.batch_size = v;
        }
        if let Some(v) = self.poll_interval_ms {
            base.poll_interval = Duration::from_millis(v);
        }
        if let Some(v) = self.max_attempts {
            base.max_attempts = v;
        }
        if let Some(v) = self.shards {
            base.shards = v;
        }
        if let Some(v) = self.retention_secs {
            base.retention = Duration::from_secs(v);
        }
        if let Some(v) = self.dead_letter_topic {
            base.dead_letter_topic = Some(v);
        }
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_reads() {
        let file = FileConfig::parse(
            "mode: direct\n\
             database_url: sqlite:///tmp/x.db\n\
             kafka:\n  brokers: a:9092, b:9092\n  properties:\n    linger.ms: \"5\"\n\
             outbox:\n  table: app.outbox\n  batch_size: 50\n  poll_interval_ms: 20\n  max_attempts: 3\n  shards: 4\n  retention_secs: 60\n  dead_letter_topic: app.dead-letters\n",
            "eventbus.yaml",
        )
        .unwrap();
        assert_eq!(file.mode, Some(FileMode::Direct));
        assert_eq!(file.database_url.as_deref(), Some("sqlite:///tmp/x.db"));
        let kafka = file.kafka.unwrap().into_config().unwrap();
        assert_eq!(kafka.bootstrap_servers, ["a:9092", "b:9092"]);
        assert_eq!(
            kafka.properties.get("linger.ms").map(String::as_str),
            Some("5")
        );
        let outbox = file.outbox.unwrap().apply(OutboxConfig::default());
        assert_eq!(
            (
                outbox.table.as_str(),
                outbox.batch_size,
                outbox.poll_interval,
                outbox.max_attempts,
                outbox.shards,
                outbox.retention,
                outbox.dead_letter_topic.as_deref()
            ),
            (
                "app.outbox",
                50,
                Duration::from_millis(20),
                3,
                4,
                Duration::from_secs(60),
                Some("app.dead-letters")
            )
        );
        // What the file does not set keeps its value.
        let partial = FileConfig::parse("outbox:\n  shards: 2\n", "f.yaml").unwrap();
        let outbox = partial.outbox.unwrap().apply(OutboxConfig::default());
        assert_eq!(
            (outbox.shards, outbox.batch_size),
            (2, OutboxConfig::default().batch_size)
        );
        assert!(
            FileConfig::parse("  \n", "empty.yaml")
                .unwrap()
                .kafka
                .is_none()
        );
    }

    #[test]
    fn mistakes_name_the_file_the_line_and_the_setting() {
        let unknown = FileConfig::parse("outbox:\n  batch_sise: 5\n", "eventbus.yaml")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("eventbus.yaml:2:"), "{unknown}");
        assert!(unknown.contains("batch_sise"), "{unknown}");
        let wrong_type = FileConfig::parse("outbox:\n  shards: many\n", "eventbus.yaml")
            .unwrap_err()
            .to_string();
        assert!(wrong_type.contains("eventbus.yaml:2:"), "{wrong_type}");
        let bad_mode = FileConfig::parse("mode: fast\n", "eventbus.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            bad_mode.contains("eventbus.yaml:1:") && bad_mode.contains("fast"),
            "{bad_mode}"
        );
        let missing = FileConfig::read(Path::new("/nonexistent/eventbus.yaml"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("/nonexistent/eventbus.yaml"), "{missing}");
    }

    #[test]
    fn the_sasl_password_comes_from_its_variable_only() {
        let file = FileConfig::parse(
            "kafka:\n  brokers: k:9093\n  sasl:\n    username: svc\n    password_env: EVENTBUS_TEST_NO_SUCH_VARIABLE\n",
            "eventbus.yaml",
        )
        .unwrap();
        let error = file.kafka.unwrap().into_config().unwrap_err().to_string();
        assert!(
            error.contains("EVENTBUS_TEST_NO_SUCH_VARIABLE") && error.contains("not set"),
            "{error}"
        );
        let inline = FileConfig::parse(
            "kafka:\n  brokers: k:9093\n  sasl:\n    username: svc\n    password: hunter2\n",
            "eventbus.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(inline.contains("password"), "{inline}");
    }
}
