//! A YAML document as a tree of nodes, each with its line and column (serde-saphyr's `Spanned`).
//!
//! The schema reader walks this tree by hand rather than deserializing into structs, so it can
//! report every unknown key, wrong type and missing value in one run, each at its own place.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A line and column in a file, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct Pos {
    pub(crate) line: u32,
    pub(crate) column: u32,
}

/// A YAML node and where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) at: Pos,
    pub(crate) kind: Kind,
}

/// What a node holds.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i128),
    Float,
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Kind {
    /// What to call this kind of value in a message.
    pub(crate) fn what(&self) -> &'static str {
        match self {
            Kind::Null => "nothing (null)",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "a number",
            Kind::Float => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// The node's text, when it is a string.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }
}

fn pos(s: &Spanned<Kind>) -> Pos {
    Pos {
        line: u32::try_from(s.referenced.line()).unwrap_or(u32::MAX),
        column: u32::try_from(s.referenced.column()).unwrap_or(u32::MAX),
    }
}

fn node(s: Spanned<Kind>) -> Node {
    Node {
        at: pos(&s),
        kind: s.value,
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
        let _ = v;
        Ok(Kind::Float)
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

/// Parses one YAML document. On a syntax error, returns its message and position.
pub(crate) fn parse(text: &str) -> Result<Node, (String, Pos)> {
    match serde_saphyr::from_str::<Spanned<Kind>>(text) {
        Ok(root) => Ok(node(root)),
        Err(e) => {
            let at = e.location().map_or(Pos { line: 1, column: 1 }, |l| Pos {
                line: u32::try_from(l.line()).unwrap_or(u32::MAX).max(1),
                column: u32::try_from(l.column()).unwrap_or(u32::MAX).max(1),
            });
            let message = e.without_snippet().to_string();
            Err((message, at))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_carry_positions() {
        let root = parse("a:\n  b: [1, x]\n  c: {d: true}\n").expect("parses");
        let Kind::Map(top) = &root.kind else {
            panic!("a map")
        };
        let (key, value) = &top[0];
        assert_eq!(key.at, Pos { line: 1, column: 1 });
        let Kind::Map(inner) = &value.kind else {
            panic!("a map")
        };
        assert_eq!(inner[0].0.at, Pos { line: 2, column: 3 });
        let Kind::Seq(items) = &inner[0].1.kind else {
            panic!("a list")
        };
        assert_eq!(
            items[1].at,
            Pos {
                line: 2,
                column: 10
            }
        );
        assert_eq!(inner[1].0.at, Pos { line: 3, column: 3 });
    }

    #[test]
    fn syntax_errors_have_positions() {
        let (message, at) = parse("a: [1, 2\nb: 3\n").expect_err("broken");
        assert!(at.line >= 1, "{message} at {at:?}");
    }
}
