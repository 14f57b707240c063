//! The `eventbus-faults` command line (the scenarios themselves run from `scripts/faults`, on
//! real services). Also makes `cargo test --workspace` build the binary, which the suite runs.

#![allow(missing_docs)]

use std::process::Command;

fn faults(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eventbus-faults"))
        .args(args)
        .env_remove("EVENTBUS_DATABASE_URL")
        .env_remove("EVENTBUS_KAFKA_BROKERS")
        .output()
        .expect("the binary runs")
}

#[test]
fn help_and_usage() {
    let out = faults(&["help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("usage: eventbus-faults"));
    let out = faults(&[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_options_are_named() {
    let out = faults(&["write", "--run", "Bad-Run"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--run \"Bad-Run\""));
    let out = faults(&["write", "run"]);
    assert_eq!(out.status.code(), Some(2));
    let out = faults(&["setup", "--run", "ok_run"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("EVENTBUS_DATABASE_URL is not set"));
}
