//! The outbox and event store migrations, from askama templates (`templates/outbox_*.sql`,
//! `templates/store_*.sql`): the indexes, constraints and the trigger are written there, the
//! columns come from each table's one definition (`eventbus_core::outbox::COLUMNS`,
//! `eventbus_core::store::COLUMNS`).
//!
//! The runtime ships them rendered for the default table and store (`eventbus-runtime/migrations/`)
//! and substitutes the configured name; a test keeps those files equal to these templates, and
//! `eventbus-codegen migrations` renders them for any table and store.

use askama::Template;
pub use eventbus_core::outbox::Dialect;
use eventbus_core::outbox::{COLUMNS, Column, DISCARDED_COLUMNS, check_table_name};

#[derive(Template)]
#[template(path = "outbox_postgres.sql", escape = "none")]
struct Postgres<'a> {
    table: &'a str,
    outbox_columns: String,
    dead_columns: String,
    discarded_columns: String,
}

#[derive(Template)]
#[template(path = "outbox_sqlite.sql", escape = "none")]
struct Sqlite<'a> {
    table: &'a str,
    outbox_columns: String,
    dead_columns: String,
    discarded_columns: String,
}

/// The column lines of the outbox table (or of its dead table) in `dialect`: names aligned, each
/// column's comment above it.
fn column_lines(dialect: Dialect, dead: bool) -> String {
    table_lines(COLUMNS.iter(), dialect, dead)
}

/// The column lines of the audit table `{table}_discarded`: the dead table's, then
/// [`DISCARDED_COLUMNS`].
fn discarded_lines(dialect: Dialect) -> String {
    table_lines(COLUMNS.iter().chain(DISCARDED_COLUMNS), dialect, true)
}

fn table_lines<'c>(
    columns: impl Iterator<Item = &'c Column>,
    dialect: Dialect,
    dead: bool,
) -> String {
    let columns: Vec<_> = columns
        .filter_map(|c| {
            let ty = if dead {
                c.in_dead(dialect)
            } else {
                c.in_outbox(dialect)
            }?;
            Some((c.name, ty, if dead { None } else { c.note(dialect) }))
        })
        .collect();
    let width = columns
        .iter()
        .map(|(name, _, _)| name.len())
        .max()
        .unwrap_or(0)
        + 1;
    columns
        .iter()
        .map(|(name, ty, note)| {
            let note = note.map(|n| format!("    -- {n}\n")).unwrap_or_default();
            format!("{note}    {name:<width$}{ty}")
        })
        .collect::<Vec<_>>()
        .join(",\n")
}

/// The migration creating `table` (the outbox), `{table}_dead`, the audit table
/// `{table}_discarded` (dead letters an operator discarded), their indexes and, on
/// PostgreSQL, the notification trigger. `table` must be a plain lower-case SQL identifier of at
/// most 40 characters.
pub fn outbox_migration(dialect: Dialect, table: &str) -> Result<String, String> {
    check_table_name(table).map_err(|e| format!("outbox table {e}"))?;
    let (outbox_columns, dead_columns) =
        (column_lines(dialect, false), column_lines(dialect, true));
    let discarded_columns = discarded_lines(dialect);
    let rendered = match dialect {
        Dialect::Postgres => Postgres {
            table,
            outbox_columns,
            dead_columns,
            discarded_columns,
        }
        .render(),
        Dialect::Sqlite => Sqlite {
            table,
            outbox_columns,
            dead_columns,
            discarded_columns,
        }
        .render(),
    };
    rendered.map_err(|e| format!("cannot render the outbox migration: {e}"))
}

#[derive(Template)]
#[template(path = "store_postgres.sql", escape = "none")]
struct StorePostgres<'a> {
    store: &'a str,
    columns: String,
    snapshot_columns: String,
    checkpoint_columns: String,
}

#[derive(Template)]
#[template(path = "store_sqlite.sql", escape = "none")]
struct StoreSqlite<'a> {
    store: &'a str,
    columns: String,
    snapshot_columns: String,
    checkpoint_columns: String,
}

/// The migration creating the event store `store`'s tables `{store}_events`, `{store}_snapshots`
/// and `{store}_checkpoints` (see
/// `eventbus_core::store`). `store` must be a plain lower-case SQL identifier of at most 40
/// characters.
pub fn store_migration(dialect: Dialect, store: &str) -> Result<String, String> {
    use eventbus_core::store::{CHECKPOINT_COLUMNS, COLUMNS, Column, SNAPSHOT_COLUMNS};
    check_table_name(store).map_err(|e| format!("event store name {e}"))?;
    let render = |cols: &[Column]| {
        let width = cols.iter().map(|c| c.name.len()).max().unwrap_or(0) + 1;
        cols.iter()
            .map(|c| {
                let note = c.note.map(|n| format!("    -- {n}\n")).unwrap_or_default();
                format!("{note}    {:<width$}{}", c.name, c.in_dialect(dialect))
            })
            .collect::<Vec<_>>()
            .join(",\n")
    };
    let (columns, snapshot_columns, checkpoint_columns) = (
        render(COLUMNS),
        render(SNAPSHOT_COLUMNS),
        render(CHECKPOINT_COLUMNS),
    );
    let rendered = match dialect {
        Dialect::Postgres => StorePostgres {
            store,
            columns,
            snapshot_columns,
            checkpoint_columns,
        }
        .render(),
        Dialect::Sqlite => StoreSqlite {
            store,
            columns,
            snapshot_columns,
            checkpoint_columns,
        }
        .render(),
    };
    rendered.map_err(|e| format!("cannot render the event store migration: {e}"))
}
