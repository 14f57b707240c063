//! Property tests of the readers of what users write: the YAML schema reader and the configuration
//! file reader. Inputs are valid files mutated at random (characters deleted, inserted, lines
//! repeated or swapped) and arbitrary text. Neither reader may panic; every schema error has a
//! location inside the file, and every configuration error names the file.
//!
//! CI runs proptest's default number of cases; a longer run:
//! `PROPTEST_CASES=20000 cargo test -p eventbus-tests --test fuzz`
//! (and `PROPTEST_CASES=100000 cargo test -p eventbus --lib fuzz` for the record decoder).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use eventbus::EventBus;
use eventbus_tests::Petstore;
use proptest::prelude::*;

/// A fresh file holding `text` in this run's directory.
fn file(text: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!("eventbus-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.yaml", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, text).unwrap();
    path
}

/// One change to a text.
#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, text: String },
    RepeatLine { line: usize },
    SwapLines { a: usize, b: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..8usize).prop_map(|(at, len)| Edit::Delete { at, len }),
        (
            any::<usize>(),
            prop_oneof![
                proptest::sample::select(vec![
                    ":",
                    " ",
                    "  ",
                    "\n",
                    "-",
                    "- ",
                    "\"",
                    "'",
                    "[",
                    "]",
                    "{",
                    "}",
                    ",",
                    "#",
                    "&a",
                    "*a",
                    "!!str ",
                    "\t",
                    "0",
                    "-1",
                    "99999999999999999999",
                    "~",
                    "null",
                    "true",
                    "version: ",
                    "type: ",
                    "category: ",
                    "optional: true",
                    "key: ",
                    "\u{feff}",
                    "é",
                    "<<: ",
                    "? ",
                ])
                .prop_map(str::to_owned),
                "\\PC{1,6}",
            ],
        )
            .prop_map(|(at, text)| Edit::Insert { at, text }),
        any::<usize>().prop_map(|line| Edit::RepeatLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines { a, b }),
    ]
}

/// `text` with `edits` applied (positions taken modulo the text's length, on char boundaries).
fn apply(text: &str, edits: &[Edit]) -> String {
    let mut text = text.to_owned();
    for edit in edits {
        let boundary = |text: &str, at: usize| {
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            at
        };
        match edit {
            Edit::Delete { at, len } => {
                let start = boundary(&text, *at);
                let end = boundary(&text, (start + len).min(text.len()));
                if end > start {
                    text.replace_range(start..end, "");
                }
            }
            Edit::Insert { at, text: inserted } => {
                let at = boundary(&text, *at);
                text.insert_str(at, inserted);
            }
            Edit::RepeatLine { line } | Edit::SwapLines { a: line, .. } => {
                let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
                if lines.is_empty() {
                    continue;
                }
                let i = line % lines.len();
                match edit {
                    Edit::SwapLines { b, .. } => {
                        let j = b % lines.len();
                        lines.swap(i, j);
                    }
                    _ => lines.insert(i, lines[i].clone()),
                }
                text = lines.join("\n");
            }
        }
    }
    text
}

/// Valid schema files (self-contained: no imports).
const SCHEMAS: [&str; 2] = [
    include_str!("../schemas/evolution/base.yaml"),
    include_str!("../../schemas/shared/money.yaml"),
];

fn check_schema(text: &str) -> Result<(), TestCaseError> {
    let path = file(text);
    let lines = text.lines().count().max(1) as u32;
    let result = eventbus_codegen::schema::load(std::slice::from_ref(&path));
    std::fs::remove_file(&path).unwrap();
    match result {
        Ok(_) => {}
        Err(eventbus_codegen::schema::Error::Schema(diagnostics)) => {
            prop_assert!(!diagnostics.0.is_empty(), "an error lists its problems");
            for d in &diagnostics.0 {
                prop_assert!(!d.message.is_empty());
                prop_assert!(
                    d.at.line >= 1 && d.at.column >= 1 && d.at.line <= lines + 1,
                    "{} is not in the file's {} lines: {}",
                    d.at,
                    lines,
                    d.message
                );
                prop_assert!(d.at.file.ends_with(".yaml"), "{}", d.at);
            }
        }
        Err(other) => prop_assert!(false, "not a schema error: {other}"),
    }
    Ok(())
}

/// A configuration file using every section.
const CONFIG: &str = "\
# the petstore's bus
mode: transactional
database_url: sqlite://petstore.db
kafka:
  brokers: 127.0.0.1:9092
  properties:
    linger.ms: \"5\"
outbox:
  table: eventbus_outbox
  batch_size: 500
  poll_interval_ms: 100
  max_attempts: 5
  shards: 16
  retention_secs: 3600
  dead_letter_topic: petstore.outbox.dead
";

fn check_config(text: &str) -> Result<(), TestCaseError> {
    let path = file(text);
    let result = EventBus::builder(Petstore).config_file(&path);
    std::fs::remove_file(&path).unwrap();
    if let Err(error) = result {
        let message = error.to_string();
        prop_assert!(
            message.contains(&path.display().to_string()),
            "the error names the file: {message}"
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn a_mutated_schema_never_panics_and_every_error_has_a_location(
        seed in 0..SCHEMAS.len(),
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        check_schema(&apply(SCHEMAS[seed], &edits))?;
    }

    #[test]
    fn any_text_as_a_schema_never_panics(text in "\\PC{0,200}") {
        check_schema(&text)?;
    }

    #[test]
    fn a_mutated_config_file_never_panics_and_every_error_names_the_file(
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        check_config(&apply(CONFIG, &edits))?;
    }

    #[test]
    fn any_text_as_a_config_file_never_panics(text in "\\PC{0,200}") {
        check_config(&text)?;
    }
}

#[test]
fn the_seeds_are_valid() {
    // Mutations start from files the readers accept.
    for schema in SCHEMAS {
        let path = file(schema);
        let loaded = eventbus_codegen::schema::load(std::slice::from_ref(&path));
        std::fs::remove_file(&path).unwrap();
        assert!(loaded.is_ok(), "{:?}", loaded.err());
    }
    let path = file(CONFIG);
    let built = EventBus::builder(Petstore).config_file(&path);
    std::fs::remove_file(&path).unwrap();
    assert!(built.is_ok(), "{:?}", built.err());
}
