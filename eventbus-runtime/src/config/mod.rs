//! Configuration (AD-008): settings with defaults, overridable by the environment (`env.rs`) and
//! a YAML file (`file.rs`, read by [`Builder::config_file`](crate::bus::Builder::config_file)).
//!
//! Secrets (SASL passwords, database passwords) never appear in `Debug` output or logs.

mod backoff;
mod env;
pub(crate) mod file;
mod kafka;
mod outbox;

pub use backoff::Backoff;
pub use kafka::{KafkaConfig, SaslScram, Secret};
pub use outbox::{DEFAULT_OUTBOX_TABLE, OutboxConfig, check_table_name};

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

/// Where the outbox lives.
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

/// `url` with its password replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:hunter2@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
        let shown = format!("{:?}", Database::Url("postgres://app:hunter2@db/x".into()));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = KafkaConfig::new("k:9092")
            .with_sasl_scram("SCRAM-SHA-512", "app", Secret::new("hunter2"))
            .unwrap()
            .with_property("ssl.key.password", "hunter3");
        let printed = format!("{c:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("hunter3"),
            "{printed}"
        );
        assert!(printed.contains("app"));
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
