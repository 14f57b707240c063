//! The rules' problems in the derive's words: attribute syntax (`#[event(aggregate = "...")]`).
//! The YAML front end words the same problems in schema keys (`schema/read/bridge.rs`).

use proc_macro2::Ident;

use crate::check;
use crate::model::{Category, FieldRole};

/// A rule's problem in the derive's words: attribute syntax.
pub(super) fn say(ident: &Ident, category: Category, problem: &check::Problem) -> String {
    use check::What;
    let cat = category.as_str();
    match &problem.what {
        What::VersionZero | What::BadName(_) | What::BadAttribute(_) | What::BadTopic(_) => {
            problem.said_alike(&ident.to_string()).unwrap_or_default()
        }
        What::NoDescription => format!(
            "event `{ident}` has no description: add a doc comment (`/// What happened.`) above the struct; it is the event's description in the catalog"
        ),
        What::MissingAttribute { key, example } => {
            format!("{cat} event `{ident}` needs `{key}`: add `#[event({key} = \"{example}\")]`")
        }
        What::RoleDoesNotApply { role, field } => format!(
            "`#[event({})]` on `{ident}::{field}` does not apply to {cat} events; {}",
            role.word(),
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
        ),
        What::RoleOnSeveralFields { role, fields } => format!(
            "event `{ident}` marks {} fields with `#[event({})]` ({}): keep it on exactly one field",
            fields.len(),
            role.word(),
            fields
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        What::MissingRoleField(role) => format!(
            "{cat} event `{ident}` has no `#[event({})]` field: {}",
            role.word(),
            match role {
                FieldRole::AggregateId => {
                    "mark the field holding the aggregate's id with `#[event(aggregate_id)]`; it is the event's subject and partition key, which keeps one aggregate's events in order"
                }
                FieldRole::Key => {
                    "mark the field that orders these events (an order id, a customer id) with `#[event(key)]`"
                }
                FieldRole::Actor => {
                    "mark who acted with `#[event(actor)]` (or another field with `#[event(key)]`); it is the partition key"
                }
                FieldRole::Recipient => {
                    "mark who is notified with `#[event(recipient)]`; it is the partition key"
                }
            }
        ),
    }
}
