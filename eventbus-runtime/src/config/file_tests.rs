//! Tests of `file.rs`: every setting, and each kind of mistake with its message.

use std::path::Path;
use std::time::Duration;

use super::*;

fn refused(text: &str) -> String {
    FileConfig::parse(text, "eventbus.yaml")
        .unwrap_err()
        .to_string()
}

#[test]
fn every_setting_reads() {
    let file = FileConfig::parse(
        "mode: direct\n\
         database_url: sqlite:///tmp/x.db\n\
         kafka:\n  brokers: a:9092, b:9092\n  properties:\n    linger.ms: \"5\"\n    batch.num.messages: 100\n\
         outbox:\n  table: app.outbox\n  batch_size: 50\n  poll_interval_ms: 20\n  max_attempts: 3\n  shards: 4\n  retention_secs: 60\n  dead_letter_topic: app.dead-letters\n",
        "eventbus.yaml",
    )
    .unwrap();
    assert_eq!(file.mode, Some(FileMode::Direct));
    assert_eq!(file.database_url.as_deref(), Some("sqlite:///tmp/x.db"));
    assert_eq!(file.place("outbox.batch_size"), Some((10, 15)));
    let kafka = file.kafka.unwrap().into_config().unwrap();
    assert_eq!(kafka.bootstrap_servers, ["a:9092", "b:9092"]);
    assert_eq!(
        kafka.properties.get("linger.ms").map(String::as_str),
        Some("5")
    );
    assert_eq!(
        kafka
            .properties
            .get("batch.num.messages")
            .map(String::as_str),
        Some("100")
    );
    let outbox = file.outbox.unwrap().apply(OutboxConfig::default());
    assert_eq!(
        (
            outbox.table.as_str(),
            outbox.batch_size,
            outbox.poll_interval,
            outbox.max_attempts,
            outbox.shards,
            outbox.retention,
            outbox.dead_letter_topic.as_deref()
        ),
        (
            "app.outbox",
            50,
            Duration::from_millis(20),
            3,
            4,
            Duration::from_secs(60),
            Some("app.dead-letters")
        )
    );
    // What the file does not set keeps its value; so does a setting left empty.
    let partial = FileConfig::parse("outbox:\n  shards: 2\n  table:\n", "f.yaml").unwrap();
    let outbox = partial.outbox.unwrap().apply(OutboxConfig::default());
    assert_eq!(
        (outbox.shards, outbox.batch_size, outbox.table.as_str()),
        (
            2,
            OutboxConfig::default().batch_size,
            crate::config::DEFAULT_OUTBOX_TABLE
        )
    );
    assert!(
        FileConfig::parse("  \n", "empty.yaml")
            .unwrap()
            .kafka
            .is_none()
    );
    let listed = FileConfig::parse("kafka:\n  brokers: [a:1, b:2]\n", "f.yaml").unwrap();
    assert_eq!(
        listed
            .kafka
            .unwrap()
            .into_config()
            .unwrap()
            .bootstrap_servers,
        ["a:1", "b:2"]
    );
}

#[test]
fn a_wrong_type_names_the_setting_what_was_expected_and_found() {
    assert_eq!(
        refused("outbox:\n  batch_size: abc\n"),
        "invalid configuration in eventbus.yaml: outbox.batch_size: expected an unsigned integer, found \"abc\" (line 2, column 15)"
    );
    let negative = refused("outbox:\n  shards: -3\n");
    assert!(
        negative
            .contains("outbox.shards: expected an unsigned integer, found -3 (line 2, column 11)"),
        "{negative}"
    );
    let list = refused("kafka:\n  brokers: k:9092\n  properties: [a, b]\n");
    assert!(
        list.contains("kafka.properties: expected a mapping of librdkafka properties, found a list (line 3, column 15)"),
        "{list}"
    );
    let mode = refused("mode: fast\n");
    assert!(
        mode.contains(
            "mode: expected `transactional` or `direct`, found \"fast\" (line 1, column 7)"
        ),
        "{mode}"
    );
    let big = refused("outbox:\n  shards: 99999999999\n");
    assert!(
        big.contains("outbox.shards: 99999999999 is too large"),
        "{big}"
    );
    let quoted = FileConfig::parse("outbox:\n  batch_size: \"7\"\n", "f.yaml").unwrap();
    assert_eq!(quoted.outbox.unwrap().batch_size, Some(7));
}

#[test]
fn a_key_given_twice_is_named_with_both_lines() {
    let twice = refused("outbox:\n  batch_size: 5\n  shards: 2\n  batch_size: 6\n");
    assert_eq!(
        twice,
        "invalid configuration in eventbus.yaml: outbox.batch_size: set twice, on line 2 and on line 4: keep one (line 4, column 3)"
    );
    let top = refused("mode: direct\nmode: transactional\n");
    assert!(
        top.contains("mode: set twice, on line 1 and on line 2"),
        "{top}"
    );
    let property =
        refused("kafka:\n  brokers: k:1\n  properties:\n    linger.ms: 1\n    linger.ms: 2\n");
    assert!(
        property.contains("kafka.properties.linger.ms: set twice, on line 4 and on line 5"),
        "{property}"
    );
}

#[test]
fn an_unknown_key_is_named_with_a_suggestion() {
    let unknown = refused("outbox:\n  batch_sise: 5\n");
    assert!(
        unknown.contains("outbox.batch_sise: unknown setting; did you mean `batch_size`?")
            && unknown.contains("(line 2, column 3)"),
        "{unknown}"
    );
    let top = refused("kafak:\n  brokers: k:1\n");
    assert!(top.contains("did you mean `kafka`?"), "{top}");
    let syntax = refused("outbox: [1, 2\n");
    assert!(
        syntax.contains("eventbus.yaml") && syntax.contains("line"),
        "{syntax}"
    );
    let missing = FileConfig::read(Path::new("/nonexistent/eventbus.yaml"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("/nonexistent/eventbus.yaml"), "{missing}");
    let no_brokers = refused("kafka:\n  properties:\n    linger.ms: 1\n");
    assert!(
        no_brokers.contains("kafka.brokers: missing"),
        "{no_brokers}"
    );
}

#[test]
fn the_sasl_password_comes_from_its_variable_only() {
    let file = FileConfig::parse(
        "kafka:\n  brokers: k:9093\n  sasl:\n    username: svc\n    password_env: EVENTBUS_TEST_NO_SUCH_VARIABLE\n",
        "eventbus.yaml",
    )
    .unwrap();
    let error = file.kafka.unwrap().into_config().unwrap_err().to_string();
    assert!(
        error.contains("EVENTBUS_TEST_NO_SUCH_VARIABLE") && error.contains("not set"),
        "{error}"
    );
    let inline =
        refused("kafka:\n  brokers: k:9093\n  sasl:\n    username: svc\n    password: hunter2\n");
    assert!(
        inline.contains("kafka.sasl.password") && inline.contains("password_env"),
        "{inline}"
    );
    assert!(!inline.contains("hunter2"), "{inline}");
    // A secret of the wrong type is not repeated.
    let secret = refused(
        "kafka:\n  brokers: k:1\n  properties:\n    sasl.password: [hunter2]\n    ssl.key.password: {a: hunter3}\n",
    );
    assert!(!secret.contains("hunter"), "{secret}");
    let url = refused("database_url: [postgres://app:hunter2@db/x]\n");
    assert!(!url.contains("hunter2"), "{url}");
}

#[test]
fn syntax_errors_are_placed_where_they_are_written() {
    // The located YAML tree of `eventbus_core::yaml`, shared with the schema reader.
    let tab = refused("mode: direct\nkafka:\n\tbrokers: a:9092\n");
    assert!(
        tab.contains("tab in the indentation") && tab.contains("line 3, column 1"),
        "{tab}"
    );
    let open = refused("mode: direct\nkafka: { brokers: a:9092\noutbox: {}\n");
    assert!(
        open.contains("unclosed bracket") && open.contains("line 2, column 8"),
        "{open}"
    );
}
