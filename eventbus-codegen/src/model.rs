//! The event model: one intermediate representation for every front end.
//!
//! `#[derive(DomainEvent)]` (through [`crate::derive`]) and, later, YAML schemas both produce an
//! [`EventDef`]; [`crate::emit`] turns it into Rust. Names and topic segments are validated here,
//! once, so both front ends reject the same mistakes with the same words.

use std::fmt;
use std::sync::Arc;

use proc_macro2::{Ident, Span};
use syn::{Path, Type, Visibility};

use crate::check::{Declared, DeclaredField, DeclaredTopic};

/// Kafka's limit on the length of a topic name.
pub const MAX_TOPIC_LEN: usize = eventbus_core::naming::MAX_TOPIC_LEN;

pub use eventbus_core::Category;

/// A place in a schema file: `file:line:column` (1-based), for the YAML front end.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileLocation {
    /// The file, as the user named it (relative paths stay relative).
    pub file: Arc<str>,
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1.
    pub column: u32,
}

impl fmt::Display for FileLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Where a value was written: a token of a derive input, or a node of a schema file.
///
/// The derive reports at spans (the compiler underlines them); the YAML front end reports at
/// `file:line:column`. The model's rules are the same for both.
#[derive(Debug, Clone)]
pub enum Location {
    /// A token of a derive input.
    Span(Span),
    /// A node of a schema file.
    File(FileLocation),
}

impl Location {
    /// The span to report a derive error at (`call_site` for a file location).
    pub fn span(&self) -> Span {
        match self {
            Location::Span(span) => *span,
            Location::File(_) => Span::call_site(),
        }
    }

    /// The file location, when this is one.
    pub fn file(&self) -> Option<&FileLocation> {
        match self {
            Location::File(at) => Some(at),
            Location::Span(_) => None,
        }
    }
}

impl From<Span> for Location {
    fn from(span: Span) -> Self {
        Location::Span(span)
    }
}

impl From<FileLocation> for Location {
    fn from(at: FileLocation) -> Self {
        Location::File(at)
    }
}

/// A value with the place it was written, for error messages.
#[derive(Debug, Clone)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub at: Location,
}

impl<T> Spanned<T> {
    /// Wraps `value` written at `at`.
    pub fn new(value: T, at: impl Into<Location>) -> Self {
        Spanned {
            value,
            at: at.into(),
        }
    }
}

/// The service an event belongs to: a type implementing `eventbus::Service`.
#[derive(Debug, Clone)]
pub enum ServiceRef {
    /// `service = Petstore`: an explicit service type.
    Path(Path),
    /// Omitted: the crate's default service (`#[service(default)]` at the crate root).
    CrateDefault,
}

/// Where an event is published.
#[derive(Debug, Clone)]
pub enum TopicRoute {
    /// The category's default topic (AD-004); the expansion declares `{Event}Topic`.
    Default,
    /// `topic = "a.b.c"`: a fixed name; the expansion declares `{Event}Topic`.
    Name(Spanned<String>),
    /// `topic = OrderTopic`: a topic type shared with other events (per-aggregate routing).
    Shared(Path),
}

/// The role a field plays in routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldRole {
    /// `#[event(aggregate_id)]`: the domain aggregate's id (subject and default key).
    AggregateId,
    /// `#[event(key)]`: the explicit partition key.
    Key,
    /// `#[event(actor)]`: who did it (audit events; the key when none is declared).
    Actor,
    /// `#[event(recipient)]`: who is notified (notification events; the default key).
    Recipient,
}

impl FieldRole {
    /// The attribute word.
    pub fn word(self) -> &'static str {
        match self {
            FieldRole::AggregateId => "aggregate_id",
            FieldRole::Key => "key",
            FieldRole::Actor => "actor",
            FieldRole::Recipient => "recipient",
        }
    }
}

/// One field of an event payload.
#[derive(Debug, Clone)]
pub struct FieldDef {
    /// The Rust field name.
    pub ident: Ident,
    /// The Rust type.
    pub ty: Type,
    /// Routing roles, with where each was written.
    pub roles: Vec<Spanned<FieldRole>>,
    /// True when serde attributes change how the field is (de)serialized (`skip`, `with`, ...),
    /// so the expansion does not assert the field type is itself serializable.
    pub serde_custom: bool,
}

impl FieldDef {
    /// True when the field carries `role`.
    pub fn has(&self, role: FieldRole) -> bool {
        self.roles.iter().any(|r| r.value == role)
    }
}

/// One event, as every front end describes it.
#[derive(Debug, Clone)]
pub struct EventDef {
    /// The Rust type name.
    pub ident: Ident,
    /// Where the event is declared (the struct's name, or the event's key in a schema).
    pub at: Location,
    /// The type's visibility (the declared topic type gets the same).
    pub vis: Visibility,
    /// Its category.
    pub category: Category,
    /// The path of the `eventbus` crate (`crate = "..."`), `::eventbus` by default.
    pub krate: Path,
    /// The owning service (for integration events, the source).
    pub service: ServiceRef,
    /// The snake_case name on the wire.
    pub name: Spanned<String>,
    /// The schema version, from 1.
    pub version: Spanned<u32>,
    /// The description (the doc comment).
    pub description: String,
    /// Domain: the aggregate type's name.
    pub aggregate: Option<Spanned<String>>,
    /// Integration: the target service's name.
    pub target: Option<Spanned<String>>,
    /// Audit: the audit category.
    pub audit_category: Option<Spanned<String>>,
    /// Notification: the channel.
    pub channel: Option<Spanned<String>>,
    /// Notification: the notification type.
    pub kind: Option<Spanned<String>>,
    /// Where it is published.
    pub topic: TopicRoute,
    /// The payload's fields, in order.
    pub fields: Vec<FieldDef>,
}

/// How the partition key is computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// From this field.
    Field(Ident),
    /// No key: records are spread over partitions (no order).
    None,
}

impl EventDef {
    /// The field carrying `role`, if any.
    pub fn field_with(&self, role: FieldRole) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.has(role))
    }

    /// The partition key: the explicit key field, else the category's default (aggregate id,
    /// actor, recipient), else none.
    pub fn key_source(&self) -> KeySource {
        let declared = self.declared();
        match declared.key_field() {
            Some(name) => self
                .fields
                .iter()
                .find(|f| f.ident == name)
                .map_or(KeySource::None, |f| KeySource::Field(f.ident.clone())),
            None => KeySource::None,
        }
    }

    /// The default topic's parts; see [`Declared::default_topic_parts`].
    pub fn default_topic_parts(&self) -> Vec<Option<String>> {
        self.declared().default_topic_parts()
    }

    /// The CloudEvents type's parts; see [`Declared::event_type_parts`].
    pub fn event_type_parts(&self) -> Vec<Option<String>> {
        self.declared().event_type_parts()
    }

    /// The event as the rules of [`crate::check`] see it.
    pub fn declared(&self) -> Declared {
        Declared {
            ident: self.ident.to_string(),
            at: self.at.clone(),
            category: self.category,
            name: self.name.clone(),
            version: self.version.clone(),
            description: self.description.clone(),
            aggregate: self.aggregate.clone(),
            target: self.target.clone(),
            audit_category: self.audit_category.clone(),
            channel: self.channel.clone(),
            kind: self.kind.clone(),
            topic: match &self.topic {
                TopicRoute::Default => DeclaredTopic::Default,
                TopicRoute::Name(name) => DeclaredTopic::Name(name.clone()),
                TopicRoute::Shared(_) => DeclaredTopic::Shared,
            },
            fields: self
                .fields
                .iter()
                .map(|f| DeclaredField {
                    name: f.ident.to_string(),
                    roles: f.roles.clone(),
                })
                .collect(),
        }
    }
}

impl Declared {
    /// The field carrying `role`, if any.
    pub fn field_with(&self, role: FieldRole) -> Option<&DeclaredField> {
        self.fields
            .iter()
            .find(|f| f.roles.iter().any(|r| r.value == role))
    }

    /// The partition key's field: the explicit key field, else the category's default (aggregate
    /// id, actor, recipient), else none.
    pub fn key_field(&self) -> Option<&str> {
        let fallback = match self.category {
            Category::Domain => Some(FieldRole::AggregateId),
            Category::Audit => Some(FieldRole::Actor),
            Category::Notification => Some(FieldRole::Recipient),
            Category::Integration | Category::System => None,
        };
        std::iter::once(FieldRole::Key)
            .chain(fallback)
            .find_map(|role| self.field_with(role))
            .map(|f| f.name.as_str())
    }

    /// The routing facts of `eventbus_core` for this event.
    fn route(&self) -> eventbus_core::category::Route<'_> {
        fn s(v: &Option<Spanned<String>>) -> Option<&str> {
            v.as_ref().map(|s| s.value.as_str())
        }
        eventbus_core::category::Route {
            category: self.category,
            name: &self.name.value,
            aggregate: s(&self.aggregate),
            target: s(&self.target),
            audit_category: s(&self.audit_category),
            channel: s(&self.channel),
            kind: s(&self.kind),
        }
    }

    /// The default topic's segments, to concatenate: `None` stands for the service name, which is
    /// only known when the crate compiles (it is a constant of the service type).
    pub fn default_topic_parts(&self) -> Vec<Option<String>> {
        parts(&self.route().default_topic())
    }

    /// The CloudEvents `type`'s segments (`{service}.{aggregate}.{name}` for domain events,
    /// `{service}.{name}` otherwise); `None` stands for the service name.
    pub fn event_type_parts(&self) -> Vec<Option<String>> {
        parts(&self.route().event_type())
    }
}

/// Core's route parts as the emitter's: `None` for the service.
fn parts(parts: &[eventbus_core::category::Part<'_>]) -> Vec<Option<String>> {
    use eventbus_core::category::Part;
    parts
        .iter()
        .map(|p| match p {
            Part::Service => None,
            Part::Text(t) => Some((*t).to_owned()),
        })
        .collect()
}

/// Checks a topic segment (`[a-z0-9_-]+`); returns what is wrong with it.
pub fn check_segment(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!(
            "{what} is empty: give it a name of `a-z`, `0-9`, `_` and `-`"
        ));
    }
    if let Some(bad) = eventbus_core::naming::invalid_char(value) {
        let suggestion = crate::naming::to_segment(value);
        let hint = if suggestion.is_empty() || suggestion == value {
            String::new()
        } else {
            format!(" (did you mean \"{suggestion}\"?)")
        };
        return Err(format!(
            "{what} \"{value}\" contains {bad:?}: a topic segment may contain only `a-z`, `0-9`, `_` and `-`{hint}"
        ));
    }
    Ok(())
}

/// Checks a full topic name: dot-separated segments, at most [`MAX_TOPIC_LEN`] characters.
pub fn check_topic(value: &str) -> Result<(), String> {
    if value.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "topic \"{value}\" is {} characters long; Kafka accepts at most {MAX_TOPIC_LEN}: shorten it",
            value.len()
        ));
    }
    for segment in value.split('.') {
        check_segment("a segment of the topic", segment)?;
    }
    Ok(())
}
