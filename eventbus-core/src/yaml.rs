//! A YAML document as a tree of nodes, each with its line and column (serde-saphyr's `Spanned`;
//! feature `yaml`).
//!
//! Both readers of what users write in YAML walk this tree by hand rather than deserializing
//! into structs, so each can report every unknown key, wrong type and missing value, each at its
//! own place: the schema reader (`eventbus-codegen/src/schema/read/`) and the runtime's
//! configuration file (`eventbus-runtime/src/config/file.rs`). Syntax errors are placed where
//! the fault is written (a tab in the indentation, an unclosed bracket).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A line and column in a file, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1.
    pub column: u32,
}

impl From<Pos> for (u64, u64) {
    fn from(p: Pos) -> Self {
        (p.line.into(), p.column.into())
    }
}

/// A YAML node and where it starts.
#[derive(Debug, Clone)]
pub struct Node {
    /// Where it starts.
    pub at: Pos,
    /// What it holds.
    pub kind: Kind,
}

/// What a node holds.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Nothing (`~`, `null`, an empty value).
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// Any other number.
    Float(f64),
    /// Text.
    Str(String),
    /// A list.
    Seq(Vec<Node>),
    /// A mapping, its entries in order (a repeated key is kept).
    Map(Vec<(Node, Node)>),
}

impl Kind {
    /// What to call this kind of value in a message.
    pub fn what(&self) -> &'static str {
        match self {
            Kind::Null => "nothing (null)",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) | Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// The node's text, when it is a string.
    pub fn as_str(&self) -> Option<&str> {
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

/// Parses one YAML document. On a syntax error, returns its message and position.
///
/// Repeated keys are passed through to the tree (the reader reports each, naming where the key
/// was first given). A tab in the indentation and an unclosed `{` or `[` are reported where they
/// are written: the parser notices them only later, on the next line or token.
pub fn parse(text: &str) -> Result<Node, (String, Pos)> {
    let mut options = serde_saphyr::Options::default();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    match serde_saphyr::from_str_with_options::<Spanned<Kind>>(text, options) {
        Ok(root) => Ok(node(root)),
        Err(e) => {
            let at = e.location().map_or(Pos { line: 1, column: 1 }, |l| Pos {
                line: u32::try_from(l.line()).unwrap_or(u32::MAX).max(1),
                column: u32::try_from(l.column()).unwrap_or(u32::MAX).max(1),
            });
            let message = e.without_snippet().to_string();
            Err(syntax_error(text, &message, at))
        }
    }
}

/// The parser's syntax error, worded for a schema and placed where the fault is written.
fn syntax_error(text: &str, message: &str, at: Pos) -> (String, Pos) {
    let lower = message.to_lowercase();
    if lower.contains("tab")
        && let Some(tab) = first_tab(text, at)
    {
        return (
            "invalid YAML: a tab in the indentation: YAML indents with spaces only; replace the tab with spaces".to_owned(),
            tab,
        );
    }
    // The parser names an unclosed bracket, or stumbles on a later line while one is open (a
    // key on the next line is then "illegal" inside the flow collection).
    let names_bracket = lower.contains("flow mapping")
        || lower.contains("flow sequence")
        || lower.contains("unclosed bracket");
    if let Some((open, opened)) = unclosed_bracket(text, at)
        && (names_bracket || opened.line < at.line)
    {
        let (what, close) = if open == '{' {
            ("flow mapping", '}')
        } else {
            ("flow sequence", ']')
        };
        return (
            format!(
                "invalid YAML: unclosed bracket: this `{open}` opens a {what} that is never closed; end it with `{close}`"
            ),
            opened,
        );
    }
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .trim_end_matches(['.', ' ']);
    (
        format!(
            "invalid YAML: {message}; fix the syntax (indentation, a missing `:`, an unclosed bracket or quote)"
        ),
        at,
    )
}

/// The first tab in a line's indentation, from the line before `at` on (the parser reports a
/// tab where the previous token ends); else the first tab on or after that line.
fn first_tab(text: &str, at: Pos) -> Option<Pos> {
    let from = usize::try_from(at.line.saturating_sub(2)).unwrap_or(0);
    let lines = || text.lines().enumerate().skip(from);
    let pos = |i: usize, col: usize| Pos {
        line: u32::try_from(i + 1).unwrap_or(u32::MAX),
        column: u32::try_from(col + 1).unwrap_or(u32::MAX),
    };
    lines()
        .find_map(|(i, line)| {
            let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
            line[..indent].find('\t').map(|col| pos(i, col))
        })
        .or_else(|| lines().find_map(|(i, line)| line.find('\t').map(|col| pos(i, col))))
}

/// The innermost `{` or `[` still open at `at`, and where it is. Brackets count where a flow
/// collection starts (a value or list item beginning with one) and inside one; quoted text
/// and comments are skipped.
fn unclosed_bracket(text: &str, at: Pos) -> Option<(char, Pos)> {
    let mut open: Vec<(char, Pos)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = u32::try_from(i + 1).unwrap_or(u32::MAX);
        if line_no > at.line {
            break;
        }
        let chars: Vec<char> = line.chars().collect();
        // In block context, only a value or list item may start a flow collection.
        let mut start = 0;
        if open.is_empty() {
            let body = line.trim_start();
            let indent = chars.len() - body.chars().count();
            let mut rest = indent;
            while chars.get(rest) == Some(&'-') && chars.get(rest + 1).is_none_or(|c| *c == ' ') {
                rest += 2;
                while chars.get(rest) == Some(&' ') {
                    rest += 1;
                }
            }
            start = match chars.get(rest) {
                Some('{' | '[') => rest,
                _ => match line.find(": ").map(|b| line[..b].chars().count() + 2) {
                    Some(mut v) => {
                        while chars.get(v) == Some(&' ') {
                            v += 1;
                        }
                        if matches!(chars.get(v), Some('{' | '[')) {
                            v
                        } else {
                            continue;
                        }
                    }
                    None => continue,
                },
            };
        }
        let mut quote: Option<char> = None;
        let mut j = start;
        while j < chars.len() {
            let c = chars[j];
            let col = u32::try_from(j + 1).unwrap_or(u32::MAX);
            if line_no == at.line && col > at.column {
                break;
            }
            match quote {
                Some('"') if c == '\\' => j += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '"' | '\'' => quote = Some(c),
                    '#' if j == 0 || chars[j - 1] == ' ' => break,
                    '{' | '[' => open.push((
                        c,
                        Pos {
                            line: line_no,
                            column: col,
                        },
                    )),
                    '}' | ']' => {
                        open.pop();
                        if open.is_empty() {
                            break;
                        }
                    }
                    _ => {}
                },
            }
            j += 1;
        }
    }
    open.pop()
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
    fn a_tab_in_the_indentation_is_reported_on_its_line() {
        let (message, at) = parse("a:\n  b: 1\n\tc: 2\n").expect_err("a tab in the indentation");
        assert_eq!(at, Pos { line: 3, column: 1 }, "{message}");
        assert!(message.contains("tab in the indentation"), "{message}");
    }

    #[test]
    fn an_unclosed_flow_mapping_is_reported_at_its_bracket() {
        let (message, at) = parse("a:\n  b: { c: 1, d: 2\n  e: 3\n").expect_err("unclosed");
        assert_eq!(at, Pos { line: 2, column: 6 }, "{message}");
        assert!(message.contains("unclosed bracket"), "{message}");
        let (_, at) = parse("a: [1, [2, 3]\nb: 1\n").expect_err("unclosed");
        assert_eq!(at, Pos { line: 1, column: 4 });
    }

    #[test]
    fn repeated_keys_reach_the_tree() {
        let root = parse("a: 1\na: 2\n").expect("parses");
        let Kind::Map(entries) = &root.kind else {
            panic!("a map")
        };
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let (message, at) = parse("a: [1, 2\nb: 3\n").expect_err("broken");
        assert!(at.line >= 1, "{message} at {at:?}");
    }
}
