//! The configuration file as YAML: a tree of nodes, each with its line and column
//! (serde-saphyr's `Spanned`), and the vocabulary `file.rs` walks it with — each helper's error
//! names the setting by its path, what was expected and what was found, and where.

use std::collections::BTreeMap;

pub(super) use eventbus_core::yaml::{Kind, Node, Pos};

use super::redact::{MASK, is_sensitive_property, redact};
use crate::error::ConfigError;

/// The value of `key` in `fields`, unless it is absent or null (an empty value leaves the
/// setting as it was).
pub(super) fn set<'a>(fields: &BTreeMap<&'a str, &'a Node>, key: &str) -> Option<&'a Node> {
    fields
        .get(key)
        .copied()
        .filter(|n| !matches!(n.kind, Kind::Null))
}

/// `node`'s entries, or the error that `path` wants `what`.
pub(super) fn mapping<'a>(
    path: &str,
    node: &'a Node,
    what: &str,
) -> Result<&'a [(Node, Node)], ConfigError> {
    match &node.kind {
        Kind::Map(entries) => Ok(entries),
        _ => Err(wrong(path, what, node)),
    }
}

/// The keys of a mapping as text, each once: a key given twice is an error naming both lines.
pub(super) fn checked_keys<'a>(
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
                    first.at.line, key.at.line
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
pub(super) fn settings<'a>(
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
pub(super) fn string(path: &str, node: &Node, what: &str) -> Result<String, ConfigError> {
    match &node.kind {
        Kind::Str(s) => Ok(s.clone()),
        _ => Err(wrong(path, what, node)),
    }
}

/// The unsigned integer at `path` (a quoted one too: `"500"`).
pub(super) fn unsigned(path: &str, node: &Node) -> Result<u64, ConfigError> {
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
pub(super) fn wrong(path: &str, what: &str, node: &Node) -> ConfigError {
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

/// One YAML document; repeated keys are kept (the walk reports them with both lines).
pub(super) fn parse(text: &str) -> Result<Node, ConfigError> {
    if text.trim().is_empty() {
        return Ok(Node {
            at: Pos { line: 1, column: 1 },
            kind: Kind::Null,
        });
    }
    eventbus_core::yaml::parse(text).map_err(|(message, at)| {
        ConfigError::clause(
            "YAML",
            format!(
                "{message}; the settings are mode, database_url, kafka (brokers, sasl, properties) and outbox ({})",
                super::file::OUTBOX.join(", ")
            ),
        )
        .at(at)
    })
}
