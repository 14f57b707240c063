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

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::redact::{MASK, is_sensitive_property, redact};
use super::{KafkaConfig, OutboxConfig, Secret};
use crate::error::ConfigError;

/// The top-level settings, in the order the documentation gives them.
const TOP: &[&str] = &["mode", "database_url", "kafka", "outbox"];
const KAFKA: &[&str] = &["brokers", "sasl", "properties"];
const SASL: &[&str] = &["mechanism", "username", "password_env"];
const OUTBOX: &[&str] = &[
    "table",
    "batch_size",
    "poll_interval_ms",
    "max_attempts",
    "shards",
    "retention_secs",
    "dead_letter_topic",
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
            file.places.insert((*key).to_owned(), node.at);
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
            places.insert(format!("kafka.{key}"), node.at);
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
                places.insert(path, value.at);
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
            places.insert(format!("kafka.sasl.{key}"), node.at);
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
            places.insert(format!("outbox.{key}"), node.at);
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
        base
    }
}

// ---- the walk's vocabulary ----

/// The value of `key` in `fields`, unless it is absent or null (an empty value leaves the
/// setting as it was).
fn set<'a>(fields: &BTreeMap<&'a str, &'a Node>, key: &str) -> Option<&'a Node> {
    fields
        .get(key)
        .copied()
        .filter(|n| !matches!(n.kind, Kind::Null))
}

/// `node`'s entries, or the error that `path` wants `what`.
fn mapping<'a>(path: &str, node: &'a Node, what: &str) -> Result<&'a [(Node, Node)], ConfigError> {
    match &node.kind {
        Kind::Map(entries) => Ok(entries),
        _ => Err(wrong(path, what, node)),
    }
}

/// The keys of a mapping as text, each once: a key given twice is an error naming both lines.
fn checked_keys<'a>(
    prefix: &str,
    entries: &'a [(Node, Node)],
) -> Result<Vec<(&'a str, &'a Node)>, ConfigError> {
    let mut seen: BTreeMap<&str, &Node> = BTreeMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let Some(name) = key.as_str() else {
            return Err(wrong(&format!("{prefix}<key>"), "a name", key));
        };
        if let Some(first) = seen.get(name) {
            return Err(ConfigError::clause(
                format!("{prefix}{name}"),
                format!(
                    "set twice, on line {} and on line {}: keep one",
                    first.at.0, key.at.0
                ),
            )
            .at(key.at));
        }
        seen.insert(name, key);
        out.push((name, value));
    }
    Ok(out)
}

/// The settings of a mapping whose keys must be among `known`.
fn settings<'a>(
    prefix: &str,
    entries: &'a [(Node, Node)],
    known: &[&'static str],
) -> Result<BTreeMap<&'a str, &'a Node>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, value) in checked_keys(prefix, entries)? {
        if !known.contains(&name) {
            let key = entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(name))
                .map_or(value.at, |(k, _)| k.at);
            let section = prefix.trim_end_matches('.');
            let hint = match closest(name, known) {
                Some(near) => format!("did you mean `{near}`? "),
                None => String::new(),
            };
            return Err(ConfigError::clause(
                format!("{prefix}{name}"),
                format!(
                    "unknown setting; {hint}the settings {} are {}",
                    if section.is_empty() {
                        "of the file".to_owned()
                    } else {
                        format!("of `{section}`")
                    },
                    known.join(", ")
                ),
            )
            .at(key));
        }
        out.insert(name, value);
    }
    Ok(out)
}

/// The known name nearest to `name`, if it is near enough to be a misspelling.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edits(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// The string at `path`.
fn string(path: &str, node: &Node, what: &str) -> Result<String, ConfigError> {
    match &node.kind {
        Kind::Str(s) => Ok(s.clone()),
        _ => Err(wrong(path, what, node)),
    }
}

/// The unsigned integer at `path` (a quoted one too: `"500"`).
fn unsigned(path: &str, node: &Node) -> Result<u64, ConfigError> {
    match &node.kind {
        Kind::Int(i) => u64::try_from(*i).map_err(|_| wrong(path, "an unsigned integer", node)),
        Kind::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| wrong(path, "an unsigned integer", node)),
        _ => Err(wrong(path, "an unsigned integer", node)),
    }
}

/// "`path`: expected `what`, found ..." at `node`; the value of a secret setting is not shown.
fn wrong(path: &str, what: &str, node: &Node) -> ConfigError {
    let property = path.strip_prefix("kafka.properties.").unwrap_or("");
    let secret = path.starts_with("kafka.sasl.") || is_sensitive_property(property);
    let found = match &node.kind {
        Kind::Str(_) | Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) if secret => {
            format!("{} ({MASK})", node.kind.what())
        }
        Kind::Str(s) => format!("{:?}", redact(s)),
        Kind::Int(i) => i.to_string(),
        Kind::Float(f) => f.to_string(),
        Kind::Bool(b) => b.to_string(),
        other => other.what().to_owned(),
    };
    ConfigError::clause(path, format!("expected {what}, found {found}")).at(node.at)
}

// ---- YAML as a tree of nodes with positions ----

/// A YAML node and where it starts (line, column; from 1).
#[derive(Debug)]
struct Node {
    at: (u64, u64),
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Kind {
    fn what(&self) -> &'static str {
        match self {
            Kind::Null => "nothing",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) | Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

impl Node {
    fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }
}

fn node(s: Spanned<Kind>) -> Node {
    Node {
        at: (s.referenced.line(), s.referenced.column()),
        kind: s.value,
    }
}

/// One YAML document; repeated keys are kept (the walk reports them with both lines).
fn parse(text: &str) -> Result<Node, ConfigError> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
    };
    match serde_saphyr::from_str_with_options::<Option<Spanned<Kind>>>(text, options) {
        Ok(Some(root)) => Ok(node(root)),
        Ok(None) => Ok(Node {
            at: (1, 1),
            kind: Kind::Null,
        }),
        Err(e) => {
            let at = e.location().map(|l| (l.line().max(1), l.column().max(1)));
            let error = ConfigError::clause(
                "YAML",
                format!(
                    "{}; the settings are mode, database_url, kafka (brokers, sasl, properties) and outbox ({})",
                    e.without_snippet(),
                    OUTBOX.join(", ")
                ),
            );
            Err(match at {
                Some(at) => error.at(at),
                None => error,
            })
        }
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        Kind::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Kind, E> {
        Ok(Kind::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Kind>>()? {
            items.push(node(item));
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Kind>>()? {
            let value = map.next_value::<Spanned<Kind>>()?;
            entries.push((node(key), node(value)));
        }
        Ok(Kind::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> String {
        FileConfig::parse(text, "eventbus.yaml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_setting_reads() {
        let file = FileConfig::parse(
            "mode: direct\n\
             database_url: sqlite:///tmp/x.db\n\
             kafka:\n  brokers: a:9092, b:9092\n  properties:\n    linger.ms: \"5\"\n    batch.num.messages: 100\n\
             outbox:\n  table: app.outbox\n  batch_size: 50\n  poll_interval_ms: 20\n  max_attempts: 3\n  shards: 4\n  retention_secs: 60\n  dead_letter_topic: app.dead-letters\n",
            "eventbus.yaml",
        )
        .unwrap();
        assert_eq!(file.mode, Some(FileMode::Direct));
        assert_eq!(file.database_url.as_deref(), Some("sqlite:///tmp/x.db"));
        assert_eq!(file.place("outbox.batch_size"), Some((10, 15)));
        let kafka = file.kafka.unwrap().into_config().unwrap();
        assert_eq!(kafka.bootstrap_servers, ["a:9092", "b:9092"]);
        assert_eq!(
            kafka.properties.get("linger.ms").map(String::as_str),
            Some("5")
        );
        assert_eq!(
            kafka
                .properties
                .get("batch.num.messages")
                .map(String::as_str),
            Some("100")
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
        // What the file does not set keeps its value; so does a setting left empty.
        let partial = FileConfig::parse("outbox:\n  shards: 2\n  table:\n", "f.yaml").unwrap();
        let outbox = partial.outbox.unwrap().apply(OutboxConfig::default());
        assert_eq!(
            (outbox.shards, outbox.batch_size, outbox.table.as_str()),
            (
                2,
                OutboxConfig::default().batch_size,
                crate::config::DEFAULT_OUTBOX_TABLE
            )
        );
        assert!(
            FileConfig::parse("  \n", "empty.yaml")
                .unwrap()
                .kafka
                .is_none()
        );
        let listed = FileConfig::parse("kafka:\n  brokers: [a:1, b:2]\n", "f.yaml").unwrap();
        assert_eq!(
            listed
                .kafka
                .unwrap()
                .into_config()
                .unwrap()
                .bootstrap_servers,
            ["a:1", "b:2"]
        );
    }

    #[test]
    fn a_wrong_type_names_the_setting_what_was_expected_and_found() {
        assert_eq!(
            refused("outbox:\n  batch_size: abc\n"),
            "invalid configuration in eventbus.yaml: outbox.batch_size: expected an unsigned integer, found \"abc\" (line 2, column 15)"
        );
        let negative = refused("outbox:\n  shards: -3\n");
        assert!(
            negative.contains(
                "outbox.shards: expected an unsigned integer, found -3 (line 2, column 11)"
            ),
            "{negative}"
        );
        let list = refused("kafka:\n  brokers: k:9092\n  properties: [a, b]\n");
        assert!(
            list.contains("kafka.properties: expected a mapping of librdkafka properties, found a list (line 3, column 15)"),
            "{list}"
        );
        let mode = refused("mode: fast\n");
        assert!(
            mode.contains(
                "mode: expected `transactional` or `direct`, found \"fast\" (line 1, column 7)"
            ),
            "{mode}"
        );
        let big = refused("outbox:\n  shards: 99999999999\n");
        assert!(
            big.contains("outbox.shards: 99999999999 is too large"),
            "{big}"
        );
        let quoted = FileConfig::parse("outbox:\n  batch_size: \"7\"\n", "f.yaml").unwrap();
        assert_eq!(quoted.outbox.unwrap().batch_size, Some(7));
    }

    #[test]
    fn a_key_given_twice_is_named_with_both_lines() {
        let twice = refused("outbox:\n  batch_size: 5\n  shards: 2\n  batch_size: 6\n");
        assert_eq!(
            twice,
            "invalid configuration in eventbus.yaml: outbox.batch_size: set twice, on line 2 and on line 4: keep one (line 4, column 3)"
        );
        let top = refused("mode: direct\nmode: transactional\n");
        assert!(
            top.contains("mode: set twice, on line 1 and on line 2"),
            "{top}"
        );
        let property =
            refused("kafka:\n  brokers: k:1\n  properties:\n    linger.ms: 1\n    linger.ms: 2\n");
        assert!(
            property.contains("kafka.properties.linger.ms: set twice, on line 4 and on line 5"),
            "{property}"
        );
    }

    #[test]
    fn an_unknown_key_is_named_with_a_suggestion() {
        let unknown = refused("outbox:\n  batch_sise: 5\n");
        assert!(
            unknown.contains("outbox.batch_sise: unknown setting; did you mean `batch_size`?")
                && unknown.contains("(line 2, column 3)"),
            "{unknown}"
        );
        let top = refused("kafak:\n  brokers: k:1\n");
        assert!(top.contains("did you mean `kafka`?"), "{top}");
        let syntax = refused("outbox: [1, 2\n");
        assert!(
            syntax.contains("eventbus.yaml") && syntax.contains("line"),
            "{syntax}"
        );
        let missing = FileConfig::read(Path::new("/nonexistent/eventbus.yaml"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("/nonexistent/eventbus.yaml"), "{missing}");
        let no_brokers = refused("kafka:\n  properties:\n    linger.ms: 1\n");
        assert!(
            no_brokers.contains("kafka.brokers: missing"),
            "{no_brokers}"
        );
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
        let inline = refused(
            "kafka:\n  brokers: k:9093\n  sasl:\n    username: svc\n    password: hunter2\n",
        );
        assert!(
            inline.contains("kafka.sasl.password") && inline.contains("password_env"),
            "{inline}"
        );
        assert!(!inline.contains("hunter2"), "{inline}");
        // A secret of the wrong type is not repeated.
        let secret = refused(
            "kafka:\n  brokers: k:1\n  properties:\n    sasl.password: [hunter2]\n    ssl.key.password: {a: hunter3}\n",
        );
        assert!(!secret.contains("hunter"), "{secret}");
        let url = refused("database_url: [postgres://app:hunter2@db/x]\n");
        assert!(!url.contains("hunter2"), "{url}");
    }
}
