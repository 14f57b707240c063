//! The bridge to the model: each event as written becomes a [`Declared`] event, goes through the
//! rules of [`crate::check`] (the derive's rules), and their problems are worded for a schema.

use super::node::Pos;
use super::{EventSchema, Routing};
use crate::check::{self, Declared, DeclaredField, DeclaredTopic};
use crate::model::{self, Category, FieldRole, Spanned};
use crate::naming::{did_you_mean, to_snake_case};

use super::{File, RawEvent, Reader, ServiceHead, loc};

impl Reader {
    pub(super) fn event_schema(
        &mut self,
        file: &File,
        head: &ServiceHead,
        raw: &RawEvent,
    ) -> Option<EventSchema> {
        let name = &file.name;
        let category = raw.category?;
        let s = |k: &str| raw.strings.get(k).cloned();
        let spanned = |v: Option<(String, Pos)>| v.map(|(s, p)| Spanned::new(s, loc(name, p)));
        let aggregate = s("aggregate");
        let agg = aggregate
            .as_ref()
            .and_then(|(a, _)| head.aggregates.iter().find(|x| &x.name == a));
        if let (Some((a, at)), None, Category::Domain) = (&aggregate, agg, category) {
            let known: Vec<&str> = head.aggregates.iter().map(|x| x.name.as_str()).collect();
            let hint = did_you_mean(a, &known).map_or_else(
                || format!("declare it under `aggregates:` (`aggregates: {{ {a}: {{ description: ... }} }}`)"),
                |k| format!("did you mean `{k}`?"),
            );
            self.err(name, *at, format!("event `{}` names the aggregate `{a}`, which this service does not declare: {hint}", raw.ident));
        }
        // An unknown aggregate was reported: its id field is not also reported missing.
        let aggregate_unknown = aggregate.is_some() && agg.is_none();
        // Roles: as written, plus the defaults (aggregate id field, service default key).
        let mut roles: Vec<(FieldRole, String, Pos)> = raw.roles.clone();
        let has = |roles: &[(FieldRole, String, Pos)], r: FieldRole| roles.iter().any(|x| x.0 == r);
        if category == Category::Domain
            && !has(&roles, FieldRole::AggregateId)
            && let Some(a) = agg
            && raw.fields.iter().any(|f| f.ident == a.id_field)
        {
            roles.push((FieldRole::AggregateId, a.id_field.clone(), raw.key_at));
        }
        if matches!(category, Category::Integration | Category::System)
            && !has(&roles, FieldRole::Key)
            && let Some((k, _)) = &head.default_key
            && raw.fields.iter().any(|f| &f.ident == k)
        {
            roles.push((FieldRole::Key, k.clone(), raw.key_at));
        }
        // Each role names an existing field whose type can be a key.
        let mut ok_roles = Vec::new();
        for (role, field, at) in &roles {
            match raw.fields.iter().find(|f| &f.ident == field) {
                None => {
                    let names: Vec<&str> = raw.fields.iter().map(|f| f.ident.as_str()).collect();
                    let hint = did_you_mean(field, &names).map_or_else(
                        || {
                            format!(
                                "the fields are: {}",
                                if names.is_empty() {
                                    "(none)".to_owned()
                                } else {
                                    names.join(", ")
                                }
                            )
                        },
                        |s| format!("did you mean `{s}`?"),
                    );
                    self.err(
                        name,
                        *at,
                        format!(
                            "`{}: {field}` on event `{}`: there is no field `{field}`; {hint}",
                            role.word(),
                            raw.ident
                        ),
                    );
                }
                Some(f) => {
                    if f.ty.can_be_key() {
                        ok_roles.push((*role, field.clone(), *at));
                    } else {
                        self.err(name, *at, format!("field `{field}` of event `{}` is a `{}`, which cannot be a partition key (`{}`): a key is a string, integer, uuid or bool; choose another field", raw.ident, f.ty.schema_name(), role.word()));
                    }
                }
            }
        }
        let topic_name = s("topic");
        let topic_type = match (category, agg) {
            (Category::Domain, Some(a))
                if a.routing == Routing::PerAggregate && topic_name.is_none() =>
            {
                Some(a.topic_ident.clone())
            }
            _ => None,
        };
        let wire_name = raw
            .name
            .clone()
            .unwrap_or_else(|| (to_snake_case(&raw.ident), raw.key_at));
        // The model's rules, the same as the derive's, on the event as written.
        let def = Declared {
            ident: raw.ident.clone(),
            at: loc(name, raw.key_at).into(),
            category,
            name: Spanned::new(wire_name.0.clone(), loc(name, wire_name.1)),
            version: Spanned::new(raw.version.0, loc(name, raw.version.1)),
            description: raw.description.clone(),
            aggregate: spanned(aggregate.clone()),
            target: spanned(s("target")),
            audit_category: spanned(s("audit_category")),
            channel: spanned(s("channel")),
            kind: spanned(s("kind")),
            topic: match (&topic_name, &topic_type) {
                (Some((t, p)), _) => DeclaredTopic::Name(Spanned::new(t.clone(), loc(name, *p))),
                (None, Some(_)) => DeclaredTopic::Shared,
                (None, None) => DeclaredTopic::Default,
            },
            fields: raw
                .fields
                .iter()
                .map(|f| DeclaredField {
                    name: f.ident.clone(),
                    roles: ok_roles
                        .iter()
                        .filter(|(_, n, _)| n == &f.ident)
                        .map(|(r, _, p)| Spanned::new(*r, loc(name, *p)))
                        .collect(),
                })
                .collect(),
        };
        for problem in check::check(&def) {
            // A misspelled `description:` was reported as such; its absence is not a second error.
            if raw.description_misspelled && matches!(problem.what, check::What::NoDescription) {
                continue;
            }
            if aggregate_unknown
                && matches!(
                    problem.what,
                    check::What::MissingRoleField(FieldRole::AggregateId)
                )
            {
                continue;
            }
            // A role that named a missing field was reported above; do not also call it missing.
            if problem
                .missing()
                .is_some_and(|m| roles.iter().any(|r| r.0.word() == m))
            {
                continue;
            }
            let at = problem
                .at
                .file()
                .cloned()
                .unwrap_or_else(|| loc(name, raw.key_at));
            let message = say(&raw.ident, category, &problem);
            self.diagnostics.push(self.catalog.diagnostic(&at, message));
        }
        let topic = match (&topic_name, agg, category) {
            (Some((t, _)), _, _) => t.clone(),
            (None, Some(a), Category::Domain) if a.routing == Routing::PerAggregate => {
                format!("domain.{}.{}", head.name, a.name)
            }
            _ => def
                .default_topic_parts()
                .into_iter()
                .map(|p| p.unwrap_or_else(|| head.name.clone()))
                .collect::<Vec<_>>()
                .join("."),
        };
        // A service name that is not a segment was reported at the name, not at each event.
        if topic_name.is_none()
            && model::check_segment("the service name", &head.name).is_ok()
            && let Err(e) = model::check_topic(&topic)
        {
            self.err(name, raw.key_at, format!("event `{}`: {e}", raw.ident));
        }
        let key = def.key_field().map(str::to_owned);
        Some(EventSchema {
            ident: raw.ident.clone(),
            name: wire_name.0,
            version: raw.version.0,
            category,
            description: raw.description.clone(),
            aggregate: aggregate.map(|a| a.0),
            target: s("target").map(|a| a.0),
            audit_category: s("audit_category").map(|a| a.0),
            channel: s("channel").map(|a| a.0),
            kind: s("kind").map(|a| a.0),
            topic_name: topic_name.map(|t| t.0),
            topic_type,
            roles: ok_roles.into_iter().map(|(r, f, _)| (r, f)).collect(),
            fields: raw.fields.clone(),
            topic,
            key,
            at: loc(name, raw.key_at),
        })
    }
}

/// A rule's problem in a schema's words: its keys.
fn say(ident: &str, category: Category, problem: &check::Problem) -> String {
    use check::What;
    let cat = category.as_str();
    match &problem.what {
        What::VersionZero | What::BadName(_) | What::BadAttribute(_) | What::BadTopic(_) => {
            problem.said_alike(ident).unwrap_or_default()
        }
        What::NoDescription => format!(
            "event `{ident}` has no description: add `description: What happened.` to the event; it is the event's description in the catalog"
        ),
        What::MissingAttribute { key, example } => {
            format!("{cat} event `{ident}` needs `{key}`: add `{key}: {example}` to the event")
        }
        What::RoleDoesNotApply { role, field } => format!(
            "`{}: {field}` on event `{ident}` does not apply to {cat} events; {}",
            role.word(),
            match role {
                FieldRole::AggregateId => {
                    "it names a domain event's aggregate id (use `key:` for a partition key)"
                }
                FieldRole::Key => "it names the partition key",
                FieldRole::Actor =>
                    "it names an audit event's actor (use `key:` for a partition key)",
                FieldRole::Recipient => {
                    "it names a notification's recipient (use `key:` for a partition key)"
                }
            }
        ),
        What::RoleOnSeveralFields { role, fields } => format!(
            "event `{ident}` names {} fields as its `{}` ({}): keep one",
            fields.len(),
            role.word(),
            fields.join(", ")
        ),
        What::MissingRoleField(role) => format!(
            "{cat} event `{ident}` has no `{}` field: {}",
            role.word(),
            match role {
                FieldRole::AggregateId => {
                    "name the field holding the aggregate's id with `aggregate_id: <field>` on the event (or give the event the aggregate's `id` field); it is the event's subject and partition key, which keeps one aggregate's events in order"
                }
                FieldRole::Key => {
                    "name the field that orders these events (an order id, a customer id) with `key: <field>` on the event"
                }
                FieldRole::Actor => {
                    "name who acted with `actor: <field>` (or another field with `key: <field>`) on the event; it is the partition key"
                }
                FieldRole::Recipient => {
                    "name who is notified with `recipient: <field>` on the event; it is the partition key"
                }
            }
        ),
    }
}
