//! Every statement the outbox runs, per dialect, for one table: built once when the store is
//! made, from the table's one definition (`eventbus_core::outbox`) and the validated table name. A step that takes two statements on a
//! dialect is a list, each statement bound on its own, run in one transaction.

use eventbus_core::outbox::{dead_row_columns, insert_any, new_row_columns};

use super::Dialect;

/// Every statement of one outbox table.
pub(crate) struct Statements {
    pub(super) fetch: String,
    pub(super) delete_sent: String,
    pub(super) mark_sent: String,
    pub(super) retry: String,
    /// Moves a row to the dead table (binds: id, error, class): the class goes into the dead
    /// row's headers, as `eventbus_dlq_class`.
    pub(super) to_dead: Vec<String>,
    pub(super) purge: String,
    pub(super) replay_all: Vec<String>,
    /// Replays the given events: PostgreSQL takes them all at once (an array); SQLite one event
    /// id per execution (it stores ids as blobs).
    pub(super) replay_some: Vec<String>,
    pub(super) dead: String,
    /// The dead rows per class: the class (`unknown` for rows without one), how many, the age of
    /// the oldest in seconds.
    pub(super) dead_counts: String,
    /// One dead row with its headers (JSON text) and payload (binds: event id).
    pub(super) dead_one: String,
    /// Moves a dead row to `{table}_discarded` with a reason (binds: event id, reason):
    /// PostgreSQL in one statement, SQLite in two (insert, delete).
    pub(super) discard: Vec<String>,
    pub(super) pending: String,
    pub(super) backlog: String,
    /// The INSERT of an event whose type is not known at compile time (binds all eight values).
    pub(super) insert: String,
}

impl Statements {
    pub(super) fn new(dialect: Dialect, t: &str) -> Self {
        let new = new_row_columns();
        let cols = dead_row_columns();
        let moved = cols.replace("attempts", "attempts + 1");
        // The class of a dead row lives in its headers (no column: tables need no migration); a
        // replay back into the outbox takes it out again. The headers column is JSON; tables
        // made by earlier versions have JSONB. The statements edit it as `::jsonb` and read it
        // as `::text`, so they hold for either (docs/outbox.md, "Tables").
        let class = crate::dlq::CLASS;
        // The xmin of the statement's snapshot: the oldest transaction still running.
        let xmin = "pg_snapshot_xmin(pg_current_snapshot())";
        match dialect {
            Dialect::Postgres => Statements {
                // Commit order (ARCHITECTURE.md): only rows of transactions older than every
                // running one (xid below the snapshot's xmin), in id order. A key whose earlier row
                // is backing off or not yet readable holds its later rows back; other keys flow.
                // One statement (one snapshot, one round trip) returns four kinds of rows: 0, the
                // rows to publish past the resume point; 3, those below it (`late`); 1, each
                // held-back key with its first held row; 2, the snapshot's xmin (as a bigint).
                //
                // A drain reads its next batch while the current one is in flight, and each read
                // after its first resumes past the highest id read so far ($3; 0 for a first
                // read), so no scan steps over the rows in flight, acknowledged but not yet
                // deleted, or deleted but not yet vacuumed (`ready`). A row at or below $3 that
                // no earlier read returned became readable since the previous read: its
                // transaction was still running then, or an older one was. Its xid is then at
                // or above the previous read's xmin ($4) and below this one's, so `late` finds
                // it through the xid index, bounded by the transactions that ended between two
                // reads, not by the backlog. Its `ORDER BY id + 0` is a sort every plan pays,
                // so no plan walks the id index instead (see below).
                //
                // A queue's statistics are stale more often than not (a table truncated or new
                // says it is empty while a burst fills it), and with them PostgreSQL chose a scan
                // of the backoff index and a sort for `ready` (estimated 1 row, found 926,000):
                // 4-7 s a read in a soak, against 25 ms. So the relay reads on sessions with
                // sequential scans, bitmap scans and sorts off (`OutboxStore::relay_reader`): the
                // one plan left for `ready` is an index in id order (the primary key or the
                // pending index), stopping at the limit, and `held` is two index scans (backoff,
                // xid), hence the UNION ALL. The xid conditions are written out, not taken from a
                // CTE, so the planner estimates them as the few rows they are.
                fetch: format!(
                    "WITH held AS ( \
                       SELECT partition_key, min(id) AS first FROM ( \
                         SELECT partition_key, id FROM {t} \
                         WHERE sent_at IS NULL AND next_attempt_at > now() \
                           AND shard = ANY($1) AND partition_key IS NOT NULL \
                         UNION ALL \
                         SELECT partition_key, id FROM {t} \
                         WHERE sent_at IS NULL AND xid >= {xmin} \
                           AND shard = ANY($1) AND partition_key IS NOT NULL) h \
                       GROUP BY partition_key), \
                     ready AS ( \
                       SELECT id, event_id, topic, partition_key, headers::text AS headers, payload, attempts \
                       FROM {t} \
                       WHERE sent_at IS NULL AND shard = ANY($1) AND next_attempt_at <= now() \
                         AND xid < {xmin} AND id > $3 \
                       ORDER BY id LIMIT $2), \
                     late AS ( \
                       SELECT id, event_id, topic, partition_key, headers::text AS headers, payload, attempts \
                       FROM {t} \
                       WHERE sent_at IS NULL AND shard = ANY($1) AND next_attempt_at <= now() \
                         AND xid >= $4::text::xid8 AND xid < {xmin} AND id <= $3 \
                       ORDER BY id + 0 LIMIT $2) \
                     SELECT 0 AS kind, id, event_id, topic, partition_key, headers, payload, attempts FROM ready \
                     UNION ALL SELECT 3, * FROM late \
                     UNION ALL SELECT 1, first, NULL, NULL, partition_key, NULL, NULL, NULL FROM held \
                     UNION ALL SELECT 2, {xmin}::text::bigint, NULL, NULL, NULL, NULL, NULL, NULL"
                ),
                // Binds: the ids on their own, then the first and last id of the longest run of
                // consecutive ids (NULL for none; `IdRuns` in `rows.rs`). The run is one index
                // range scan, where `id = ANY` descends the index once per id: half PostgreSQL's
                // time for a batch of consecutive rows. Its bounds are parameters of their own,
                // so the planner sees them: bounds from an array (`unnest`) got the default
                // estimate, a third of the table, and a sequential scan in the soak bench. The two
                // parts touch different rows.
                delete_sent: format!(
                    "WITH singles AS (DELETE FROM {t} WHERE id = ANY($1)) \
                     DELETE FROM {t} WHERE id BETWEEN $2::int8 AND $3::int8"
                ),
                mark_sent: format!(
                    "WITH singles AS (UPDATE {t} SET sent_at = now() WHERE id = ANY($1)) \
                     UPDATE {t} SET sent_at = now() WHERE id BETWEEN $2::int8 AND $3::int8"
                ),
                retry: format!(
                    "UPDATE {t} SET attempts = attempts + $4, last_error = $2, \
                     next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1"
                ),
                to_dead: vec![format!(
                    "WITH moved AS (DELETE FROM {t} WHERE id = $1 RETURNING *) \
                     INSERT INTO {t}_dead (id, {cols}, last_error) \
                     SELECT id, {}, $2 FROM moved",
                    moved.replace(
                        "headers",
                        &format!("headers::jsonb || jsonb_build_object('{class}', $3::text)")
                    )
                )],
                purge: format!(
                    "DELETE FROM {t} WHERE sent_at IS NOT NULL AND sent_at < now() - make_interval(secs => $1)"
                ),
                replay_all: vec![format!(
                    "WITH moved AS (DELETE FROM {t}_dead RETURNING *) \
                     INSERT INTO {t} ({new}) SELECT {} FROM moved ORDER BY id",
                    new.replace("headers", &format!("headers::jsonb - '{class}'"))
                )],
                replay_some: vec![format!(
                    "WITH moved AS (DELETE FROM {t}_dead WHERE event_id = ANY($1) RETURNING *) \
                     INSERT INTO {t} ({new}) SELECT {} FROM moved ORDER BY id",
                    new.replace("headers", &format!("headers::jsonb - '{class}'"))
                )],
                dead: format!(
                    "SELECT event_id, topic, event_type, partition_key, attempts, last_error, \
                     EXTRACT(EPOCH FROM now() - failed_at)::float8, headers->>'{class}' \
                     FROM {t}_dead ORDER BY id"
                ),
                dead_counts: format!(
                    "SELECT COALESCE(headers->>'{class}', 'unknown'), count(*), \
                     EXTRACT(EPOCH FROM now() - min(failed_at))::float8 \
                     FROM {t}_dead GROUP BY 1"
                ),
                dead_one: format!(
                    "SELECT event_id, topic, event_type, partition_key, attempts, last_error, \
                     EXTRACT(EPOCH FROM now() - failed_at)::float8, headers->>'{class}', \
                     headers::text, payload \
                     FROM {t}_dead WHERE event_id = $1"
                ),
                discard: vec![format!(
                    "WITH moved AS (DELETE FROM {t}_dead WHERE event_id = $1 RETURNING *) \
                     INSERT INTO {t}_discarded (id, {cols}, last_error, failed_at, reason) \
                     SELECT id, {cols}, last_error, failed_at, $2 FROM moved"
                )],
                pending: format!("SELECT count(*) FROM {t} WHERE sent_at IS NULL"),
                backlog: format!(
                    "SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at))::float8, \
                     (SELECT count(*) FROM {t}_dead) FROM {t} WHERE sent_at IS NULL"
                ),
                insert: insert_any(dialect, t),
            },
            Dialect::Sqlite => Statements {
                // SQLite has one writer at a time: ids are in commit order.
                fetch: format!(
                    "SELECT o.id, o.event_id, o.topic, o.partition_key, o.headers, o.payload, o.attempts \
                     FROM {t} o \
                     WHERE o.sent_at IS NULL AND o.next_attempt_at <= ?1 \
                       AND (o.partition_key IS NULL OR NOT EXISTS ( \
                         SELECT 1 FROM {t} p WHERE p.sent_at IS NULL \
                           AND p.partition_key = o.partition_key AND p.id < o.id \
                           AND p.next_attempt_at > ?1)) \
                       AND o.id NOT IN (SELECT value FROM json_each(?3)) \
                     ORDER BY o.id LIMIT ?2"
                ),
                delete_sent: format!(
                    "DELETE FROM {t} WHERE id IN (SELECT value FROM json_each(?1))"
                ),
                mark_sent: format!(
                    "UPDATE {t} SET sent_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                     WHERE id IN (SELECT value FROM json_each(?1))"
                ),
                retry: format!(
                    "UPDATE {t} SET attempts = attempts + ?4, last_error = ?2, next_attempt_at = ?3 WHERE id = ?1"
                ),
                to_dead: vec![
                    format!(
                        "INSERT INTO {t}_dead (id, {cols}, last_error) \
                         SELECT id, {}, ?2 FROM {t} WHERE id = ?1",
                        moved.replace("headers", &format!("json_set(headers, '$.{class}', ?3)"))
                    ),
                    format!("DELETE FROM {t} WHERE id = ?1"),
                ],
                purge: format!(
                    "DELETE FROM {t} WHERE sent_at IS NOT NULL \
                     AND sent_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || ?1 || ' seconds')"
                ),
                replay_all: vec![
                    format!(
                        "INSERT INTO {t} ({new}) SELECT {} FROM {t}_dead ORDER BY id",
                        new.replace("headers", &format!("json_remove(headers, '$.{class}')"))
                    ),
                    format!("DELETE FROM {t}_dead"),
                ],
                replay_some: vec![
                    format!(
                        "INSERT INTO {t} ({new}) SELECT {} FROM {t}_dead WHERE event_id = ?1",
                        new.replace("headers", &format!("json_remove(headers, '$.{class}')"))
                    ),
                    format!("DELETE FROM {t}_dead WHERE event_id = ?1"),
                ],
                dead: format!(
                    "SELECT event_id, topic, event_type, partition_key, attempts, last_error, \
                     (julianday('now') - julianday(failed_at)) * 86400.0, \
                     json_extract(headers, '$.{class}') FROM {t}_dead ORDER BY id"
                ),
                dead_counts: format!(
                    "SELECT COALESCE(json_extract(headers, '$.{class}'), 'unknown'), count(*), \
                     (julianday('now') - julianday(min(failed_at))) * 86400.0 \
                     FROM {t}_dead GROUP BY 1"
                ),
                dead_one: format!(
                    "SELECT event_id, topic, event_type, partition_key, attempts, last_error, \
                     (julianday('now') - julianday(failed_at)) * 86400.0, \
                     json_extract(headers, '$.{class}'), headers, payload \
                     FROM {t}_dead WHERE event_id = ?1"
                ),
                discard: vec![
                    format!(
                        "INSERT INTO {t}_discarded (id, {cols}, last_error, failed_at, reason) \
                         SELECT id, {cols}, last_error, failed_at, ?2 FROM {t}_dead WHERE event_id = ?1"
                    ),
                    format!("DELETE FROM {t}_dead WHERE event_id = ?1"),
                ],
                pending: format!("SELECT count(*) FROM {t} WHERE sent_at IS NULL"),
                backlog: format!(
                    "SELECT count(*), (julianday('now') - julianday(min(created_at))) * 86400.0, \
                     (SELECT count(*) FROM {t}_dead) FROM {t} WHERE sent_at IS NULL"
                ),
                insert: insert_any(dialect, t),
            },
        }
    }
}
