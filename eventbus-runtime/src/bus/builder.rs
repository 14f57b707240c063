//! Building a Transactional or Direct bus, with embedded defaults (AD-003, AD-008).

use crate::bus::{Backend, EventBus};
use crate::config::{Database, KafkaConfig, OutboxConfig};
use crate::error::{ConfigError, StartError};
use crate::event::Service;

/// Builds an [`EventBus`] in the Transactional (default) or Direct mode.
///
/// Anything left unset takes the embedded default, so a new project runs with no setup: no
/// database → the service's SQLite file in `$EVENTBUS_DATA_DIR` (default `{temp dir}/eventbus/`); no broker → librdkafka's in-process mock cluster.
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
///
/// `Debug` shows every setting but no secret: database URLs and Kafka settings are redacted
/// ([`crate::config::redact()`]).
pub struct Builder<S: Service> {
    service: S,
    kafka: Option<KafkaConfig>,
    database: Option<Database>,
    outbox: OutboxConfig,
    direct: bool,
    relay: bool,
    kafka_check: Option<std::time::Duration>,
    on_dead_letter: Option<crate::dlq::DeadLetterHook>,
}

/// How long `build` waits for the brokers by default ([`Builder::kafka_check`]).
pub const DEFAULT_KAFKA_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

impl<S: Service> std::fmt::Debug for Builder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("service", &S::NAME)
            .field("kafka", &self.kafka)
            .field("database", &self.database)
            .field("outbox", &self.outbox)
            .field("direct", &self.direct)
            .field("relay", &self.relay)
            .field("kafka_check", &self.kafka_check)
            .field("on_dead_letter", &self.on_dead_letter.is_some())
            .finish()
    }
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
            kafka_check: Some(DEFAULT_KAFKA_CHECK),
            on_dead_letter: None,
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

    /// How long [`build`](Builder::build) waits for the configured brokers to answer a metadata
    /// request ([`DEFAULT_KAFKA_CHECK`], 5 s, by default; also `EVENTBUS_KAFKA_CHECK_SECS`). A
    /// broker that does not answer fails the build at once with
    /// [`StartError::KafkaUnreachable`], naming its address, rather than leaving the bus's
    /// producer and consumers to wait in silence. `None` builds without asking: a Transactional
    /// bus then starts while Kafka is away (its outbox takes events, and its relay sends them,
    /// and logs once that Kafka is unavailable, until it is back). The embedded broker is never
    /// checked.
    pub fn kafka_check(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.kafka_check = timeout;
        self
    }

    /// Calls `hook` once for each event the in-process relay dead-letters, before its
    /// [`DeadLettered`](crate::dlq::DeadLettered) notification is published to
    /// `system.eventbus.dead_lettered` (alerting in process; keep it quick: the relay waits).
    /// Consumers take their own hook (`Consumer::on_dead_letter`).
    pub fn on_dead_letter(
        mut self,
        hook: impl Fn(&crate::dlq::DeadLettered) + Send + Sync + 'static,
    ) -> Self {
        self.on_dead_letter = Some(std::sync::Arc::new(hook));
        self
    }

    /// Runs no relay in this process (run `eventbus-relay` processes instead).
    pub fn without_relay(mut self) -> Self {
        self.relay = false;
        self
    }

    /// Applies the YAML configuration file at `path` over what is set. The outbox settings are
    /// checked at once; the error names the file, the line and the setting.
    ///
    #[doc = include_str!("../docs/config-file.md")]
    pub fn config_file(mut self, path: impl AsRef<std::path::Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let mut file = crate::config::file::FileConfig::read(path)?;
        if let Some(mode) = file.mode {
            self.direct = mode == crate::config::file::FileMode::Direct;
        }
        if let Some(url) = file.database_url.take() {
            self.database = Some(Database::Url(url));
        }
        if let Some(kafka) = file.kafka.take() {
            self.kafka = Some(kafka.into_config().map_err(|e| file.locate(e, &shown))?);
        }
        if let Some(outbox) = file.outbox.take() {
            let outbox = outbox.apply(self.outbox.clone());
            outbox.validate().map_err(|e| file.locate(e, &shown))?;
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
        if let Ok(secs) = std::env::var("EVENTBUS_KAFKA_CHECK_SECS") {
            let secs: f64 = secs.trim().parse().ok().filter(|s: &f64| s.is_finite() && *s >= 0.0).ok_or_else(|| {
                ConfigError::invalid(
                    "EVENTBUS_KAFKA_CHECK_SECS",
                    format!("{secs:?} is not a number of seconds: use e.g. 5, or 0 to start without checking"),
                )
            })?;
            self.kafka_check = (secs > 0.0).then(|| std::time::Duration::from_secs_f64(secs));
        }
        self.outbox = self.outbox.from_env()?;
        Ok(self)
    }

    /// Connects, migrates the outbox, and starts the in-process relay.
    ///
    /// Which modes a build offers follows the crate's features: the Direct mode and the relay need
    /// `kafka`; the Transactional mode needs `postgres` or `sqlite` (the embedded default database
    /// is SQLite).
    pub async fn build(self) -> Result<EventBus<S>, StartError> {
        let _ = &self.service;
        self.outbox.validate()?;
        if self.direct {
            return self.build_direct().await;
        }
        self.build_transactional().await
    }

    #[cfg(feature = "kafka")]
    async fn build_direct(self) -> Result<EventBus<S>, StartError> {
        let (kafka, embedded) = kafka_or_embedded(self.kafka)?;
        let producer = crate::kafka::producer(&kafka)?;
        if embedded.is_none()
            && let Some(timeout) = self.kafka_check
        {
            check_kafka(producer.clone(), &kafka, timeout).await?;
        }
        Ok(EventBus::with_backend(Backend::Direct(
            super::direct::DirectBackend {
                producer,
                kafka,
                _embedded: embedded,
            },
        )))
    }

    #[cfg(not(feature = "kafka"))]
    async fn build_direct(self) -> Result<EventBus<S>, StartError> {
        Err(missing_feature("the Direct mode", "kafka"))
    }

    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    async fn build_transactional(self) -> Result<EventBus<S>, StartError> {
        use std::sync::Arc;
        let database = match self.database {
            Some(d) => d,
            None => default_database(S::NAME)?,
        };
        let store = crate::outbox::connect(database, &self.outbox.table).await?;
        store
            .migrate()
            .await
            .map_err(|source| StartError::Database {
                url: format!("{:?} outbox `{}`", store.dialect(), store.table()),
                source,
            })?;
        let wake = Arc::new(tokio::sync::Notify::new());
        #[cfg(feature = "kafka")]
        {
            let (kafka, embedded) = kafka_or_embedded(self.kafka)?;
            if embedded.is_none()
                && let Some(timeout) = self.kafka_check
            {
                check_kafka(crate::kafka::producer(&kafka)?, &kafka, timeout).await?;
            }
            let relay = if self.relay {
                Some(
                    crate::relay::Relay::new(store.clone(), &kafka, self.outbox.clone())?
                        .service(S::NAME)
                        .with_hook(self.on_dead_letter.clone())
                        .with_waker(Arc::clone(&wake))
                        .spawn(),
                )
            } else {
                None
            };
            let relay_stats = relay.as_ref().map(crate::relay::RelayHandle::stats);
            Ok(EventBus::with_backend(Backend::Transactional(
                super::transactional::TransactionalBackend {
                    store,
                    shards: self.outbox.shards,
                    wake,
                    kafka: Some(kafka),
                    relay: std::sync::Mutex::new(relay),
                    relay_stats,
                    _embedded: embedded,
                },
            )))
        }
        #[cfg(not(feature = "kafka"))]
        {
            // No Kafka client in this build: events wait in the outbox for `eventbus-relay`.
            let _ = (self.kafka, self.relay, self.on_dead_letter);
            Ok(EventBus::with_backend(Backend::Transactional(
                super::transactional::TransactionalBackend {
                    store,
                    shards: self.outbox.shards,
                    wake,
                },
            )))
        }
    }

    #[cfg(not(any(feature = "postgres", feature = "sqlite")))]
    async fn build_transactional(self) -> Result<EventBus<S>, StartError> {
        let _ = (self.kafka, self.database, self.relay, self.on_dead_letter);
        Err(missing_feature(
            "the Transactional mode",
            "postgres` or `sqlite",
        ))
    }
}

/// The error of a mode this build was compiled without.
#[allow(dead_code)]
fn missing_feature(what: &str, feature: &str) -> StartError {
    StartError::Config(ConfigError::invalid(
        "mode",
        format!(
            "{what} needs the `{feature}` feature of eventbus: enable it in Cargo.toml (`eventbus = {{ version = \"..\", features = [\"{feature}\"] }}`)"
        ),
    ))
}

/// The configured cluster, or the embedded one.
#[cfg(feature = "kafka")]
fn kafka_or_embedded(
    kafka: Option<KafkaConfig>,
) -> Result<(KafkaConfig, Option<crate::kafka::EmbeddedKafka>), StartError> {
    Ok(match kafka {
        Some(k) => (k, None),
        None => {
            let embedded = crate::kafka::EmbeddedKafka::start()?;
            (embedded.config(), Some(embedded))
        }
    })
}

/// Asks the brokers for their metadata with `producer`'s client, within `timeout`.
#[cfg(feature = "kafka")]
async fn check_kafka(
    producer: rdkafka::producer::FutureProducer,
    kafka: &KafkaConfig,
    timeout: std::time::Duration,
) -> Result<(), StartError> {
    use rdkafka::producer::Producer as _;
    let answer = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, timeout)
            .map(|m| m.brokers().len())
    })
    .await;
    let error = match answer {
        Ok(Ok(brokers)) if brokers > 0 => return Ok(()),
        Ok(Ok(_)) => "the cluster listed no brokers".to_owned(),
        Ok(Err(e)) => crate::config::redact::kafka_error(e, Some(kafka)).to_string(),
        Err(e) => format!("the check failed: {e}"),
    };
    Err(StartError::KafkaUnreachable {
        servers: kafka.bootstrap_servers.join(","),
        waited: timeout,
        error,
    })
}

/// The embedded default: the service's SQLite file in `$EVENTBUS_DATA_DIR` (default
/// `{temp dir}/eventbus/`), the same file on every run, so a restart relays what the last run
/// left in the outbox. Delete the file to start over.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
fn default_database(service: &str) -> Result<Database, StartError> {
    if cfg!(not(feature = "sqlite")) {
        return Err(StartError::Config(ConfigError::invalid(
            "database",
            "is not set, and the embedded default (SQLite) needs the `sqlite` feature: set `database_url` (or EVENTBUS_DATABASE_URL) to your PostgreSQL database",
        )));
    }
    let dir = std::env::var_os("EVENTBUS_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(
            || std::env::temp_dir().join("eventbus"),
            std::path::PathBuf::from,
        );
    std::fs::create_dir_all(&dir).map_err(|e| {
        StartError::Config(ConfigError::invalid(
            "EVENTBUS_DATA_DIR",
            format!(
                "the embedded database's directory `{}` cannot be created ({e}): set EVENTBUS_DATA_DIR to a writable directory, or set a database_url",
                dir.display()
            ),
        ))
    })?;
    let path = dir.join(format!("{service}.db"));
    Ok(Database::Url(format!("sqlite://{}", path.display())))
}
