//! The outbox table, defined once: its columns with their type in each dialect, in the outbox
//! and in its dead table; which of them a new row sets; the INSERT statements built from them.
//!
//! `eventbus-codegen` renders the DDL from [`COLUMNS`] (askama templates in its `templates/`) and
//! emits each event's INSERT from [`insert_generated`]; the runtime builds its statements from
//! [`new_row_columns`], [`dead_row_columns`] and [`insert_any`].

/// The SQL dialects of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL 13 or newer.
    Postgres,
    /// SQLite 3.35 or newer.
    Sqlite,
}

impl Dialect {
    /// Both dialects.
    pub const ALL: [Dialect; 2] = [Dialect::Postgres, Dialect::Sqlite];

    /// The `n`th bind parameter (from 1): `$n` or `?n`.
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::Sqlite => format!("?{n}"),
        }
    }
}

/// The default outbox table; its dead table is `{table}_dead`.
pub const DEFAULT_TABLE: &str = "eventbus_outbox";

/// Checks an outbox (or inbox) table name: a lower-case SQL identifier, so it needs no quoting in
/// any dialect, and short enough for PostgreSQL (63 bytes, with `_dead` and index suffixes). The
/// error says what to use.
pub fn check_table_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a plain SQL identifier: use 1 to 40 characters of `a-z`, `0-9` and `_`, not starting with a digit"
        ))
    }
}

/// What a new row's column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// The event id (a UUID).
    EventId,
    /// The topic.
    Topic,
    /// The partition key (nullable).
    Key,
    /// The CloudEvents type.
    EventType,
    /// The schema version.
    Version,
    /// The CloudEvents headers, as a JSON object.
    Headers,
    /// The record value.
    Payload,
    /// `hash(key) mod shards`.
    Shard,
}

impl Value {
    /// Known when the event's type is: the generated INSERT writes it as a literal.
    pub fn of_the_type(self) -> bool {
        matches!(self, Value::Topic | Value::EventType | Value::Version)
    }
}

/// One column.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Its name.
    pub name: &'static str,
    /// Its type and constraints in the outbox table, per dialect (`None`: not in that dialect).
    pub outbox: [Option<&'static str>; 2],
    /// Its type and constraints in the dead table, per dialect (`None`: not kept there).
    pub dead: [Option<&'static str>; 2],
    /// What a new row sets it to (`None`: its default).
    pub value: Option<Value>,
    /// A comment above it in the outbox table's DDL, per dialect.
    pub note: [Option<&'static str>; 2],
}

impl Column {
    /// Its type in the outbox table of `dialect`.
    pub fn in_outbox(&self, dialect: Dialect) -> Option<&'static str> {
        self.outbox[dialect as usize]
    }

    /// Its type in the dead table of `dialect`.
    pub fn in_dead(&self, dialect: Dialect) -> Option<&'static str> {
        self.dead[dialect as usize]
    }

    /// Its comment in the outbox table of `dialect`.
    pub fn note(&self, dialect: Dialect) -> Option<&'static str> {
        self.note[dialect as usize]
    }
}

const fn both(ty: &'static str) -> [Option<&'static str>; 2] {
    [Some(ty), Some(ty)]
}

const fn each(postgres: &'static str, sqlite: &'static str) -> [Option<&'static str>; 2] {
    [Some(postgres), Some(sqlite)]
}

const NONE: [Option<&'static str>; 2] = [None, None];

/// The columns, in table order (`[PostgreSQL, SQLite]` where a dialect differs).
pub const COLUMNS: &[Column] = &[
    Column {
        name: "id",
        outbox: each(
            "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
        ),
        dead: each("BIGINT      PRIMARY KEY", "INTEGER PRIMARY KEY"),
        value: None,
        note: NONE,
    },
    Column {
        name: "event_id",
        outbox: each("UUID        NOT NULL UNIQUE", "BLOB    NOT NULL UNIQUE"),
        dead: each("UUID        NOT NULL UNIQUE", "BLOB    NOT NULL UNIQUE"),
        value: Some(Value::EventId),
        note: NONE,
    },
    Column {
        name: "topic",
        outbox: each("TEXT        NOT NULL", "TEXT    NOT NULL"),
        dead: each("TEXT        NOT NULL", "TEXT    NOT NULL"),
        value: Some(Value::Topic),
        note: NONE,
    },
    Column {
        name: "partition_key",
        outbox: both("TEXT"),
        dead: both("TEXT"),
        value: Some(Value::Key),
        note: NONE,
    },
    Column {
        name: "event_type",
        outbox: each("TEXT        NOT NULL", "TEXT    NOT NULL"),
        dead: each("TEXT        NOT NULL", "TEXT    NOT NULL"),
        value: Some(Value::EventType),
        note: NONE,
    },
    Column {
        name: "version",
        outbox: each("INTEGER     NOT NULL", "INTEGER NOT NULL"),
        dead: each("INTEGER     NOT NULL", "INTEGER NOT NULL"),
        value: Some(Value::Version),
        note: NONE,
    },
    Column {
        name: "headers",
        outbox: each("JSON        NOT NULL", "TEXT    NOT NULL"),
        dead: each("JSON        NOT NULL", "TEXT    NOT NULL"),
        value: Some(Value::Headers),
        note: [
            Some(
                "JSON, not JSONB: kept as written, so the relay reads it back without a conversion",
            ),
            None,
        ],
    },
    Column {
        name: "payload",
        outbox: each("BYTEA       NOT NULL", "BLOB    NOT NULL"),
        dead: each("BYTEA       NOT NULL", "BLOB    NOT NULL"),
        value: Some(Value::Payload),
        note: NONE,
    },
    Column {
        name: "created_at",
        outbox: each(
            "TIMESTAMPTZ NOT NULL DEFAULT now()",
            "TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
        ),
        dead: each("TIMESTAMPTZ NOT NULL", "TEXT    NOT NULL"),
        value: None,
        note: NONE,
    },
    Column {
        name: "attempts",
        outbox: each(
            "INTEGER     NOT NULL DEFAULT 0",
            "INTEGER NOT NULL DEFAULT 0",
        ),
        dead: each("INTEGER     NOT NULL", "INTEGER NOT NULL"),
        value: None,
        note: NONE,
    },
    Column {
        name: "next_attempt_at",
        outbox: each(
            "TIMESTAMPTZ NOT NULL DEFAULT now()",
            "INTEGER NOT NULL DEFAULT 0",
        ),
        dead: NONE,
        value: None,
        note: [None, Some("unix milliseconds")],
    },
    Column {
        name: "last_error",
        outbox: both("TEXT"),
        dead: each("TEXT        NOT NULL", "TEXT    NOT NULL"),
        value: None,
        note: NONE,
    },
    Column {
        name: "shard",
        outbox: each("INTEGER     NOT NULL", "INTEGER NOT NULL"),
        dead: each("INTEGER     NOT NULL", "INTEGER NOT NULL"),
        value: Some(Value::Shard),
        note: NONE,
    },
    Column {
        name: "xid",
        outbox: [
            Some("XID8        NOT NULL DEFAULT pg_current_xact_id()"),
            None,
        ],
        dead: NONE,
        value: None,
        note: [
            Some(
                "the writing transaction: the relay reads a row only once no older transaction runs",
            ),
            None,
        ],
    },
    Column {
        name: "sent_at",
        outbox: each("TIMESTAMPTZ", "TEXT"),
        dead: NONE,
        value: None,
        note: NONE,
    },
    Column {
        name: "failed_at",
        outbox: NONE,
        dead: each(
            "TIMESTAMPTZ NOT NULL DEFAULT now()",
            "TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
        ),
        value: None,
        note: NONE,
    },
];

/// The columns the audit table `{table}_discarded` adds to a dead row's (every dead column, then
/// these): why an operator discarded it, and when. A discarded dead letter is moved there, never
/// deleted outright.
pub const DISCARDED_COLUMNS: &[Column] = &[
    Column {
        name: "reason",
        outbox: NONE,
        dead: each("TEXT        NOT NULL", "TEXT    NOT NULL"),
        value: None,
        note: NONE,
    },
    Column {
        name: "discarded_at",
        outbox: NONE,
        dead: each(
            "TIMESTAMPTZ NOT NULL DEFAULT now()",
            "TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
        ),
        value: None,
        note: NONE,
    },
];

/// The columns a new row sets, in INSERT order: `event_id, topic, …, shard`.
pub fn new_row_columns() -> String {
    COLUMNS
        .iter()
        .filter(|c| c.value.is_some())
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The columns a dead row keeps from its outbox row, besides its id and last error (which the
/// move sets): `event_id, …, attempts, shard`.
pub fn dead_row_columns() -> String {
    COLUMNS
        .iter()
        .filter(|c| {
            !matches!(c.name, "id" | "last_error")
                && c.dead.iter().any(Option::is_some)
                && c.outbox.iter().any(Option::is_some)
        })
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A piece of an event type's INSERT: text, or a hole the generated code fills with a constant
/// of the type (the topic and the event type are known only where the service's name is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// SQL text.
    Text(String),
    /// The topic's name, inside quotes the text around it carries.
    Topic,
    /// The CloudEvents type, inside quotes.
    EventType,
    /// The schema version, a number.
    Version,
}

/// The INSERT the code generator emits for each event type: the values known for the type
/// (topic, event type, version) written into it, the others bound in order (`$1` event id, `$2`
/// key, `$3` headers, `$4` payload, `$5` shard).
pub fn insert_generated(dialect: Dialect, table: &str) -> Vec<Piece> {
    let mut pieces = vec![Piece::Text(format!(
        "INSERT INTO {table} ({}) VALUES (",
        new_row_columns()
    ))];
    let text = |s: String, pieces: &mut Vec<Piece>| match pieces.last_mut() {
        Some(Piece::Text(t)) => t.push_str(&s),
        _ => pieces.push(Piece::Text(s)),
    };
    let mut bound = 0;
    for (i, value) in COLUMNS.iter().filter_map(|c| c.value).enumerate() {
        if i > 0 {
            text(", ".to_owned(), &mut pieces);
        }
        match value {
            Value::Topic | Value::EventType => {
                text("'".to_owned(), &mut pieces);
                pieces.push(if value == Value::Topic {
                    Piece::Topic
                } else {
                    Piece::EventType
                });
                text("'".to_owned(), &mut pieces);
            }
            Value::Version => pieces.push(Piece::Version),
            _ => {
                bound += 1;
                text(dialect.placeholder(bound), &mut pieces);
            }
        }
    }
    text(")".to_owned(), &mut pieces);
    pieces
}

/// The INSERT of an event whose type is known only at run time: every value bound, in the order of
/// [`new_row_columns`].
pub fn insert_any(dialect: Dialect, table: &str) -> String {
    let values = (1..=COLUMNS.iter().filter(|c| c.value.is_some()).count())
        .map(|n| dialect.placeholder(n))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {table} ({}) VALUES ({values})",
        new_row_columns()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_insert_binds_what_the_type_does_not_know() {
        let pieces = insert_generated(Dialect::Postgres, DEFAULT_TABLE);
        let text: String = pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Topic => "T".into(),
                Piece::EventType => "E".into(),
                Piece::Version => "7".into(),
            })
            .collect();
        assert_eq!(
            text,
            "INSERT INTO eventbus_outbox (event_id, topic, partition_key, event_type, version, headers, payload, shard) \
             VALUES ($1, 'T', $2, 'E', 7, $3, $4, $5)"
        );
        assert_eq!(
            insert_any(Dialect::Sqlite, "t"),
            "INSERT INTO t (event_id, topic, partition_key, event_type, version, headers, payload, shard) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        );
    }

    #[test]
    fn a_dead_row_keeps_what_it_needs_to_be_replayed() {
        assert_eq!(
            dead_row_columns(),
            "event_id, topic, partition_key, event_type, version, headers, payload, created_at, attempts, shard"
        );
        for column in new_row_columns().split(", ") {
            assert!(
                dead_row_columns().split(", ").any(|c| c == column),
                "a replay re-inserts {column}"
            );
        }
    }

    #[test]
    fn table_names() {
        assert!(check_table_name("eventbus_outbox").is_ok());
        assert!(check_table_name("_x1").is_ok());
        for bad in ["", "1x", "Outbox", "a.b", "x; drop", &"a".repeat(41)] {
            assert!(check_table_name(bad).is_err(), "{bad:?}");
        }
    }
}
