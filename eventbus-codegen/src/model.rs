//! The event model: one intermediate representation for every front end.
//!
//! `#[derive(DomainEvent)]` (through [`crate::derive`]) and, later, YAML schemas both produce an
//! [`EventDef`]; [`crate::emit`] turns it into Rust. Names and topic segments are validated here,
//! once, so both front ends reject the same mistakes with the same words.

use std::fmt;
use std::sync::Arc;

use proc_macro2::{Ident, Span};
use syn::{Path, Type, Visibility};

/// Kafka's limit on the length of a topic name.
pub const MAX_TOPIC_LEN: usize = 249;

/// The five event categories of the seed's AD-004.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// A business fact inside one bounded context: `domain.{service}.{aggregate}.{event}`.
    Domain,
    /// A message from one service to another: `integration.{source}.{target}.{event}`.
    Integration,
    /// A compliance or security record: `audit.{service}.{audit_category}`.
    Audit,
    /// An infrastructure or operational event: `system.{service}.{event}`.
    System,
    /// A user or operator notification: `notifications.{channel}.{kind}`.
    Notification,
}

impl Category {
    /// Every category, in declaration order.
    pub const ALL: [Category; 5] = [
        Category::Domain,
        Category::Integration,
        Category::Audit,
        Category::System,
        Category::Notification,
    ];

    /// The derive that declares an event of this category (`DomainEvent`, ...).
    pub fn derive_name(self) -> &'static str {
        match self {
            Category::Domain => "DomainEvent",
            Category::Integration => "IntegrationEvent",
            Category::Audit => "AuditEvent",
            Category::System => "SystemEvent",
            Category::Notification => "NotificationEvent",
        }
    }

    /// The lower-case word used in messages and on the wire (`domain`, ...).
    pub fn word(self) -> &'static str {
        match self {
            Category::Domain => "domain",
            Category::Integration => "integration",
            Category::Audit => "audit",
            Category::System => "system",
            Category::Notification => "notification",
        }
    }

    /// The first segment of this category's default topic (AD-004).
    pub fn topic_prefix(self) -> &'static str {
        match self {
            Category::Notification => "notifications",
            other => other.word(),
        }
    }

    /// The marker type in `eventbus::category` (`Domain`, ...).
    pub fn marker(self) -> &'static str {
        match self {
            Category::Domain => "Domain",
            Category::Integration => "Integration",
            Category::Audit => "Audit",
            Category::System => "System",
            Category::Notification => "Notification",
        }
    }
}

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
        let fallback = match self.category {
            Category::Domain => Some(FieldRole::AggregateId),
            Category::Audit => Some(FieldRole::Actor),
            Category::Notification => Some(FieldRole::Recipient),
            Category::Integration | Category::System => None,
        };
        std::iter::once(FieldRole::Key)
            .chain(fallback)
            .find_map(|role| self.field_with(role))
            .map_or(KeySource::None, |f| KeySource::Field(f.ident.clone()))
    }

    /// The literal segments of the default topic after the prefix and service, or the whole name
    /// for categories whose topic does not name the service.
    ///
    /// Returned as parts to concatenate: `None` stands for the service name, which is only known
    /// when the crate compiles (it is a constant of the service type).
    pub fn default_topic_parts(&self) -> Vec<Option<String>> {
        let seg =
            |s: &Option<Spanned<String>>| s.as_ref().map(|s| s.value.clone()).unwrap_or_default();
        let name = self.name.value.clone();
        let prefix = self.category.topic_prefix().to_owned();
        match self.category {
            Category::Domain => vec![Some(prefix), None, Some(seg(&self.aggregate)), Some(name)],
            Category::Integration => vec![Some(prefix), None, Some(seg(&self.target)), Some(name)],
            Category::Audit => vec![Some(prefix), None, Some(seg(&self.audit_category))],
            Category::System => vec![Some(prefix), None, Some(name)],
            Category::Notification => {
                vec![
                    Some(prefix),
                    Some(seg(&self.channel)),
                    Some(seg(&self.kind)),
                ]
            }
        }
    }

    /// The parts of the CloudEvents `type` (`{service}.{aggregate}.{name}` for domain events,
    /// `{service}.{name}` otherwise); `None` stands for the service name.
    pub fn event_type_parts(&self) -> Vec<Option<String>> {
        let mut parts = vec![None];
        if let (Category::Domain, Some(aggregate)) = (self.category, &self.aggregate) {
            parts.push(Some(aggregate.value.clone()));
        }
        parts.push(Some(self.name.value.clone()));
        parts
    }
}

/// A problem found in a declaration, with where it was written.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Where.
    pub at: Location,
    /// What is wrong and what to do.
    pub message: String,
    /// For "X is missing" problems, the attribute that is missing (`aggregate`, `aggregate_id`),
    /// so a front end can drop it when the user wrote a misspelling of X.
    pub missing: Option<&'static str>,
}

impl Problem {
    /// A problem at `at`.
    pub fn new(at: impl Into<Location>, message: impl Into<String>) -> Self {
        Problem {
            at: at.into(),
            message: message.into(),
            missing: None,
        }
    }

    /// Marks this problem as "`key` is missing".
    pub fn missing(mut self, key: &'static str) -> Self {
        self.missing = Some(key);
        self
    }
}

/// Checks a topic segment (`[a-z0-9_-]+`); returns what is wrong with it.
pub fn check_segment(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!(
            "{what} is empty: give it a name of `a-z`, `0-9`, `_` and `-`"
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
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

/// Validates what can be checked before the crate compiles. Collects every problem.
///
/// The service name is a constant of the service type, so the full topic length is checked again
/// by a constant assertion in the expansion.
pub fn validate(def: &EventDef) -> Vec<Problem> {
    let mut problems = Vec::new();
    let ident = &def.ident;
    let cat = def.category;

    if def.version.value == 0 {
        problems.push(Problem::new(
            def.version.at.clone(),
            format!("event `{ident}` has version 0: versions start at 1"),
        ));
    }
    if let Err(e) = check_segment("the event name", &def.name.value) {
        problems.push(Problem::new(
            def.name.at.clone(),
            format!("event `{ident}`: {e}"),
        ));
    }
    if def.description.trim().is_empty() {
        problems.push(Problem::new(
            def.at.clone(),
            format!(
                "event `{ident}` has no description: add a doc comment (`/// What happened.`) above the struct; it is the event's description in the catalog"
            ),
        ));
    }

    let required: &[(&Option<Spanned<String>>, &'static str, &str)] = match cat {
        Category::Domain => &[(&def.aggregate, "aggregate", "aggregate = \"order\"")],
        Category::Integration => &[(&def.target, "target", "target = \"orders\"")],
        Category::Audit => &[(
            &def.audit_category,
            "audit_category",
            "audit_category = \"security\"",
        )],
        Category::System => &[],
        Category::Notification => &[
            (&def.channel, "channel", "channel = \"email\""),
            (&def.kind, "kind", "kind = \"order_confirmation\""),
        ],
    };
    for (value, key, example) in required {
        match value {
            None => {
                if !matches!(def.topic, TopicRoute::Shared(_) | TopicRoute::Name(_))
                    || cat == Category::Domain
                {
                    problems.push(
                        Problem::new(
                            def.at.clone(),
                            format!(
                                "{} event `{ident}` needs `{key}`: add `#[event({example})]`",
                                cat.word()
                            ),
                        )
                        .missing(key),
                    );
                }
            }
            Some(v) => {
                if let Err(e) = check_segment(&format!("`{key}`"), &v.value) {
                    problems.push(Problem::new(v.at.clone(), format!("event `{ident}`: {e}")));
                }
            }
        }
    }

    if let TopicRoute::Name(name) = &def.topic
        && let Err(e) = check_topic(&name.value)
    {
        problems.push(Problem::new(
            name.at.clone(),
            format!("event `{ident}`: {e}"),
        ));
    }

    // Field roles: which are allowed, and at most one field per role.
    for role in [
        FieldRole::AggregateId,
        FieldRole::Key,
        FieldRole::Actor,
        FieldRole::Recipient,
    ] {
        let marked: Vec<_> = def
            .fields
            .iter()
            .flat_map(|f| {
                f.roles
                    .iter()
                    .filter(move |r| r.value == role)
                    .map(move |r| (f, r))
            })
            .collect();
        let allowed = match role {
            FieldRole::AggregateId => cat == Category::Domain,
            FieldRole::Key => true,
            FieldRole::Actor => cat == Category::Audit,
            FieldRole::Recipient => cat == Category::Notification,
        };
        if !allowed {
            for (field, r) in &marked {
                problems.push(Problem::new(
                    r.at.clone(),
                    format!(
                        "`#[event({})]` on `{ident}::{}` does not apply to {} events; {}",
                        role.word(),
                        field.ident,
                        cat.word(),
                        role_home(role)
                    ),
                ));
            }
            continue;
        }
        if marked.len() > 1 {
            let names: Vec<_> = marked
                .iter()
                .map(|(f, _)| format!("`{}`", f.ident))
                .collect();
            for (_, r) in marked.iter().skip(1) {
                problems.push(Problem::new(
                    r.at.clone(),
                    format!(
                        "event `{ident}` marks {} fields with `#[event({})]` ({}): keep it on exactly one field",
                        marked.len(),
                        role.word(),
                        names.join(", ")
                    ),
                ));
            }
        }
    }

    let missing_field = |role: FieldRole, why: &str| {
        Problem::new(
            def.at.clone(),
            format!(
                "{} event `{ident}` has no `#[event({})]` field: {why}",
                cat.word(),
                role.word()
            ),
        )
        .missing(role.word())
    };
    match cat {
        Category::Domain if def.field_with(FieldRole::AggregateId).is_none() => {
            problems.push(missing_field(
                FieldRole::AggregateId,
                "mark the field holding the aggregate's id with `#[event(aggregate_id)]`; it is the event's subject and partition key, which keeps one aggregate's events in order",
            ));
        }
        Category::Integration if def.field_with(FieldRole::Key).is_none() => {
            problems.push(missing_field(
                FieldRole::Key,
                "mark the field that orders these events (an order id, a customer id) with `#[event(key)]`",
            ));
        }
        Category::Audit
            if def.field_with(FieldRole::Key).is_none()
                && def.field_with(FieldRole::Actor).is_none() =>
        {
            problems.push(missing_field(
                FieldRole::Actor,
                "mark who acted with `#[event(actor)]` (or another field with `#[event(key)]`); it is the partition key",
            ));
        }
        Category::Notification if def.field_with(FieldRole::Recipient).is_none() => {
            problems.push(missing_field(
                FieldRole::Recipient,
                "mark who is notified with `#[event(recipient)]`; it is the partition key",
            ));
        }
        _ => {}
    }
    problems
}

fn role_home(role: FieldRole) -> &'static str {
    match role {
        FieldRole::AggregateId => {
            "it marks a domain event's aggregate id (use `#[event(key)]` for a partition key)"
        }
        FieldRole::Key => "it marks the partition key",
        FieldRole::Actor => {
            "it marks an audit event's actor (use `#[event(key)]` for a partition key)"
        }
        FieldRole::Recipient => {
            "it marks a notification's recipient (use `#[event(key)]` for a partition key)"
        }
    }
}
