//! The keys each mapping of a schema allows, and reading scalar values and identifiers, each
//! error with "did you mean".

use std::sync::Arc;

use super::node::{Kind, Node, Pos};
use crate::naming::did_you_mean;

use super::Reader;

pub(super) const TOP_KEYS: &[&str] = &[
    "service",
    "service_type",
    "description",
    "default",
    "defaults",
    "imports",
    "aggregates",
    "types",
    "events",
];
pub(super) const SHARED_KEYS: &[&str] = &["description", "imports", "types"];
pub(super) const DEFAULTS_KEYS: &[&str] = &["routing", "key"];
pub(super) const AGGREGATE_KEYS: &[&str] = &["description", "id", "routing"];
pub(super) const TYPE_KEYS: &[&str] = &["description", "fields", "enum"];
pub(super) const FIELD_KEYS: &[&str] = &["type", "description", "optional", "deprecated", "rename"];
pub(super) const EVENT_KEYS: &[&str] = &[
    "category",
    "version",
    "description",
    "name",
    "aggregate",
    "aggregate_id",
    "target",
    "audit_category",
    "channel",
    "kind",
    "key",
    "actor",
    "recipient",
    "topic",
    "fields",
];
pub(super) const BUILTIN_TYPES: &[&str] = &[
    "string",
    "bool",
    "i32",
    "i64",
    "u32",
    "u64",
    "f64",
    "decimal",
    "uuid",
    "timestamp",
    "date",
    "bytes",
    "json",
    "list<T>",
    "map<string, T>",
];

/// Rust's keywords (strict and reserved, 2024 edition).
pub(super) const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try",
];

pub(super) fn is_ident(s: &str) -> bool {
    let s = s.strip_prefix("r#").unwrap_or(s);
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s != "_"
}

impl Reader {
    /// The entries of a mapping, reporting unknown keys (with a suggestion) and non-string keys.
    pub(super) fn map<'n>(
        &mut self,
        file: &Arc<str>,
        node: &'n Node,
        what: &str,
        allowed: &[&'static str],
    ) -> Vec<(&'n str, Pos, &'n Node)> {
        let Kind::Map(entries) = &node.kind else {
            if !matches!(node.kind, Kind::Null) {
                self.err(
                    file,
                    node.at,
                    format!(
                        "{what} is {}, but it must be a mapping of `key: value` lines",
                        node.kind.what()
                    ),
                );
            }
            return Vec::new();
        };
        let mut out: Vec<(&'n str, Pos, &'n Node)> = Vec::new();
        for (key, value) in entries {
            let Some(k) = key.as_str() else {
                self.err(
                    file,
                    key.at,
                    format!("a key of {what} is {}; keys are names", key.kind.what()),
                );
                continue;
            };
            // A repeated key: reported once, naming the first; the first is the one read.
            if let Some((_, first, _)) = out.iter().find(|(seen, ..)| *seen == k) {
                let first = format!("first at {}:{}", first.line, first.column);
                let message = if what == "`events`" {
                    format!(
                        "event `{k}` is declared twice ({first}): remove one, or give it another name (a new version is `version:` on the one event)"
                    )
                } else {
                    format!("key `{k}` is given twice in {what} ({first}): keep one")
                };
                self.err(file, key.at, message);
                continue;
            }
            if !allowed.is_empty() && !allowed.contains(&k) {
                let hint = match did_you_mean(k, allowed) {
                    Some(s) => {
                        // Its absence is this misspelling: no "missing" error follows.
                        self.misspelled.push((node.at, s));
                        format!("did you mean `{s}`?")
                    }
                    None => format!("expected one of: {}", allowed.join(", ")),
                };
                self.err(file, key.at, format!("unknown key `{k}` in {what}: {hint}"));
                continue;
            }
            out.push((k, key.at, value));
        }
        out
    }

    /// Whether a key of the mapping at `at` was a misspelling of `key` (already reported).
    pub(super) fn misspelled(&self, at: Pos, key: &str) -> bool {
        self.misspelled.iter().any(|(p, k)| *p == at && *k == key)
    }

    pub(super) fn string(&mut self, file: &Arc<str>, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            Kind::Str(s) => Some(s.clone()),
            other => {
                self.err(
                    file,
                    node.at,
                    format!("{what} must be a string, not {}", other.what()),
                );
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, file: &Arc<str>, node: &Node, what: &str) -> Option<bool> {
        match &node.kind {
            Kind::Bool(b) => Some(*b),
            other => {
                self.err(
                    file,
                    node.at,
                    format!("{what} must be `true` or `false`, not {}", other.what()),
                );
                None
            }
        }
    }

    /// A Rust identifier for `what`, reporting keywords and invalid names.
    pub(super) fn ident(
        &mut self,
        file: &Arc<str>,
        at: Pos,
        name: &str,
        what: &str,
        raw_ok: bool,
    ) -> bool {
        if !is_ident(name) {
            self.err(
                file,
                at,
                format!("{what} `{name}` is not a Rust identifier: use letters, digits and `_`, starting with a letter"),
            );
            return false;
        }
        let bare = name.strip_prefix("r#");
        if bare.is_some()
            && (!raw_ok || ["self", "Self", "super", "crate"].contains(&bare.unwrap_or_default()))
        {
            self.err(
                file,
                at,
                format!("{what} `{name}` cannot be a raw identifier: rename it"),
            );
            return false;
        }
        if bare.is_none() && KEYWORDS.contains(&name) {
            let fix = if raw_ok && !["self", "Self", "super", "crate"].contains(&name) {
                format!(
                    "write it as the raw identifier `r#{name}` (the wire name stays `{name}`), or rename it and keep the wire name with `rename: {name}`"
                )
            } else {
                "rename it".to_owned()
            };
            self.err(
                file,
                at,
                format!("{what} `{name}` is a Rust keyword: {fix}"),
            );
            return false;
        }
        true
    }
}
