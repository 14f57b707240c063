//! The model's rules, one function per rule (serde_derive's `internals/check.rs` is the model).
//!
//! A rule looks at one aspect of a [`Declared`] event (names and places only, whichever front end
//! declared it) and reports what is wrong as a [`Problem`]: where, and [`What`] is wrong with the
//! data a message needs; [`Problem::fix`] says what to do. The front ends word both in their own
//! syntax: the derive in attributes (`derive/words.rs`), a schema in its keys
//! (`schema/read/bridge.rs`). Neither builds the other's values or rewrites the other's sentences.

use crate::model::{Category, FieldRole, Location, Spanned};

/// An event as the rules see it.
#[derive(Debug, Clone)]
pub struct Declared {
    /// The Rust type name.
    pub ident: String,
    /// Where the event is declared.
    pub at: Location,
    /// Its category.
    pub category: Category,
    /// The wire name.
    pub name: Spanned<String>,
    /// The schema version.
    pub version: Spanned<u32>,
    /// The description.
    pub description: String,
    /// Domain: the aggregate.
    pub aggregate: Option<Spanned<String>>,
    /// Integration: the target service.
    pub target: Option<Spanned<String>>,
    /// Audit: the audit category.
    pub audit_category: Option<Spanned<String>>,
    /// Notification: the channel.
    pub channel: Option<Spanned<String>>,
    /// Notification: the kind.
    pub kind: Option<Spanned<String>>,
    /// Where it is published.
    pub topic: DeclaredTopic,
    /// Its fields, with their routing roles.
    pub fields: Vec<DeclaredField>,
}

/// Where a declared event is published.
#[derive(Debug, Clone)]
pub enum DeclaredTopic {
    /// The category's default topic.
    Default,
    /// A fixed topic name.
    Name(Spanned<String>),
    /// A topic type shared with other events.
    Shared,
}

/// A declared field: its name and routing roles.
#[derive(Debug, Clone)]
pub struct DeclaredField {
    /// The field's name.
    pub name: String,
    /// Its roles, each with where it was written.
    pub roles: Vec<Spanned<FieldRole>>,
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// The version is 0.
    VersionZero,
    /// The wire name is not a topic segment (the reason says why).
    BadName(String),
    /// No description.
    NoDescription,
    /// A routing attribute the category needs is missing.
    MissingAttribute {
        /// The attribute.
        key: &'static str,
        /// An example value.
        example: &'static str,
    },
    /// A routing attribute is not a topic segment (the reason names it and says why).
    BadAttribute(String),
    /// A fixed topic name is not a topic (the reason says why).
    BadTopic(String),
    /// A field carries a role its category does not have.
    RoleDoesNotApply {
        /// The role.
        role: FieldRole,
        /// The field.
        field: String,
    },
    /// Several fields carry a role only one may have.
    RoleOnSeveralFields {
        /// The role.
        role: FieldRole,
        /// The fields, in order.
        fields: Vec<String>,
    },
    /// No field carries a role the category needs.
    MissingRoleField(FieldRole),
}

/// What to do about it, for a front end to word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// The message says what to change (a name to correct, a version to raise).
    AsSaid,
    /// Give the event a description.
    Describe,
    /// Add the attribute `key`, e.g. with `example`.
    AddAttribute {
        /// The attribute.
        key: &'static str,
        /// An example value.
        example: &'static str,
    },
    /// Remove the role, or use `key` for a partition key.
    UseKeyInstead(FieldRole),
    /// Keep the role on one field.
    KeepOne,
    /// Mark a field with the role.
    MarkField(FieldRole),
}

/// One problem a rule found.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Where.
    pub at: Location,
    /// What is wrong.
    pub what: What,
}

impl Problem {
    fn new(at: &Location, what: What) -> Self {
        Problem {
            at: at.clone(),
            what,
        }
    }

    /// What to do about it.
    pub fn fix(&self) -> Fix {
        match &self.what {
            What::VersionZero | What::BadName(_) | What::BadAttribute(_) | What::BadTopic(_) => {
                Fix::AsSaid
            }
            What::NoDescription => Fix::Describe,
            What::MissingAttribute { key, example } => Fix::AddAttribute { key, example },
            What::RoleDoesNotApply { role, .. } => Fix::UseKeyInstead(*role),
            What::RoleOnSeveralFields { .. } => Fix::KeepOne,
            What::MissingRoleField(role) => Fix::MarkField(*role),
        }
    }

    /// The message of a problem that reads the same in every front end (its fix is
    /// [`Fix::AsSaid`]); `None` for the others, which each front end words in its syntax.
    pub fn said_alike(&self, ident: &str) -> Option<String> {
        match &self.what {
            What::VersionZero => Some(format!(
                "event `{ident}` has version 0: versions start at 1"
            )),
            What::BadName(e) | What::BadAttribute(e) | What::BadTopic(e) => {
                Some(format!("event `{ident}`: {e}"))
            }
            What::NoDescription
            | What::MissingAttribute { .. }
            | What::RoleDoesNotApply { .. }
            | What::RoleOnSeveralFields { .. }
            | What::MissingRoleField(_) => None,
        }
    }

    /// For a missing attribute or role field: its word (`aggregate`, `aggregate_id`), so a front
    /// end can drop the problem when the user wrote a misspelling of it, already reported.
    pub fn missing(&self) -> Option<&'static str> {
        match &self.what {
            What::MissingAttribute { key, .. } => Some(key),
            What::MissingRoleField(role) => Some(role.word()),
            _ => None,
        }
    }
}

/// Every rule, in the order their problems are reported.
pub fn check(def: &Declared) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_version(def, &mut problems);
    check_name(def, &mut problems);
    check_description(def, &mut problems);
    check_route_attributes(def, &mut problems);
    check_topic_name(def, &mut problems);
    check_roles_apply(def, &mut problems);
    check_roles_unique(def, &mut problems);
    check_key_field(def, &mut problems);
    problems
}

/// Versions start at 1.
pub fn check_version(def: &Declared, problems: &mut Vec<Problem>) {
    if def.version.value == 0 {
        problems.push(Problem::new(&def.version.at, What::VersionZero));
    }
}

/// The wire name is a topic segment.
pub fn check_name(def: &Declared, problems: &mut Vec<Problem>) {
    if let Err(e) = crate::model::check_segment("the event name", &def.name.value) {
        problems.push(Problem::new(&def.name.at, What::BadName(e)));
    }
}

/// Every event has a description: it is the event's entry in the catalog.
pub fn check_description(def: &Declared, problems: &mut Vec<Problem>) {
    if def.description.trim().is_empty() {
        problems.push(Problem::new(&def.at, What::NoDescription));
    }
}

/// The routing attributes of the category are there (unless a fixed or shared topic makes them
/// unnecessary; a domain event always names its aggregate), and each is a topic segment.
pub fn check_route_attributes(def: &Declared, problems: &mut Vec<Problem>) {
    let required: &[(&Option<Spanned<String>>, &'static str, &'static str)] = match def.category {
        Category::Domain => &[(&def.aggregate, "aggregate", "order")],
        Category::Integration => &[(&def.target, "target", "orders")],
        Category::Audit => &[(&def.audit_category, "audit_category", "security")],
        Category::System => &[],
        Category::Notification => &[
            (&def.channel, "channel", "email"),
            (&def.kind, "kind", "order_confirmation"),
        ],
    };
    for (value, key, example) in required {
        match value {
            None => {
                if matches!(def.topic, DeclaredTopic::Default) || def.category == Category::Domain {
                    problems.push(Problem::new(
                        &def.at,
                        What::MissingAttribute { key, example },
                    ));
                }
            }
            Some(v) => {
                if let Err(e) = crate::model::check_segment(&format!("`{key}`"), &v.value) {
                    problems.push(Problem::new(&v.at, What::BadAttribute(e)));
                }
            }
        }
    }
}

/// A fixed topic name is a valid topic.
pub fn check_topic_name(def: &Declared, problems: &mut Vec<Problem>) {
    if let DeclaredTopic::Name(name) = &def.topic
        && let Err(e) = crate::model::check_topic(&name.value)
    {
        problems.push(Problem::new(&name.at, What::BadTopic(e)));
    }
}

/// The roles a category has: every event may have a key; only domain events an aggregate id,
/// audit events an actor, notifications a recipient.
fn role_applies(role: FieldRole, category: Category) -> bool {
    match role {
        FieldRole::AggregateId => category == Category::Domain,
        FieldRole::Key => true,
        FieldRole::Actor => category == Category::Audit,
        FieldRole::Recipient => category == Category::Notification,
    }
}

const ROLES: [FieldRole; 4] = [
    FieldRole::AggregateId,
    FieldRole::Key,
    FieldRole::Actor,
    FieldRole::Recipient,
];

/// The fields carrying `role`, each with where the role was written.
fn marked(def: &Declared, role: FieldRole) -> Vec<(&DeclaredField, &Spanned<FieldRole>)> {
    def.fields
        .iter()
        .flat_map(|f| {
            f.roles
                .iter()
                .filter(move |r| r.value == role)
                .map(move |r| (f, r))
        })
        .collect()
}

/// A field carries only the roles of its event's category.
pub fn check_roles_apply(def: &Declared, problems: &mut Vec<Problem>) {
    for role in ROLES {
        if role_applies(role, def.category) {
            continue;
        }
        for (field, at) in marked(def, role) {
            problems.push(Problem::new(
                &at.at,
                What::RoleDoesNotApply {
                    role,
                    field: field.name.clone(),
                },
            ));
        }
    }
}

/// A role is on one field at most.
pub fn check_roles_unique(def: &Declared, problems: &mut Vec<Problem>) {
    for role in ROLES.into_iter().filter(|r| role_applies(*r, def.category)) {
        let marked = marked(def, role);
        if marked.len() < 2 {
            continue;
        }
        let fields: Vec<String> = marked.iter().map(|(f, _)| f.name.clone()).collect();
        for (_, at) in marked.iter().skip(1) {
            problems.push(Problem::new(
                &at.at,
                What::RoleOnSeveralFields {
                    role,
                    fields: fields.clone(),
                },
            ));
        }
    }
}

/// The field the category keys on is marked: a domain event's aggregate id, an integration
/// event's key, an audit event's actor (or key), a notification's recipient.
pub fn check_key_field(def: &Declared, problems: &mut Vec<Problem>) {
    let has = |role| {
        def.fields
            .iter()
            .any(|f| f.roles.iter().any(|r| r.value == role))
    };
    let missing = match def.category {
        Category::Domain if !has(FieldRole::AggregateId) => Some(FieldRole::AggregateId),
        Category::Integration if !has(FieldRole::Key) => Some(FieldRole::Key),
        Category::Audit if !has(FieldRole::Key) && !has(FieldRole::Actor) => Some(FieldRole::Actor),
        Category::Notification if !has(FieldRole::Recipient) => Some(FieldRole::Recipient),
        _ => None,
    };
    if let Some(role) = missing {
        problems.push(Problem::new(&def.at, What::MissingRoleField(role)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FileLocation;

    fn at(line: u32) -> Location {
        Location::File(FileLocation {
            file: "s.yaml".into(),
            line,
            column: 1,
        })
    }

    fn spanned<T>(value: T, line: u32) -> Spanned<T> {
        Spanned::new(value, at(line))
    }

    fn field(name: &str, roles: &[FieldRole]) -> DeclaredField {
        DeclaredField {
            name: name.to_owned(),
            roles: roles.iter().map(|r| spanned(*r, 9)).collect(),
        }
    }

    /// A valid domain event.
    fn order_placed() -> Declared {
        Declared {
            ident: "OrderPlaced".into(),
            at: at(1),
            category: Category::Domain,
            name: spanned("order_placed".into(), 2),
            version: spanned(1, 3),
            description: "An order was placed.".into(),
            aggregate: Some(spanned("order".into(), 4)),
            target: None,
            audit_category: None,
            channel: None,
            kind: None,
            topic: DeclaredTopic::Default,
            fields: vec![field("order_id", &[FieldRole::AggregateId])],
        }
    }

    fn whats(def: &Declared) -> Vec<(What, Fix)> {
        check(def)
            .into_iter()
            .map(|p| {
                let fix = p.fix();
                (p.what, fix)
            })
            .collect()
    }

    #[test]
    fn a_valid_event_has_no_problem() {
        assert!(check(&order_placed()).is_empty());
    }

    #[test]
    fn version_name_and_description() {
        let mut def = order_placed();
        def.version.value = 0;
        def.name.value = "Order Placed".into();
        def.description = "  ".into();
        let found = whats(&def);
        assert_eq!(found[0], (What::VersionZero, Fix::AsSaid));
        assert!(matches!(&found[1], (What::BadName(e), Fix::AsSaid) if e.contains("'O'")));
        assert_eq!(found[2], (What::NoDescription, Fix::Describe));
    }

    #[test]
    fn route_attributes_are_required_unless_the_topic_is_given() {
        let mut def = order_placed();
        def.aggregate = None;
        def.topic = DeclaredTopic::Shared;
        assert_eq!(
            whats(&def),
            [(
                What::MissingAttribute {
                    key: "aggregate",
                    example: "order"
                },
                Fix::AddAttribute {
                    key: "aggregate",
                    example: "order"
                }
            )],
            "a domain event always names its aggregate"
        );
        let mut notification = order_placed();
        notification.category = Category::Notification;
        notification.aggregate = None;
        notification.fields = vec![field("to", &[FieldRole::Recipient])];
        assert_eq!(check(&notification).len(), 2, "channel and kind");
        notification.topic = DeclaredTopic::Name(spanned("mail.out".into(), 5));
        assert!(
            check(&notification).is_empty(),
            "a fixed topic needs neither"
        );
        let mut bad = order_placed();
        bad.aggregate = Some(spanned("Order".into(), 4));
        assert!(
            matches!(&whats(&bad)[..], [(What::BadAttribute(e), _)] if e.contains("`aggregate`"))
        );
        let mut topic = order_placed();
        topic.topic = DeclaredTopic::Name(spanned("a..b".into(), 5));
        assert!(matches!(&whats(&topic)[..], [(What::BadTopic(_), _)]));
    }

    #[test]
    fn roles_belong_to_their_category_and_to_one_field() {
        let mut def = order_placed();
        def.fields.push(field("by", &[FieldRole::Actor]));
        def.fields
            .push(field("other_id", &[FieldRole::AggregateId]));
        assert_eq!(
            whats(&def),
            [
                (
                    What::RoleDoesNotApply {
                        role: FieldRole::Actor,
                        field: "by".into()
                    },
                    Fix::UseKeyInstead(FieldRole::Actor)
                ),
                (
                    What::RoleOnSeveralFields {
                        role: FieldRole::AggregateId,
                        fields: vec!["order_id".into(), "other_id".into()]
                    },
                    Fix::KeepOne
                ),
            ]
        );
    }

    #[test]
    fn each_category_marks_the_field_it_keys_on() {
        for (category, role) in [
            (Category::Domain, FieldRole::AggregateId),
            (Category::Integration, FieldRole::Key),
            (Category::Audit, FieldRole::Actor),
            (Category::Notification, FieldRole::Recipient),
        ] {
            let mut def = order_placed();
            def.category = category;
            def.fields.clear();
            def.topic = DeclaredTopic::Name(spanned("t".into(), 5));
            let problems = check(&def);
            let last = problems.last().expect("a missing field");
            assert_eq!(last.what, What::MissingRoleField(role), "{category:?}");
            assert_eq!(last.fix(), Fix::MarkField(role));
            assert_eq!(last.missing(), Some(role.word()));
        }
        let mut audit = order_placed();
        audit.category = Category::Audit;
        audit.aggregate = None;
        audit.audit_category = Some(spanned("security".into(), 4));
        audit.fields = vec![field("user", &[FieldRole::Key])];
        assert!(check(&audit).is_empty(), "a key stands in for the actor");
        let mut system = order_placed();
        system.category = Category::System;
        system.fields.clear();
        assert!(check(&system).is_empty(), "a system event needs no key");
    }
}
