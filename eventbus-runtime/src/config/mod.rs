//! Configuration (AD-008): settings with defaults, overridable by the environment (`env.rs`) and
//! a YAML file (`file.rs`, read by [`Builder::config_file`](crate::bus::Builder::config_file)).
//!
//! Secrets (SASL passwords, database passwords, librdkafka's sensitive properties) never appear
//! in `Debug` or `Display` output, error messages or logs: `redact.rs` is the one place that knows
//! what is secret.

mod backoff;
mod env;
pub(crate) mod file;
mod kafka;
mod outbox;
pub mod redact;
mod yaml;

pub use backoff::Backoff;
pub use kafka::{KafkaConfig, SaslScram, Secret};
pub use outbox::{DEFAULT_OUTBOX_TABLE, OutboxConfig, check_table_name};
pub use redact::redact;

/// How a bus delivers events (the seed's AD-003).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Events are written to the outbox inside the caller's database transaction; a relay
    /// publishes them. The default wherever a database is configured.
    Transactional,
    /// Events are sent to Kafka and the broker's acknowledgement awaited.
    Direct,
    /// Events are recorded in memory and delivered to local consumers; no broker.
    Testing,
}

/// Where the outbox lives. `Debug` and `Display` show a URL without its passwords.
#[derive(Clone)]
pub enum Database {
    /// A URL: `postgres://...` or `sqlite://...`.
    Url(String),
    /// A PostgreSQL pool the application already has.
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
    /// A SQLite pool the application already has.
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Url(url) => f.debug_tuple("Url").field(&redact(url)).finish(),
            #[cfg(feature = "postgres")]
            Database::Postgres(pool) => f.debug_tuple("Postgres").field(pool).finish(),
            #[cfg(feature = "sqlite")]
            Database::Sqlite(pool) => f.debug_tuple("Sqlite").field(pool).finish(),
        }
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Url(url) => f.write_str(&redact(url)),
            #[cfg(feature = "postgres")]
            Database::Postgres(_) => f.write_str("a PostgreSQL pool"),
            #[cfg(feature = "sqlite")]
            Database::Sqlite(_) => f.write_str("a SQLite pool"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        for url in [
            "postgres://app:hunter2@db/x",
            "postgres://app@db/x?password=hunter2",
            "host=db user=app password=hunter2",
        ] {
            let database = Database::Url(url.into());
            let shown = format!("{database:?} {database}");
            assert!(
                !shown.contains("hunter2") && shown.contains("db"),
                "{shown}"
            );
        }
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = KafkaConfig::new("k:9092")
            .with_sasl_scram("SCRAM-SHA-512", "app", Secret::new("hunter2"))
            .unwrap()
            .with_property("ssl.key.password", "hunter3")
            .with_property("sasl.oauthbearer.config", "principal=p secret=hunter4")
            .with_property("linger.ms", "7");
        let printed = format!("{c:?} {c}");
        assert!(
            !["hunter2", "hunter3", "hunter4"]
                .iter()
                .any(|s| printed.contains(s)),
            "{printed}"
        );
        assert!(
            printed.contains("app") && printed.contains("linger.ms"),
            "{printed}"
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let err = OutboxConfig {
            table: "outbox; drop".into(),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("outbox; drop"), "{err}");
        let err = OutboxConfig {
            shards: 0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("shards"), "{err}");
    }
}
