//! The configuration file (AD-008), read by [`Builder::config_file`](crate::bus::Builder::config_file),
//! whose documentation gives the format.
//!
//! The file is read as a tree of YAML nodes, each with its line and column, and walked by hand, so
//! every mistake names the setting by its path (`outbox.batch_size`), what was expected and what
//! was found, and where: a wrong type, an unknown or misspelt key, a key given twice (with both
//! lines), a missing value. Values of secret settings are never repeated in a message.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::yaml::{
    Kind, Node, checked_keys, mapping, parse, set, settings, string, unsigned, wrong,
};
use super::{KafkaConfig, OutboxConfig, Secret};
use crate::error::ConfigError;

/// The top-level settings, in the order the documentation gives them.
const TOP: &[&str] = &["mode", "database_url", "kafka", "outbox"];
const KAFKA: &[&str] = &["brokers", "sasl", "properties"];
const SASL: &[&str] = &["mechanism", "username", "password_env"];
pub(super) const OUTBOX: &[&str] = &[
    "table",
    "batch_size",
    "poll_interval_ms",
    "max_attempts",
    "shards",
    "retention_secs",
    "dead_letter_topic",
    "compact_above_bytes",
];

/// What the file sets, each setting with where it was written.
#[derive(Debug, Default)]
pub(crate) struct FileConfig {
    pub(crate) mode: Option<FileMode>,
    pub(crate) database_url: Option<String>,
    pub(crate) kafka: Option<FileKafka>,
    pub(crate) outbox: Option<FileOutbox>,
    /// Line and column of each setting, by path (`outbox.batch_size`).
    places: BTreeMap<String, (u64, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileMode {
    Transactional,
    Direct,
}

#[derive(Debug)]
pub(crate) struct FileKafka {
    brokers: Vec<String>,
    sasl: Option<FileSasl>,
    properties: BTreeMap<String, String>,
}

#[derive(Debug)]
struct FileSasl {
    mechanism: String,
    username: String,
    password_env: String,
}

#[derive(Debug, Default)]
pub(crate) struct FileOutbox {
    table: Option<String>,
    batch_size: Option<usize>,
    poll_interval_ms: Option<u64>,
    max_attempts: Option<u32>,
    shards: Option<u32>,
    retention_secs: Option<u64>,
    dead_letter_topic: Option<String>,
    compact_above_bytes: Option<u64>,
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
        Self::walk(text).map_err(|e| e.in_file(shown, None))
    }

    /// Where the setting `path` was written, if the file set it.
    pub(crate) fn place(&self, path: &str) -> Option<(u64, u64)> {
        self.places.get(path).copied()
    }

    /// `error`, about a setting this file (`shown`) set, with the file and the setting's place.
    pub(crate) fn locate(&self, error: ConfigError, shown: &str) -> ConfigError {
        let at = self.place(error.setting());
        error.in_file(shown, at)
    }

    fn walk(text: &str) -> Result<FileConfig, ConfigError> {
        let root = parse(text)?;
        let mut file = FileConfig::default();
        let top = match &root.kind {
            Kind::Null => return Ok(file),
            Kind::Map(entries) => settings("", entries, TOP)?,
            _ => {
                return Err(wrong(
                    "the file",
                    "a mapping of settings (mode, database_url, kafka, outbox)",
                    &root,
                ));
            }
        };
        for (key, node) in &top {
            file.places.insert((*key).to_owned(), node.at.into());
        }
        if let Some(node) = set(&top, "mode") {
            file.mode = Some(match node.as_str() {
                Some("transactional") => FileMode::Transactional,
                Some("direct") => FileMode::Direct,
                _ => return Err(wrong("mode", "`transactional` or `direct`", node)),
            });
        }
        if let Some(node) = set(&top, "database_url") {
            file.database_url = Some(string(
                "database_url",
                node,
                "a URL (postgres://... or sqlite://...)",
            )?);
        }
        if let Some(node) = set(&top, "kafka") {
            file.kafka = Some(FileKafka::walk(node, &mut file.places)?);
        }
        if let Some(node) = set(&top, "outbox") {
            file.outbox = Some(FileOutbox::walk(node, &mut file.places)?);
        }
        Ok(file)
    }
}

impl FileKafka {
    fn walk(node: &Node, places: &mut BTreeMap<String, (u64, u64)>) -> Result<Self, ConfigError> {
        let entries = mapping("kafka", node, "a mapping (brokers, sasl, properties)")?;
        let fields = settings("kafka.", entries, KAFKA)?;
        for (key, node) in &fields {
            places.insert(format!("kafka.{key}"), node.at.into());
        }
        let brokers = match set(&fields, "brokers") {
            None => {
                return Err(ConfigError::clause(
                    "kafka.brokers",
                    "missing: give the bootstrap servers, host:port[,host:port]",
                )
                .at(node.at));
            }
            Some(b) => match &b.kind {
                Kind::Seq(items) => items
                    .iter()
                    .map(|item| string("kafka.brokers", item, "host:port"))
                    .collect::<Result<Vec<_>, _>>()?,
                _ => vec![string(
                    "kafka.brokers",
                    b,
                    "host:port[,host:port] or a list of them",
                )?],
            },
        };
        let sasl = match set(&fields, "sasl") {
            None => None,
            Some(node) => Some(FileSasl::walk(node, places)?),
        };
        let mut properties = BTreeMap::new();
        if let Some(node) = set(&fields, "properties") {
            let entries = mapping(
                "kafka.properties",
                node,
                "a mapping of librdkafka properties",
            )?;
            for (key, value) in checked_keys("kafka.properties.", entries)? {
                let path = format!("kafka.properties.{key}");
                let text = match &value.kind {
                    Kind::Str(s) => s.clone(),
                    Kind::Int(i) => i.to_string(),
                    Kind::Float(f) => f.to_string(),
                    Kind::Bool(b) => b.to_string(),
                    _ => return Err(wrong(&path, "a string, a number or a boolean", value)),
                };
                places.insert(path, value.at.into());
                properties.insert(key.to_owned(), text);
            }
        }
        Ok(FileKafka {
            brokers,
            sasl,
            properties,
        })
    }

    /// The Kafka settings, the SASL password read from its variable.
    pub(crate) fn into_config(self) -> Result<KafkaConfig, ConfigError> {
        let mut config = KafkaConfig::new(&self.brokers.join(","));
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
            config = config
                .with_sasl_scram(&sasl.mechanism, &sasl.username, Secret::new(password))
                .map_err(|_| {
                    ConfigError::clause(
                        "kafka.sasl.mechanism",
                        format!(
                            "expected SCRAM-SHA-256 or SCRAM-SHA-512, found {:?}",
                            sasl.mechanism
                        ),
                    )
                })?;
        }
        for (key, value) in self.properties {
            config = config.with_property(&key, value);
        }
        Ok(config)
    }
}

impl FileSasl {
    fn walk(node: &Node, places: &mut BTreeMap<String, (u64, u64)>) -> Result<Self, ConfigError> {
        let entries = mapping(
            "kafka.sasl",
            node,
            "a mapping (mechanism, username, password_env)",
        )?;
        if let Some((key, _)) = entries.iter().find(|(k, _)| {
            k.as_str()
                .is_some_and(|k| k.contains("password") && k != "password_env")
        }) {
            return Err(ConfigError::clause(
                format!("kafka.sasl.{}", key.as_str().unwrap_or("password")),
                "a password is never read from the file: export it in an environment variable and name that variable with `password_env`",
            )
            .at(key.at));
        }
        let fields = settings("kafka.sasl.", entries, SASL)?;
        for (key, node) in &fields {
            places.insert(format!("kafka.sasl.{key}"), node.at.into());
        }
        let required = |key: &str| -> Result<String, ConfigError> {
            let path = format!("kafka.sasl.{key}");
            match set(&fields, key) {
                Some(value) => string(&path, value, "a string"),
                None => Err(ConfigError::clause(path, "missing: SASL needs it").at(node.at)),
            }
        };
        Ok(FileSasl {
            mechanism: match set(&fields, "mechanism") {
                Some(m) => string("kafka.sasl.mechanism", m, "SCRAM-SHA-256 or SCRAM-SHA-512")?,
                None => "SCRAM-SHA-512".to_owned(),
            },
            username: required("username")?,
            password_env: required("password_env")?,
        })
    }
}

impl FileOutbox {
    fn walk(node: &Node, places: &mut BTreeMap<String, (u64, u64)>) -> Result<Self, ConfigError> {
        let entries = mapping("outbox", node, "a mapping of outbox settings")?;
        let fields = settings("outbox.", entries, OUTBOX)?;
        for (key, node) in &fields {
            places.insert(format!("outbox.{key}"), node.at.into());
        }
        let text = |key: &str, what: &str| -> Result<Option<String>, ConfigError> {
            set(&fields, key)
                .map(|n| string(&format!("outbox.{key}"), n, what))
                .transpose()
        };
        let number = |key: &str| -> Result<Option<u64>, ConfigError> {
            set(&fields, key)
                .map(|n| unsigned(&format!("outbox.{key}"), n))
                .transpose()
        };
        let narrow = |key: &str, limit: u64| -> Result<Option<u64>, ConfigError> {
            match number(key)? {
                Some(v) if v > limit => Err(ConfigError::clause(
                    format!("outbox.{key}"),
                    format!("{v} is too large: at most {limit}"),
                )
                .at(fields[key].at)),
                other => Ok(other),
            }
        };
        let u32_max = u64::from(u32::MAX);
        Ok(FileOutbox {
            table: text("table", "a table name")?,
            batch_size: narrow("batch_size", u32_max)?.map(|v| v as usize),
            poll_interval_ms: number("poll_interval_ms")?,
            max_attempts: narrow("max_attempts", u32_max)?.map(|v| v as u32),
            shards: narrow("shards", u32_max)?.map(|v| v as u32),
            retention_secs: number("retention_secs")?,
            dead_letter_topic: text("dead_letter_topic", "a topic name")?,
            compact_above_bytes: number("compact_above_bytes")?,
        })
    }

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
        if let Some(v) = self.compact_above_bytes {
            base.compact_above_bytes = v;
        }
        base
    }
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
