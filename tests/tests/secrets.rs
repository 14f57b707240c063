//! No secret is ever printed: distinct secrets are planted in every configuration path (a URL's
//! password, `?password=` and `?sslpassword=`, a key/value connection string, the `EVENTBUS_*`
//! variables, the YAML configuration file, librdkafka's sensitive properties), then every value
//! reachable from them is formatted with `{:?}` and `{}` — configurations, builders, buses,
//! relays, health reports, and the errors of a connection to an unreachable database, of a start
//! with a broken configuration, of broken files — and so is every `tracing` event logged
//! meanwhile (a subscriber writing into a buffer). No planted secret may appear.
//!
//! The environment is read in a child process (this test binary run again with the variables
//! set and `EVENTBUS_SECRETS_CHILD=1`), so no test changes its own process's environment.

#![allow(clippy::unwrap_used)]

mod support;

use std::fmt::{Debug, Display};
use std::io::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use eventbus::config::Secret;
use eventbus::relay::Relay;
use eventbus::{Database, EventBus, KafkaConfig, OutboxConfig};
use eventbus_tests::{OrderPlaced, Petstore};

/// Every secret planted below; none may be printed.
const SECRETS: &[&str] = &[
    URL_PASSWORD,
    QUERY_PASSWORD,
    SSL_PASSWORD,
    KEY_VALUE_PASSWORD,
    SASL_PASSWORD,
    PROPERTY_SASL_PASSWORD,
    OAUTHBEARER_CONFIG_SECRET,
    SSL_KEY_PASSWORD,
    CLIENT_SECRET,
    MISSPELT_PROPERTY_SECRET,
    ENV_DATABASE_PASSWORD,
    ENV_KAFKA_PASSWORD,
    FILE_DATABASE_PASSWORD,
    FILE_PROPERTY_SECRET,
    FILE_SASL_PASSWORD,
];
const URL_PASSWORD: &str = "urlpw-5e1f3a";
const QUERY_PASSWORD: &str = "querypw-77a1c2";
const SSL_PASSWORD: &str = "sslpw-31c9d4";
const KEY_VALUE_PASSWORD: &str = "kvpw-9d02e8";
const SASL_PASSWORD: &str = "saslpw-4b3c11";
const PROPERTY_SASL_PASSWORD: &str = "propsasl-12ab90";
const OAUTHBEARER_CONFIG_SECRET: &str = "oauthsecret-8f3e27";
const SSL_KEY_PASSWORD: &str = "sslkey-66d1f0";
const CLIENT_SECRET: &str = "clientsecret-0b9a5c";
const MISSPELT_PROPERTY_SECRET: &str = "misspelt-a4c7e1";
const ENV_DATABASE_PASSWORD: &str = "envdb-aa10b3";
const ENV_KAFKA_PASSWORD: &str = "envkafka-c05d66";
const FILE_DATABASE_PASSWORD: &str = "filedb-0c44a8";
const FILE_PROPERTY_SECRET: &str = "fileprop-e2e2f1";
const FILE_SASL_PASSWORD: &str = "filesasl-71b0d9";

/// What the `tracing` subscriber of this test binary wrote.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (every level) once for this test binary.
fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| Capture)
            .init();
    });
}

fn logs() -> String {
    String::from_utf8_lossy(
        &LOGS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned()
}

/// Fails naming `what` if `text` holds a planted secret.
fn assert_clean(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{what} shows the secret {secret:?}:\n{text}"
        );
    }
}

/// `value` with `{:?}`, `{:#?}` and `{}`.
fn shown(value: &(impl Debug + Display)) -> String {
    format!("{value:?}\n{value:#?}\n{value}")
}

/// An error with `{:?}`, `{}` and every source in its chain.
fn shown_error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = format!("{error:?}\n{error:#?}\n{error}");
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(&format!("\ncaused by: {s}\n{s:?}"));
        source = s.source();
    }
    out
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kafka settings holding every kind of secret, for brokers at `servers`; the properties do not
/// stop a client from working against a plaintext broker.
fn kafka_with_secrets(servers: &str) -> KafkaConfig {
    let mut kafka = KafkaConfig::new(servers);
    kafka.sasl = Some(eventbus::config::SaslScram {
        mechanism: "SCRAM-SHA-512".into(),
        username: "app".into(),
        password: Secret::new(SASL_PASSWORD),
    });
    kafka
        .with_property("sasl.password", PROPERTY_SASL_PASSWORD)
        .with_property(
            "sasl.oauthbearer.config",
            format!("principal=app extension_token={OAUTHBEARER_CONFIG_SECRET}"),
        )
        .with_property("ssl.key.password", SSL_KEY_PASSWORD)
}

/// `layer`'s Kafka settings with the secret properties added (no SASL, which a plaintext test
/// broker would refuse); a plaintext client ignores them.
fn plaintext_kafka_with_secrets(layer: &KafkaConfig) -> KafkaConfig {
    let mut kafka = layer.clone();
    kafka
        .properties
        .extend(kafka_with_secrets("unused:1").properties);
    kafka
}

fn database_urls(port: u16) -> Vec<String> {
    vec![
        format!("postgres://app:{URL_PASSWORD}@127.0.0.1:{port}/orders"),
        format!("postgres://app@127.0.0.1:{port}/orders?password={QUERY_PASSWORD}&sslmode=disable"),
        // sqlx does not read `sslpassword` (and would log it): refused before it sees the URL.
        format!(
            "postgres://app@127.0.0.1:{port}/orders?sslmode=require&sslpassword={SSL_PASSWORD}"
        ),
        format!(
            "host=127.0.0.1 port={port} user=app password='{KEY_VALUE_PASSWORD}' dbname=orders"
        ),
    ]
}

#[test]
fn configuration_values_never_show_a_secret() {
    capture_logs();
    let port = closed_port();
    let kafka = kafka_with_secrets("k1:9092,k2:9092");
    assert_clean("KafkaConfig", &shown(&kafka));
    assert!(
        shown(&kafka).contains("sasl.oauthbearer.config"),
        "the keys are shown"
    );
    assert_clean("SaslScram", &format!("{:?}", kafka.sasl));
    assert_clean("Secret", &shown(&Secret::new(SASL_PASSWORD)));
    for url in database_urls(port) {
        let database = Database::Url(url.clone());
        assert_clean("Database", &shown(&database));
        assert_clean("redact", &eventbus::config::redact(&url));
        let builder = EventBus::builder(Petstore)
            .database_url(url)
            .kafka(kafka.clone())
            .outbox(OutboxConfig::default());
        assert_clean("Builder", &format!("{builder:?}\n{builder:#?}"));
    }
    assert_clean("logs", &logs());
}

/// A configuration file with secrets in it (the URL, a property), and a SASL password read from
/// `password_env`.
fn config_file(port: u16, password_env: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("secrets-{}.yaml", uuid::Uuid::now_v7().simple()));
    std::fs::write(
        &path,
        format!(
            "database_url: postgres://app:{FILE_DATABASE_PASSWORD}@127.0.0.1:{port}/orders\n\
             kafka:\n  brokers: 127.0.0.1:{port}\n  sasl:\n    username: app\n    password_env: {password_env}\n  properties:\n    ssl.keystore.password: {FILE_PROPERTY_SECRET}\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn broken_configuration_files_never_show_a_secret() {
    capture_logs();
    for (name, text) in [
        (
            "a wrong type",
            format!(
                "kafka:\n  brokers: k:1\n  properties:\n    sasl.password: [{FILE_PROPERTY_SECRET}]\n"
            ),
        ),
        (
            "a secret given twice",
            format!(
                "kafka:\n  brokers: k:1\n  properties:\n    sasl.password: {FILE_PROPERTY_SECRET}\n    sasl.password: {FILE_PROPERTY_SECRET}\n"
            ),
        ),
        (
            "an inline SASL password",
            format!(
                "kafka:\n  brokers: k:1\n  sasl:\n    username: app\n    password: {FILE_SASL_PASSWORD}\n"
            ),
        ),
        (
            "a URL of the wrong type",
            format!("database_url: {{url: postgres://app:{FILE_DATABASE_PASSWORD}@db/x}}\n"),
        ),
        (
            "a YAML syntax error",
            format!("database_url: postgres://app:{FILE_DATABASE_PASSWORD}@db/x\nkafka: [\n"),
        ),
        (
            "an unknown key",
            format!("databse_url: postgres://app:{FILE_DATABASE_PASSWORD}@db/x\n"),
        ),
    ] {
        let path = std::env::temp_dir().join(format!(
            "secrets-broken-{}.yaml",
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::write(&path, &text).unwrap();
        let error = EventBus::builder(Petstore).config_file(&path).unwrap_err();
        assert_clean(name, &shown_error(&error));
        std::fs::remove_file(path).unwrap();
    }
    assert_clean("logs", &logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_never_show_a_secret() {
    capture_logs();
    let port = closed_port();
    // A connection to an unreachable database, by each kind of URL.
    for url in database_urls(port) {
        let error = EventBus::builder(Petstore)
            .database_url(&url)
            .kafka(kafka_with_secrets(&format!("127.0.0.1:{port}")))
            .kafka_check(None)
            .build()
            .await
            .unwrap_err();
        assert_clean("a failed connection", &shown_error(&error));
    }
    // A start with a broken Kafka configuration: a misspelt secret property, a value librdkafka
    // refuses for a sensitive property.
    for broken in [
        kafka_with_secrets("127.0.0.1:1").with_property("sasl.pasword", MISSPELT_PROPERTY_SECRET),
        kafka_with_secrets("127.0.0.1:1")
            .with_property("security.protocol", "SASL_PLAINTEXT")
            .with_property("sasl.mechanism", "OAUTHBEARER")
            .with_property(
                "sasl.oauthbearer.config",
                format!("not a valid config {OAUTHBEARER_CONFIG_SECRET}"),
            ),
        kafka_with_secrets("127.0.0.1:1").with_property("ssl.key.password", ""),
        // Refused by this build of librdkafka (no OIDC): the error names the property only.
        kafka_with_secrets("127.0.0.1:1")
            .with_property("sasl.oauthbearer.client.secret", CLIENT_SECRET),
    ] {
        for direct in [true, false] {
            let path =
                std::env::temp_dir().join(format!("secrets-{}.db", uuid::Uuid::now_v7().simple()));
            let builder = EventBus::builder(Petstore)
                .kafka(broken.clone())
                .database_url(format!("sqlite://{}", path.display()))
                .kafka_check(Some(Duration::from_secs(1)));
            let builder = if direct { builder.direct() } else { builder };
            match builder.build().await {
                Err(error) => {
                    assert_clean("a start with a broken configuration", &shown_error(&error))
                }
                Ok(bus) => {
                    assert_clean("a bus", &format!("{bus:?}"));
                    bus.shutdown().await;
                }
            }
        }
    }
    // Working buses and relays on each layer, their Kafka settings holding secrets.
    for layer in support::layers().await {
        let kafka = plaintext_kafka_with_secrets(&layer.kafka);
        let direct = EventBus::builder(Petstore)
            .kafka(kafka.clone())
            .direct()
            .build()
            .await
            .unwrap();
        direct
            .publish_domain(&OrderPlaced::numbered(1)[0])
            .await
            .unwrap();
        assert_clean("a Direct bus", &format!("{direct:?}\n{direct:#?}"));
        assert_clean(
            "its health",
            &shown(&direct.health(Duration::from_secs(5)).await),
        );
        let relay = Relay::new(
            layer.store.clone(),
            &kafka,
            OutboxConfig {
                table: layer.table.clone(),
                ..OutboxConfig::default()
            },
        )
        .unwrap();
        assert_clean("a relay", &format!("{relay:?}\n{relay:#?}"));
        let handle = relay.spawn();
        assert_clean("a relay handle", &format!("{handle:?}"));
        handle.shutdown().await.unwrap();
        assert_clean("an outbox store", &format!("{:?}", layer.store));
        direct.shutdown().await;
    }
    // A relay facing an unreachable broker logs the outage: its log holds no secret either.
    let path = std::env::temp_dir().join(format!("secrets-{}.db", uuid::Uuid::now_v7().simple()));
    let unreachable = kafka_with_secrets(&format!("127.0.0.1:{port}"));
    let bus = EventBus::builder(Petstore)
        .kafka(unreachable)
        .database_url(format!("sqlite://{}", path.display()))
        .kafka_check(None)
        .build()
        .await
        .unwrap();
    bus.publish_domain(&OrderPlaced::numbered(1)[0])
        .await
        .unwrap();
    let health = bus.health(Duration::from_secs(1)).await;
    assert_clean("the health of a bus whose broker is away", &shown(&health));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !logs().contains("is unavailable") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bus.shutdown().await;
    let logs = logs();
    assert!(
        logs.contains("is unavailable"),
        "the relay logged the outage:\n{logs}"
    );
    assert_clean("logs", &logs);
}

#[test]
fn the_environment_and_the_file_never_show_a_secret() {
    let port = closed_port();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "environment_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("EVENTBUS_SECRETS_CHILD", "1")
        .env(
            "EVENTBUS_DATABASE_URL",
            format!("postgres://app:{ENV_DATABASE_PASSWORD}@127.0.0.1:{port}/orders"),
        )
        .env("EVENTBUS_KAFKA_BROKERS", format!("127.0.0.1:{port}"))
        .env("EVENTBUS_KAFKA_USERNAME", "app")
        .env("EVENTBUS_KAFKA_PASSWORD", ENV_KAFKA_PASSWORD)
        .env("EVENTBUS_KAFKA_CHECK_SECS", "1")
        .env("EVENTBUS_SECRETS_FILE_PORT", port.to_string())
        .env("EVENTBUS_TEST_FILE_SASL_PASSWORD", FILE_SASL_PASSWORD)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("child done"),
        "{stdout}\n{stderr}"
    );
    assert_clean("the child's output", &format!("{stdout}\n{stderr}"));
}

/// Run by [`the_environment_and_the_file_never_show_a_secret`] in a child process with the
/// variables set; does nothing otherwise.
#[test]
fn environment_child() {
    if std::env::var("EVENTBUS_SECRETS_CHILD").is_err() {
        return;
    }
    capture_logs();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let port: u16 = std::env::var("EVENTBUS_SECRETS_FILE_PORT")
            .unwrap()
            .parse()
            .unwrap();
        let mut printed = String::new();
        // The file, then the environment over it.
        let file = config_file(port, "EVENTBUS_TEST_FILE_SASL_PASSWORD");
        let builder = EventBus::builder(Petstore).config_file(&file).unwrap();
        printed.push_str(&format!("{builder:?}\n{builder:#?}\n"));
        let builder = builder.from_env().unwrap();
        printed.push_str(&format!("{builder:?}\n{builder:#?}\n"));
        let kafka = KafkaConfig::from_env().unwrap().unwrap();
        printed.push_str(&format!("{}\n", shown(&kafka)));
        let outbox = OutboxConfig::default().from_env().unwrap();
        printed.push_str(&format!("{outbox:?}\n"));
        // Both fail: the database and the broker are unreachable.
        let error = builder.build().await.unwrap_err();
        printed.push_str(&format!("{}\n", shown_error(&error)));
        let error = EventBus::from_env(Petstore).await.unwrap_err();
        printed.push_str(&format!("{}\n", shown_error(&error)));
        let error = EventBus::builder(Petstore)
            .from_env()
            .unwrap()
            .kafka_check(None)
            .build()
            .await
            .unwrap_err();
        printed.push_str(&format!("{}\n", shown_error(&error)));
        std::fs::remove_file(file).unwrap();
        print!("{printed}");
        std::io::stdout().flush().unwrap();
        assert_clean("what the child formatted", &printed);
        assert_clean("the child's logs", &logs());
        println!("child done");
    });
}
