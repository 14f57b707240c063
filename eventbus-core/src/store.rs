//! The event store's table, defined once: its columns with their type in each dialect, and the
//! statements that append to it and read it. `eventbus-codegen` renders the DDL from [`COLUMNS`]
//! (askama templates `store_*.sql`); the runtime (`eventbus::store`) runs [`append_first`],
//! [`append_next`] and the reads built here.
//!
//! A store named `s` keeps its events in `{s}_events`: one row per event, keyed by its global
//! `position` (assigned in commit order, see `docs/event-sourcing.md`) and unique per
//! `(stream_type, stream_id, version)` (optimistic concurrency).

use crate::outbox::Dialect;

/// The default store name; its events table is `eventbus_store_events`.
pub const DEFAULT_STORE: &str = "eventbus_store";

/// The events table of store `store`.
pub fn events_table(store: &str) -> String {
    format!("{store}_events")
}

/// The snapshots table of store `store`: one row per stream, its latest snapshot.
pub fn snapshots_table(store: &str) -> String {
    format!("{store}_snapshots")
}

/// The checkpoints table of store `store`: one row per projection, the last position it handled.
pub fn checkpoints_table(store: &str) -> String {
    format!("{store}_checkpoints")
}

/// One column of a store table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Its name.
    pub name: &'static str,
    /// Its type and constraints, `[PostgreSQL, SQLite]`.
    pub ty: [&'static str; 2],
    /// A comment above it in the DDL.
    pub note: Option<&'static str>,
}

impl Column {
    /// Its type in `dialect`.
    pub fn in_dialect(&self, dialect: Dialect) -> &'static str {
        self.ty[dialect as usize]
    }
}

/// The columns, in table order.
pub const COLUMNS: &[Column] = &[
    Column {
        name: "position",
        ty: [
            "BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
        ],
        note: Some("the global position: catch-up readers read in this order (commit order)"),
    },
    Column {
        name: "stream_type",
        ty: ["TEXT        NOT NULL", "TEXT    NOT NULL"],
        note: Some("the aggregate type (`Aggregate::TYPE`, the events' `DomainEvent::AGGREGATE`)"),
    },
    Column {
        name: "stream_id",
        ty: ["TEXT        NOT NULL", "TEXT    NOT NULL"],
        note: Some("the aggregate id, as the events' `ce_subject`"),
    },
    Column {
        name: "version",
        ty: ["BIGINT      NOT NULL", "INTEGER NOT NULL"],
        note: Some("the stream's version after this event: 1, 2, ... without a gap"),
    },
    Column {
        name: "event_id",
        ty: ["UUID        NOT NULL UNIQUE", "BLOB    NOT NULL UNIQUE"],
        note: Some("the CloudEvents id, the same as the outbox row's and the Kafka record's"),
    },
    Column {
        name: "event_type",
        ty: ["TEXT        NOT NULL", "TEXT    NOT NULL"],
        note: None,
    },
    Column {
        name: "schema_version",
        ty: ["INTEGER     NOT NULL", "INTEGER NOT NULL"],
        note: None,
    },
    Column {
        name: "headers",
        ty: ["JSONB       NOT NULL", "TEXT    NOT NULL"],
        note: Some("the CloudEvents attributes, as published"),
    },
    Column {
        name: "payload",
        ty: ["BYTEA       NOT NULL", "BLOB    NOT NULL"],
        note: None,
    },
    Column {
        name: "recorded_at",
        ty: [
            "TIMESTAMPTZ NOT NULL DEFAULT now()",
            "TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
        ],
        note: None,
    },
];

/// The columns of the snapshots table, in table order: the latest snapshot of each stream
/// (primary key `(stream_type, stream_id)`).
pub const SNAPSHOT_COLUMNS: &[Column] = &[
    Column {
        name: "stream_type",
        ty: ["TEXT        NOT NULL", "TEXT    NOT NULL"],
        note: None,
    },
    Column {
        name: "stream_id",
        ty: ["TEXT        NOT NULL", "TEXT    NOT NULL"],
        note: None,
    },
    Column {
        name: "version",
        ty: ["BIGINT      NOT NULL", "INTEGER NOT NULL"],
        note: Some("the stream's version the state is at: load applies the events after it"),
    },
    Column {
        name: "snapshot_version",
        ty: ["INTEGER     NOT NULL", "INTEGER NOT NULL"],
        note: Some("the aggregate's snapshot schema version: another one is ignored"),
    },
    Column {
        name: "payload",
        ty: ["BYTEA       NOT NULL", "BLOB    NOT NULL"],
        note: Some("the state (JSON)"),
    },
    Column {
        name: "taken_at",
        ty: [
            "TIMESTAMPTZ NOT NULL DEFAULT now()",
            "TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
        ],
        note: None,
    },
];

/// The columns of the checkpoints table, in table order: where each projection is.
pub const CHECKPOINT_COLUMNS: &[Column] = &[
    Column {
        name: "projection",
        ty: [
            "TEXT        NOT NULL PRIMARY KEY",
            "TEXT    NOT NULL PRIMARY KEY",
        ],
        note: None,
    },
    Column {
        name: "position",
        ty: ["BIGINT      NOT NULL", "INTEGER NOT NULL"],
        note: Some("the last global position the projection handled, committed with its effects"),
    },
    Column {
        name: "updated_at",
        ty: [
            "TIMESTAMPTZ NOT NULL DEFAULT now()",
            "TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
        ],
        note: None,
    },
];

/// Writes a stream's snapshot, replacing an older one. Binds `1` stream type, `2` stream id, `3`
/// version, `4` snapshot version, `5` payload.
pub fn save_snapshot(dialect: Dialect, store: &str) -> String {
    let t = snapshots_table(store);
    let now = match dialect {
        Dialect::Postgres => "now()",
        Dialect::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    };
    let values = (1..=5)
        .map(|n| dialect.placeholder(n))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {t} (stream_type, stream_id, version, snapshot_version, payload) VALUES ({values}) \
         ON CONFLICT (stream_type, stream_id) DO UPDATE SET version = excluded.version, \
         snapshot_version = excluded.snapshot_version, payload = excluded.payload, taken_at = {now} \
         WHERE {t}.version <= excluded.version"
    )
}

/// Moves projection `1` from position `2` to position `3`: no row updated when it is not at
/// `2` (another runner moved it).
pub fn advance_checkpoint(dialect: Dialect, store: &str) -> String {
    let now = match dialect {
        Dialect::Postgres => "now()",
        Dialect::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    };
    format!(
        "UPDATE {} SET position = {}, updated_at = {now} WHERE projection = {} AND position = {}",
        checkpoints_table(store),
        dialect.placeholder(3),
        dialect.placeholder(1),
        dialect.placeholder(2),
    )
}

/// The columns an append binds, in order.
const APPENDED: &str =
    "stream_type, stream_id, version, event_id, event_type, schema_version, headers, payload";

/// The first event of an append: written only if the stream is at the expected version. Binds
/// `1` stream type, `2` stream id, `3` event id, `4` event type, `5` schema version, `6`
/// headers, `7` payload, `8` the expected version (`NULL`: any). Returns `version, position`; no
/// row when the stream is not at the expected version.
pub fn append_first(dialect: Dialect, store: &str) -> String {
    let t = events_table(store);
    let p = |n| dialect.placeholder(n);
    let head_version = match dialect {
        Dialect::Postgres => format!("{}::BIGINT", p(8)),
        Dialect::Sqlite => p(8),
    };
    format!(
        "INSERT INTO {t} ({APPENDED}) \
         SELECT {p1}, {p2}, head.v + 1, {p3}, {p4}, {p5}, {p6}, {p7} \
         FROM (SELECT COALESCE(MAX(version), 0) AS v FROM {t} WHERE stream_type = {p1} AND stream_id = {p2}) AS head \
         WHERE {head_version} IS NULL OR head.v = {head_version} \
         RETURNING version, position",
        p1 = p(1),
        p2 = p(2),
        p3 = p(3),
        p4 = p(4),
        p5 = p(5),
        p6 = p(6),
        p7 = p(7),
    )
}

/// The next events of an append, at the version given: binds `1` … `8` as
/// [`APPENDED`](self) lists them. Returns `position`.
pub fn append_next(dialect: Dialect, store: &str) -> String {
    let values = (1..=8)
        .map(|n| dialect.placeholder(n))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {} ({APPENDED}) VALUES ({values}) RETURNING position",
        events_table(store)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_append_binds_what_the_table_needs() {
        assert_eq!(
            append_next(Dialect::Sqlite, DEFAULT_STORE),
            "INSERT INTO eventbus_store_events (stream_type, stream_id, version, event_id, event_type, schema_version, headers, payload) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING position"
        );
        let first = append_first(Dialect::Postgres, "shop");
        assert!(first.contains("FROM shop_events WHERE stream_type = $1 AND stream_id = $2"));
        assert!(first.contains("WHERE $8::BIGINT IS NULL OR head.v = $8::BIGINT"));
    }
}
