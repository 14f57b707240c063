//! Health checks (the seed's AD-007): is the broker reachable, is the database, how much waits in
//! the outbox and in its dead table, is each consumer assigned and its circuit closed. Wire
//! [`EventBus::health`](crate::EventBus::health) to a readiness endpoint and alert on the backlog.

use std::fmt;
use std::time::{Duration, Instant};

#[cfg(feature = "kafka")]
use rdkafka::producer::{FutureProducer, Producer as _};

#[cfg(feature = "kafka")]
use crate::config::KafkaConfig;
use crate::config::Mode;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
use crate::outbox::{Backlog, OutboxStore};

/// What waits in an outbox (a build without a database has none).
#[cfg(not(any(feature = "postgres", feature = "sqlite")))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backlog {}

/// One dependency's state.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// It answered, in this time.
    Up {
        /// How long it took.
        latency: Duration,
    },
    /// It did not answer in time, or answered with an error.
    Down {
        /// What went wrong, and where.
        error: String,
    },
}

impl Check {
    /// True when it answered.
    pub fn is_up(&self) -> bool {
        matches!(self, Check::Up { .. })
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Up { latency } => write!(f, "up ({:.1} ms)", latency.as_secs_f64() * 1000.0),
            Check::Down { error } => write!(f, "DOWN: {error}"),
        }
    }
}

/// What [`EventBus::health`](crate::EventBus::health) found.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Health {
    /// The bus's mode.
    pub mode: Mode,
    /// The brokers answered a metadata request (not checked in the Testing mode).
    pub kafka: Option<Check>,
    /// The outbox database answered (Transactional mode).
    pub database: Option<Check>,
    /// What waits in the outbox, when the database answered.
    pub backlog: Option<Backlog>,
}

impl Health {
    /// Nothing checked yet.
    pub(crate) fn of(mode: Mode) -> Self {
        Health {
            mode,
            kafka: None,
            database: None,
            backlog: None,
        }
    }

    /// True when every dependency checked answered. The backlog is for alerting (a growing
    /// `oldest_pending`, dead rows) rather than for taking an instance out of service: the outbox
    /// keeps accepting events while the broker is away.
    pub fn is_healthy(&self) -> bool {
        self.kafka.as_ref().is_none_or(Check::is_up)
            && self.database.as_ref().is_none_or(Check::is_up)
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} mode", self.mode)?;
        if let Some(kafka) = &self.kafka {
            write!(f, "; kafka {kafka}")?;
        }
        if let Some(database) = &self.database {
            write!(f, "; database {database}")?;
        }
        #[cfg(any(feature = "postgres", feature = "sqlite"))]
        if let Some(b) = &self.backlog {
            write!(f, "; outbox {} pending", b.pending)?;
            if let Some(age) = b.oldest_pending {
                write!(f, " (oldest {:.1} s)", age.as_secs_f64())?;
            }
            write!(f, ", {} dead", b.dead)?;
        }
        Ok(())
    }
}

#[cfg(feature = "kafka")]
/// Asks the brokers of `kafka` for their metadata with `producer`'s client.
pub(crate) async fn kafka(
    producer: Result<FutureProducer, String>,
    kafka: &KafkaConfig,
    timeout: Duration,
) -> Check {
    let started = Instant::now();
    let producer = match producer {
        Ok(p) => p,
        Err(error) => {
            return Check::Down {
                error: format!("cannot create a Kafka client: {error}"),
            };
        }
    };
    let servers = kafka.bootstrap_servers.join(",");
    let answer = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(None, timeout)
            .map(|m| m.brokers().len())
    })
    .await;
    match answer {
        Ok(Ok(brokers)) if brokers > 0 => Check::Up {
            latency: started.elapsed(),
        },
        Ok(Ok(_)) => Check::Down {
            error: format!("Kafka at {servers} listed no brokers"),
        },
        Ok(Err(e)) => Check::Down {
            error: format!("Kafka at {servers} did not answer within {timeout:?}: {e}"),
        },
        Err(e) => Check::Down {
            error: format!("the Kafka check panicked: {e}"),
        },
    }
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
/// Reads the outbox's backlog: the database check and what waits.
pub(crate) async fn outbox(store: &OutboxStore, timeout: Duration) -> (Check, Option<Backlog>) {
    let started = Instant::now();
    match tokio::time::timeout(timeout, store.backlog()).await {
        Ok(Ok(backlog)) => (
            Check::Up {
                latency: started.elapsed(),
            },
            Some(backlog),
        ),
        Ok(Err(e)) => (
            Check::Down {
                error: format!("the outbox table `{}`: {e}", store.table()),
            },
            None,
        ),
        Err(_) => (
            Check::Down {
                error: format!(
                    "the outbox database did not answer within {timeout:?} (table `{}`)",
                    store.table()
                ),
            },
            None,
        ),
    }
}
