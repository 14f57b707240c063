//! A configuration file (AD-008) on both layers: a bus built from YAML publishes; a bad value is
//! refused with the file, the line or the setting named.

#![allow(clippy::unwrap_used)]

mod support;

use eventbus::{EventBus, Mode};
use eventbus_tests::{OrderPlaced, Petstore};

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{name}-{}.yaml", uuid::Uuid::now_v7().simple()));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_built_from_a_file_publishes() {
    for layer in support::layers().await {
        let path = write(
            "eventbus",
            &format!(
                "# the petstore's bus\nmode: direct\nkafka:\n  brokers: {}\n  properties:\n    linger.ms: \"1\"\n",
                layer.kafka.bootstrap_servers.join(",")
            ),
        );
        let bus = EventBus::builder(Petstore)
            .config_file(&path)
            .unwrap()
            .build()
            .await
            .unwrap();
        assert_eq!(bus.mode(), Mode::Direct, "{}", layer.name);
        let receipt = bus
            .publish_domain(&OrderPlaced::numbered(1)[0])
            .await
            .unwrap();
        assert!(receipt.offset.is_some(), "{}: acknowledged", layer.name);
        std::fs::remove_file(path).unwrap();
    }
}

/// The error of building from a file holding `text`, and the file's path.
fn refused(name: &str, text: &str) -> (String, String) {
    let path = write(name, text);
    let error = EventBus::builder(Petstore)
        .config_file(&path)
        .unwrap_err()
        .to_string();
    std::fs::remove_file(&path).unwrap();
    (error, path.display().to_string())
}

#[test]
fn a_bad_file_is_refused_by_name() {
    let (error, path) = refused("bad", "mode: transactional\noutbox:\n  batch_size: 0\n");
    assert!(
        error.contains("batch_size") && error.contains(&path),
        "{error}"
    );
    let (error, path) = refused("typo", "mode: direct\nkafka:\n  broker: k:9092\n");
    assert!(
        error.contains(&format!(
            "in {path}: kafka.broker: unknown setting; did you mean `brokers`?"
        )) && error.contains("(line 3, column 3)"),
        "{error}"
    );
}

#[test]
fn a_wrong_type_or_a_key_given_twice_is_named_in_our_words() {
    let (error, path) = refused("type", "mode: direct\noutbox:\n  batch_size: abc\n");
    assert!(
        error.contains(&format!("in {path}: outbox.batch_size: expected an unsigned integer, found \"abc\" (line 3, column 15)")),
        "{error}"
    );
    let (error, _) = refused(
        "twice",
        "kafka:\n  brokers: a:9092\n  properties:\n    linger.ms: 1\n  brokers: b:9092\n",
    );
    assert!(
        error.contains("kafka.brokers: set twice, on line 2 and on line 5"),
        "{error}"
    );
    // A value the file sets but the outbox refuses is named where the file sets it.
    let (error, _) = refused("zero", "outbox:\n  shards: 0\n");
    assert!(
        error.contains("outbox.shards is 0") && error.contains("(line 2, column 11)"),
        "{error}"
    );
}
