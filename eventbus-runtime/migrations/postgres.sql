-- eventbus outbox, PostgreSQL 13+. `eventbus_outbox` is replaced by the configured table name.
CREATE TABLE IF NOT EXISTS eventbus_outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        UUID        NOT NULL UNIQUE,
    topic           TEXT        NOT NULL,
    partition_key   TEXT,
    event_type      TEXT        NOT NULL,
    version         INTEGER     NOT NULL,
    headers         JSONB       NOT NULL,
    payload         BYTEA       NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT,
    shard           INTEGER     NOT NULL,
    -- the writing transaction: the relay reads a row only once no older transaction runs
    xid             XID8        NOT NULL DEFAULT pg_current_xact_id(),
    sent_at         TIMESTAMPTZ
);
-- the relay's reads: pending rows in id order; and the few that hold their key back (an
-- uncommitted-era xid, a backoff)
CREATE INDEX IF NOT EXISTS eventbus_outbox_pending ON eventbus_outbox (id) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS eventbus_outbox_xid ON eventbus_outbox (xid) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS eventbus_outbox_backoff ON eventbus_outbox (next_attempt_at) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS eventbus_outbox_sent ON eventbus_outbox (sent_at) WHERE sent_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS eventbus_outbox_dead (
    id            BIGINT      PRIMARY KEY,
    event_id      UUID        NOT NULL UNIQUE,
    topic         TEXT        NOT NULL,
    partition_key TEXT,
    event_type    TEXT        NOT NULL,
    version       INTEGER     NOT NULL,
    headers       JSONB       NOT NULL,
    payload       BYTEA       NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    attempts      INTEGER     NOT NULL,
    shard         INTEGER     NOT NULL,
    last_error    TEXT        NOT NULL,
    failed_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Wake relays at commit: one notification per statement, not per row.
CREATE OR REPLACE FUNCTION eventbus_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('eventbus_outbox', '');
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER eventbus_outbox_notify
    AFTER INSERT ON eventbus_outbox FOR EACH STATEMENT EXECUTE FUNCTION eventbus_outbox_notify();
