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

#[test]
fn a_bad_file_is_refused_by_name() {
    let path = write("bad", "mode: transactional\noutbox:\n  batch_size: 0\n");
    let error = EventBus::builder(Petstore)
        .config_file(&path)
        .unwrap_err()
        .to_string();
    eprintln!("{error}");
    assert!(
        error.contains("batch_size") && error.contains(&path.display().to_string()),
        "{error}"
    );
    std::fs::remove_file(&path).unwrap();

    let path = write("typo", "mode: direct\nkafka:\n  broker: k:9092\n");
    let error = EventBus::builder(Petstore)
        .config_file(&path)
        .unwrap_err()
        .to_string();
    eprintln!("{error}");
    assert!(
        error.contains(&format!("{}:3:", path.display())) && error.contains("broker"),
        "{error}"
    );
    std::fs::remove_file(&path).unwrap();
}
