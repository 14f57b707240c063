//! [`connect`]: an outbox store from a [`Database`] (a URL, or a pool the application has).

use crate::config::{Database, redact};
use crate::error::{ConfigError, StartError};

use super::OutboxStore;

/// Connects to `database` and returns its outbox store. A URL of a dialect this build was
/// compiled without (feature `postgres` or `sqlite`) is an error that names the feature.
pub async fn connect(database: Database, table: &str) -> Result<OutboxStore, StartError> {
    let url = match database {
        #[cfg(feature = "postgres")]
        Database::Postgres(pool) => return Ok(OutboxStore::postgres(pool, table)?),
        #[cfg(feature = "sqlite")]
        Database::Sqlite(pool) => return Ok(OutboxStore::sqlite(pool, table)?),
        Database::Url(url) => url,
    };
    let shown = redact(&url);
    let db_err = |source| StartError::Database {
        url: shown.clone(),
        source,
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        unsupported_secret_parameter(&url, &shown)?;
        #[cfg(feature = "postgres")]
        {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(std::time::Duration::from_secs(10))
                .connect(&url)
                .await
                .map_err(db_err)?;
            return Ok(OutboxStore::postgres(pool, table)?);
        }
        #[cfg(not(feature = "postgres"))]
        return Err(unsupported(&shown, "postgres"));
    }
    if url.starts_with("sqlite:") {
        #[cfg(feature = "sqlite")]
        {
            use std::str::FromStr as _;
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
                .map_err(db_err)?
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(std::time::Duration::from_secs(10));
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await
                .map_err(db_err)?;
            return Ok(OutboxStore::sqlite(pool, table)?);
        }
        #[cfg(not(feature = "sqlite"))]
        return Err(unsupported(&shown, "sqlite"));
    }
    Err(StartError::Config(ConfigError::invalid(
        "database URL",
        format!("{shown:?} is neither postgres://... nor sqlite://..."),
    )))
}

/// Refuses a PostgreSQL URL parameter that names a secret sqlx does not read (`sslpassword`,
/// ...): sqlx would ignore it, and log its value in a warning.
fn unsupported_secret_parameter(url: &str, shown: &str) -> Result<(), StartError> {
    let Some((_, query)) = url.split_once('?') else {
        return Ok(());
    };
    for pair in query.split('&') {
        let key = pair.split('=').next().unwrap_or_default();
        if key != "password" && crate::config::redact::names_a_secret(key) {
            return Err(StartError::Config(ConfigError::invalid(
                "database URL",
                format!(
                    "{shown:?} has the parameter `{key}`, which the PostgreSQL driver (sqlx) does not support (it reads no encrypted client key): remove it (for a client key, give an unencrypted `sslkey` file)"
                ),
            )));
        }
    }
    Ok(())
}

/// A URL of a dialect this build lacks.
#[allow(dead_code)]
fn unsupported(shown: &str, feature: &str) -> StartError {
    StartError::Config(ConfigError::invalid(
        "database URL",
        format!("{shown:?} needs the `{feature}` feature of eventbus: enable it in Cargo.toml"),
    ))
}
