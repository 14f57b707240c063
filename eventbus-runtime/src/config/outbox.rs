//! [`OutboxConfig`]: the outbox table and its relay's settings.

use std::time::Duration;

use super::Backoff;
use crate::error::ConfigError;

/// The default outbox table; the migrations the crate ships are rendered for it.
pub const DEFAULT_OUTBOX_TABLE: &str = eventbus_core::outbox::DEFAULT_TABLE;

/// The outbox and its relay.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxConfig {
    /// The outbox table: a plain SQL identifier (`a-z`, `0-9`, `_`, at most 40 characters; no
    /// schema prefix: set the PostgreSQL `search_path` of the connection for another schema);
    /// the dead table is `{table}_dead`.
    pub table: String,
    /// Rows the relay reads and sends per batch.
    pub batch_size: usize,
    /// How often the relay polls when no notification wakes it.
    pub poll_interval: Duration,
    /// Attempts before a row moves to the dead table.
    pub max_attempts: u32,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// Shards: rows carry `hash(key) mod shards`; relays own shards (PostgreSQL advisory locks).
    pub shards: u32,
    /// How long sent rows are kept (`Duration::ZERO`: deleted at once).
    pub retention: Duration,
    /// Also dead-letter the events moved to the dead table to this topic, with the headers of
    /// [`crate::dlq`] (replayable with [`crate::dlq::replay`]).
    pub dead_letter_topic: Option<String>,
    /// PostgreSQL: when the outbox is empty and the table with its indexes takes more than this
    /// many bytes on disk, a relay truncates it (under a lock it waits at most 50 ms for, and
    /// only after checking, under that lock, that no row is left), so the space a burst took is
    /// given back without a `VACUUM FULL`. 0: never. Default 64 MiB. Not with a `retention`.
    pub compact_above_bytes: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            table: DEFAULT_OUTBOX_TABLE.to_owned(),
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            max_attempts: 10,
            backoff: Backoff::default(),
            shards: 16,
            retention: Duration::ZERO,
            dead_letter_topic: None,
            compact_above_bytes: 64 << 20,
        }
    }
}

impl OutboxConfig {
    /// Checks every value; the error names the setting and what to do.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_table_name(&self.table)?;
        if self.batch_size == 0 {
            return Err(ConfigError::invalid(
                "outbox.batch_size",
                "is 0: use at least 1",
            ));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::invalid(
                "outbox.max_attempts",
                "is 0: use at least 1",
            ));
        }
        if self.shards == 0 || self.shards > 1024 {
            return Err(ConfigError::invalid(
                "outbox.shards",
                format!("is {}: use 1 to 1024", self.shards),
            ));
        }
        if self.backoff.multiplier < 1.0 || self.backoff.initial > self.backoff.max {
            return Err(ConfigError::invalid(
                "outbox.backoff",
                "needs multiplier >= 1 and initial <= max",
            ));
        }
        if let Some(dlq) = &self.dead_letter_topic {
            crate::event::routing::check_topic(dlq)
                .map_err(|e| ConfigError::invalid("outbox.dead_letter_topic", e))?;
        }
        Ok(())
    }
}
/// Checks an outbox (or inbox) table name: a lower-case SQL identifier of at most 40 characters,
/// so it needs no quoting in any dialect.
pub fn check_table_name(name: &str) -> Result<(), ConfigError> {
    eventbus_core::outbox::check_table_name(name)
        .map_err(|problem| ConfigError::invalid("outbox.table", problem))
}
