//! Building a Transactional or Direct bus, with embedded defaults (AD-003, AD-008).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

use crate::EventBus;
use crate::bus::{Backend, DirectBackend, TransactionalBackend};
use crate::config::{KafkaConfig, OutboxConfig};
use crate::error::{ConfigError, StartError};
use crate::event::Service;
use crate::kafka::EmbeddedKafka;
use crate::outbox::OutboxStore;
use crate::relay::Relay;

/// Where the outbox lives.
#[derive(Debug, Clone)]
pub enum Database {
    /// A URL: `postgres://...` or `sqlite://...`.
    Url(String),
    /// A PostgreSQL pool the application already has.
    Postgres(PgPool),
    /// A SQLite pool the application already has.
    Sqlite(SqlitePool),
}

/// Builds an [`EventBus`] in the Transactional (default) or Direct mode.
///
/// Anything left unset takes the embedded default, so a new project runs with no setup: no
/// database → a SQLite file in the temp dir; no broker → librdkafka's in-process mock cluster.
///
/// ```no_run
/// # use eventbus::{EventBus, KafkaConfig, OutboxConfig, Service};
/// # #[derive(Service)] #[service(name = "petstore")] struct Petstore;
/// # async fn run() -> Result<(), eventbus::StartError> {
/// let bus = EventBus::builder(Petstore)
///     .database_url("postgres://app:secret@db/petstore")
///     .kafka(KafkaConfig::new("kafka-1:9092,kafka-2:9092"))
///     .outbox(OutboxConfig { batch_size: 1000, ..OutboxConfig::default() })
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Builder<S: Service> {
    service: S,
    kafka: Option<KafkaConfig>,
    database: Option<Database>,
    outbox: OutboxConfig,
    direct: bool,
    relay: bool,
}

impl<S: Service> Builder<S> {
    pub(crate) fn new(service: S) -> Self {
        Builder {
            service,
            kafka: None,
            database: None,
            outbox: OutboxConfig::default(),
            direct: false,
            relay: true,
        }
    }

    /// The Kafka cluster.
    pub fn kafka(mut self, kafka: KafkaConfig) -> Self {
        self.kafka = Some(kafka);
        self
    }

    /// The database of the outbox, by URL (`postgres://...`, `sqlite://...`).
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database = Some(Database::Url(url.into()));
        self
    }

    /// The database of the outbox, as a pool the application already has.
    pub fn database(mut self, database: Database) -> Self {
        self.database = Some(database);
        self
    }

    /// Outbox and relay settings.
    pub fn outbox(mut self, outbox: OutboxConfig) -> Self {
        self.outbox = outbox;
        self
    }

    /// The Direct mode: publish sends to Kafka and awaits the acknowledgement; no outbox.
    pub fn direct(mut self) -> Self {
        self.direct = true;
        self
    }

    /// Runs no relay in this process (run `eventbus-relay` processes instead).
    pub fn without_relay(mut self) -> Self {
        self.relay = false;
        self
    }

    /// Applies the YAML configuration file at `path` over what is set (the format: the
    /// [`config_file`](crate::config_file) module). The outbox settings are checked at once; the
    /// error names the file, the line and the setting.
    pub fn config_file(mut self, path: impl AsRef<std::path::Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let file = crate::config_file::FileConfig::read(path)?;
        if let Some(mode) = file.mode {
            self.direct = mode == crate::config_file::FileMode::Direct;
        }
        if let Some(url) = file.database_url {
            self.database = Some(Database::Url(url));
        }
        if let Some(kafka) = file.kafka {
            self.kafka = Some(kafka.into_config().map_err(|e| e.in_file(&shown))?);
        }
        if let Some(outbox) = file.outbox {
            let outbox = outbox.apply(self.outbox.clone());
            outbox.validate().map_err(|e| e.in_file(&shown))?;
            self.outbox = outbox;
        }
        Ok(self)
    }

    /// Reads `EVENTBUS_DATABASE_URL`, `EVENTBUS_KAFKA_BROKERS` (and SASL settings, see
    /// [`KafkaConfig::from_env`]), `EVENTBUS_MODE` (`transactional` or `direct`) and the
    /// `EVENTBUS_OUTBOX_*` settings ([`OutboxConfig::from_env`]) over what is set.
    pub fn from_env(mut self) -> Result<Self, ConfigError> {
        if let Ok(url) = std::env::var("EVENTBUS_DATABASE_URL") {
            self.database = Some(Database::Url(url));
        }
        if let Some(kafka) = KafkaConfig::from_env()? {
            self.kafka = Some(kafka);
        }
        match std::env::var("EVENTBUS_MODE").as_deref() {
            Ok("direct") => self.direct = true,
            Ok("transactional") | Err(_) => {}
            Ok(other) => {
                return Err(ConfigError::invalid(
                    "EVENTBUS_MODE",
                    format!("{other:?} is not a mode: use `transactional` or `direct`"),
                ));
            }
        }
        self.outbox = self.outbox.from_env()?;
        Ok(self)
    }

    /// Connects, migrates the outbox, and starts the in-process relay.
    pub async fn build(self) -> Result<EventBus<S>, StartError> {
        let _ = &self.service;
        self.outbox.validate()?;
        let (kafka, embedded) = match self.kafka {
            Some(k) => (k, None),
            None => {
                let embedded = EmbeddedKafka::start()?;
                (embedded.config(), Some(embedded))
            }
        };
        if self.direct {
            let producer = crate::kafka::producer(&kafka)?;
            return Ok(EventBus::with_backend(Backend::Direct(DirectBackend {
                producer,
                kafka,
                _embedded: embedded,
            })));
        }
        let database = match self.database {
            Some(d) => d,
            None => Database::Url(embedded_sqlite_url(S::NAME)),
        };
        let store = connect(database, &self.outbox.table).await?;
        store
            .migrate()
            .await
            .map_err(|source| StartError::Database {
                url: store_label(&store),
                source,
            })?;
        let wake = Arc::new(tokio::sync::Notify::new());
        let (relay, relay_stats) = if self.relay {
            let relay = Relay::new(store.clone(), &kafka, self.outbox.clone())?
                .with_waker(Arc::clone(&wake))
                .spawn();
            let stats = relay.stats();
            (Some(relay), Some(stats))
        } else {
            (None, None)
        };
        Ok(EventBus::with_backend(Backend::Transactional(
            TransactionalBackend {
                store,
                kafka,
                shards: self.outbox.shards,
                wake,
                relay: std::sync::Mutex::new(relay),
                relay_stats,
                _embedded: embedded,
            },
        )))
    }
}

/// A fresh SQLite file for the embedded default.
fn embedded_sqlite_url(service: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let path = std::env::temp_dir().join(format!(
        "eventbus-{service}-{}-{nanos}.db",
        std::process::id()
    ));
    format!("sqlite://{}", path.display())
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

fn store_label(store: &OutboxStore) -> String {
    format!("{:?} outbox `{}`", store.dialect(), store.table)
}

/// Connects to `database` and returns its outbox store.
pub async fn connect(database: Database, table: &str) -> Result<OutboxStore, StartError> {
    match database {
        Database::Postgres(pool) => Ok(OutboxStore::postgres(pool, table)?),
        Database::Sqlite(pool) => Ok(OutboxStore::sqlite(pool, table)?),
        Database::Url(url) => {
            let shown = redact(&url);
            let db_err = |source| StartError::Database {
                url: shown.clone(),
                source,
            };
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(&url)
                    .await
                    .map_err(db_err)?;
                Ok(OutboxStore::postgres(pool, table)?)
            } else if url.starts_with("sqlite:") {
                let options = SqliteConnectOptions::from_str(&url)
                    .map_err(db_err)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(10));
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await
                    .map_err(db_err)?;
                Ok(OutboxStore::sqlite(pool, table)?)
            } else {
                Err(StartError::Config(ConfigError::invalid(
                    "database URL",
                    format!("{shown:?} is neither postgres://... nor sqlite://..."),
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://app:hunter2@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(super::redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
