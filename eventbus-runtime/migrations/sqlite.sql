-- eventbus outbox, SQLite 3.35+. `eventbus_outbox` is replaced by the configured table name.
CREATE TABLE IF NOT EXISTS eventbus_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        BLOB    NOT NULL UNIQUE,
    topic           TEXT    NOT NULL,
    partition_key   TEXT,
    event_type      TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    headers         TEXT    NOT NULL,
    payload         BLOB    NOT NULL,
    created_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- unix milliseconds
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    shard           INTEGER NOT NULL,
    sent_at         TEXT
);
CREATE INDEX IF NOT EXISTS eventbus_outbox_pending ON eventbus_outbox (id) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS eventbus_outbox_pending_key ON eventbus_outbox (partition_key, id) WHERE sent_at IS NULL;

CREATE TABLE IF NOT EXISTS eventbus_outbox_dead (
    id            INTEGER PRIMARY KEY,
    event_id      BLOB    NOT NULL UNIQUE,
    topic         TEXT    NOT NULL,
    partition_key TEXT,
    event_type    TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    headers       TEXT    NOT NULL,
    payload       BLOB    NOT NULL,
    created_at    TEXT    NOT NULL,
    attempts      INTEGER NOT NULL,
    shard         INTEGER NOT NULL,
    last_error    TEXT    NOT NULL,
    failed_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
