//! The outbox migrations, from askama templates (`templates/outbox_*.sql`).
//!
//! The runtime ships them rendered for the default table (`eventbus-runtime/migrations/`) and
//! substitutes the configured name; a test keeps those files equal to these templates, and
//! `eventbus-codegen migrations` renders them for any table.

use askama::Template;

/// The SQL dialects of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL 13 or newer.
    Postgres,
    /// SQLite 3.35 or newer.
    Sqlite,
}

#[derive(Template)]
#[template(path = "outbox_postgres.sql", escape = "none")]
struct Postgres<'a> {
    table: &'a str,
}

#[derive(Template)]
#[template(path = "outbox_sqlite.sql", escape = "none")]
struct Sqlite<'a> {
    table: &'a str,
}

/// The migration creating `table` (the outbox), `{table}_dead`, their indexes and, on
/// PostgreSQL, the notification trigger. `table` must be a plain lower-case SQL identifier of at
/// most 40 characters.
pub fn outbox_migration(dialect: Dialect, table: &str) -> Result<String, String> {
    let valid = !table.is_empty()
        && table.len() <= 40
        && table.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && table
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(format!(
            "outbox table {table:?} is not a plain SQL identifier: use 1 to 40 characters of `a-z`, `0-9` and `_`, not starting with a digit"
        ));
    }
    let rendered = match dialect {
        Dialect::Postgres => Postgres { table }.render(),
        Dialect::Sqlite => Sqlite { table }.render(),
    };
    rendered.map_err(|e| format!("cannot render the outbox migration: {e}"))
}
