//! How to reach Kafka: brokers, SASL, librdkafka properties, and the [`Secret`] that keeps
//! passwords out of `Debug`.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::ConfigError;

/// A secret string: shown as `"***"` by `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the client that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// SASL over TLS (`SASL_SSL`) with SCRAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslScram {
    /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// The user.
    pub username: String,
    /// The password (never printed).
    pub password: Secret,
}

/// How to reach Kafka.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `host:port` of one or more brokers.
    pub bootstrap_servers: Vec<String>,
    /// SASL_SSL with SCRAM, when the cluster requires it.
    pub sasl: Option<SaslScram>,
    /// Any librdkafka property (`linger.ms`, `compression.type`, `ssl.ca.location`, ...); applied
    /// last, so it overrides ours. The values of sensitive properties (those librdkafka marks
    /// sensitive, such as `sasl.password` and `sasl.oauthbearer.config`, and any whose name holds
    /// `password` or `secret`: see [`mod@crate::config::redact`]) are never printed.
    pub properties: BTreeMap<String, String>,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let secret = super::redact::is_sensitive_property(k);
                (
                    k.as_str(),
                    if secret {
                        super::redact::MASK
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("sasl", &self.sasl)
            .field("properties", &properties)
            .finish()
    }
}

/// `brokers a:9092,b:9092`, with the SASL mechanism and user when set; no secret.
impl fmt::Display for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "brokers {}", self.bootstrap_servers.join(","))?;
        if let Some(sasl) = &self.sasl {
            write!(f, " (SASL_SSL {} as {})", sasl.mechanism, sasl.username)?;
        }
        Ok(())
    }
}

impl KafkaConfig {
    /// The secret values this configuration holds (the SASL password, sensitive properties), to
    /// scrub from librdkafka's messages.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        self.sasl
            .iter()
            .map(|s| s.password.expose())
            .chain(
                self.properties
                    .iter()
                    .filter(|(k, _)| super::redact::is_sensitive_property(k))
                    .map(|(_, v)| v.as_str()),
            )
            .collect()
    }

    /// Brokers at `servers` (`"host:port,host:port"`).
    pub fn new(servers: &str) -> Self {
        KafkaConfig {
            bootstrap_servers: servers
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            sasl: None,
            properties: BTreeMap::new(),
        }
    }

    /// Uses SASL_SSL with SCRAM (`SCRAM-SHA-256` or `SCRAM-SHA-512`).
    pub fn with_sasl_scram(
        mut self,
        mechanism: &str,
        username: &str,
        password: Secret,
    ) -> Result<Self, ConfigError> {
        if !matches!(mechanism, "SCRAM-SHA-256" | "SCRAM-SHA-512") {
            return Err(ConfigError::invalid(
                "sasl mechanism",
                format!("{mechanism:?} is not supported: use SCRAM-SHA-256 or SCRAM-SHA-512"),
            ));
        }
        self.sasl = Some(SaslScram {
            mechanism: mechanism.to_owned(),
            username: username.to_owned(),
            password,
        });
        Ok(self)
    }

    /// Sets any librdkafka property.
    pub fn with_property(mut self, key: &str, value: impl Into<String>) -> Self {
        self.properties.insert(key.to_owned(), value.into());
        self
    }

    /// The librdkafka configuration: ours, then the user's properties.
    #[cfg(feature = "kafka")]
    pub(crate) fn client_config(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap_servers.join(","));
        if let Some(sasl) = &self.sasl {
            c.set("security.protocol", "SASL_SSL")
                .set("sasl.mechanism", &sasl.mechanism)
                .set("sasl.username", &sasl.username)
                .set("sasl.password", sasl.password.expose());
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}
