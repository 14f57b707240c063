//! The schema evolution gate: each fixture in `tests/schemas/evolution/` changes one thing in
//! `base.yaml`, whose shapes `tests/schemas/evolution/eventbus.lock` records. `compile()` against
//! a copy of that lock must fail on each breaking change (at its place, naming the event, the
//! version and the change, leaving the lock as it was) and pass on each compatible one (recording
//! it in the lock, except in `frozen` mode, which fails instead of rewriting the lock).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use eventbus_codegen::schema::lock::Lock;
use eventbus_codegen::{Config, LockMode};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/evolution");

/// A fresh directory for one test, holding a copy of the fixture lock.
fn scratch(test: &str) -> (PathBuf, PathBuf) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("evolution-{test}-{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let lock = dir.join("eventbus.lock");
    std::fs::copy(format!("{DIR}/eventbus.lock"), &lock).expect("copy the fixture lock");
    (dir, lock)
}

/// Compiles `fixture` against a copy of the fixture lock; returns the result and the lock after.
fn compile(fixture: &str, mode: LockMode) -> (Result<(), eventbus_codegen::schema::Error>, String) {
    let (dir, lock) = scratch(&format!("{fixture}-{mode:?}"));
    let result = Config::new()
        .schemas(format!("{DIR}/{fixture}.yaml"))
        .lock_file(&lock)
        .lock_mode(mode)
        .out_dir(dir.join("out"))
        .compile();
    let after = std::fs::read_to_string(&lock).expect("the lock is still there");
    (result, after)
}

fn fixture_lock() -> String {
    std::fs::read_to_string(format!("{DIR}/eventbus.lock")).expect("fixture lock")
}

/// Asserts `fixture` is refused with one error at `line:column` whose message contains `want`,
/// and that the lock is left as it was.
fn assert_breaking(fixture: &str, line: u32, column: u32, want: &str) {
    let (result, after) = compile(fixture, LockMode::Auto);
    let err = result.expect_err(&format!("{fixture}: a breaking change must fail the build"));
    let diagnostics = err.diagnostics();
    assert_eq!(diagnostics.len(), 1, "{fixture}: {err}");
    let d = &diagnostics[0];
    assert!(
        d.at.file.ends_with(&format!("{fixture}.yaml")),
        "{fixture}: located in the schema file, got {}",
        d.at
    );
    assert_eq!((d.at.line, d.at.column), (line, column), "{fixture}: {err}");
    assert!(
        d.message.contains(want),
        "{fixture}: expected `{want}` in\n{err}"
    );
    assert!(
        d.message.contains("bump `version` to 2") && d.message.contains("or revert"),
        "{fixture}: says what to do\n{err}"
    );
    assert_eq!(
        after,
        fixture_lock(),
        "{fixture}: the lock is not rewritten"
    );
}

#[test]
fn the_fixture_lock_records_the_base_schema() {
    // Frozen: any difference between the lock and the schema is an error.
    let (dir, lock) = scratch("base");
    Config::new()
        .schemas(format!("{DIR}/base.yaml"))
        .lock_file(&lock)
        .lock_mode(LockMode::Frozen)
        .out_dir(dir.join("out"))
        .compile()
        .expect("base.yaml matches its lock");
}

#[test]
fn a_removed_field_is_breaking() {
    assert_breaking(
        "removed_field",
        16,
        3,
        "field `warehouse` of `shop.stock_low` v1 (`string`) was removed",
    );
}

#[test]
fn a_changed_type_is_breaking() {
    assert_breaking(
        "type_changed",
        14,
        7,
        "field `amount` of `shop.order_placed` v1 changed type from `decimal` to `string`",
    );
}

#[test]
fn an_added_required_field_is_breaking() {
    assert_breaking(
        "required_added",
        25,
        7,
        "required field `reorder` of `shop.stock_low` v1 (`bool`) was added",
    );
}

#[test]
fn a_changed_key_is_breaking() {
    assert_breaking(
        "key_changed",
        16,
        3,
        "the partition key of `shop.stock_low` v1 changed from `sku` to `warehouse`",
    );
}

#[test]
fn a_required_field_turned_optional_is_breaking() {
    assert_breaking(
        "became_optional",
        14,
        7,
        "field `amount` of `shop.order_placed` v1 became optional",
    );
}

#[test]
fn an_added_optional_field_passes_and_is_recorded() {
    let (result, after) = compile("optional_added", LockMode::Auto);
    result.expect("an optional field is compatible");
    let lock: Lock = serde_json::from_str(&after).expect("lock parses");
    assert_eq!(
        lock.events["shop.stock_low v1"].fields.get("reorder"),
        Some(&"bool?".to_owned())
    );
    // Compiling again changes nothing.
    let (dir, path) = scratch("optional_added-again");
    std::fs::write(&path, &after).expect("write");
    Config::new()
        .schemas(format!("{DIR}/optional_added.yaml"))
        .lock_file(&path)
        .lock_mode(LockMode::Frozen)
        .out_dir(dir.join("out"))
        .compile()
        .expect("the updated lock matches");
}

#[test]
fn a_version_bump_passes_and_adds_the_version() {
    let (result, after) = compile("version_bump", LockMode::Auto);
    result.expect("a breaking change under a new version passes");
    let lock: Lock = serde_json::from_str(&after).expect("lock parses");
    let v1 = &lock.events["shop.stock_low v1"];
    let v2 = &lock.events["shop.stock_low v2"];
    assert_eq!(v1.fields.get("warehouse"), Some(&"string".to_owned()));
    assert_eq!(v2.fields.get("left"), Some(&"i64".to_owned()));
    assert_eq!(v2.fields.get("warehouse"), None);
}

#[test]
fn frozen_mode_refuses_to_rewrite_the_lock() {
    for fixture in ["optional_added", "version_bump"] {
        let (result, after) = compile(fixture, LockMode::Frozen);
        let err = result.expect_err("frozen: an out-of-date lock fails");
        let text = err.to_string();
        assert!(text.contains("is out of date"), "{text}");
        assert!(text.contains("commit it"), "{text}");
        assert_eq!(
            after,
            fixture_lock(),
            "{fixture}: the lock is not rewritten"
        );
    }
}

#[test]
fn update_mode_accepts_a_breaking_change_deliberately() {
    let (result, after) = compile("type_changed", LockMode::Update);
    result.expect("update accepts");
    let lock: Lock = serde_json::from_str(&after).expect("lock parses");
    assert_eq!(
        lock.events["shop.order_placed v1"].fields.get("amount"),
        Some(&"string".to_owned())
    );
}

#[test]
fn a_dropped_event_version_needs_update_mode() {
    // base.yaml has no `shop.stock_low v2`: a lock that has it sees a version disappear.
    let (_, locked) = compile("version_bump", LockMode::Auto);
    let (dir, path) = scratch("dropped");
    std::fs::write(&path, &locked).expect("write");
    let build = |mode| {
        Config::new()
            .schemas(format!("{DIR}/base.yaml"))
            .lock_file(&path)
            .lock_mode(mode)
            .out_dir(dir.join("out"))
            .compile()
    };
    let err = build(LockMode::Auto).expect_err("a dropped version fails");
    assert!(
        err.to_string()
            .contains("`shop.stock_low v2` is in the schema lock"),
        "{err}"
    );
    build(LockMode::Update).expect("update drops it");
    assert_eq!(
        std::fs::read_to_string(&path).expect("lock"),
        fixture_lock()
    );
}

#[test]
fn a_missing_lock_is_written_except_when_frozen() {
    let (dir, path) = scratch("missing");
    std::fs::remove_file(&path).expect("remove");
    let build = |mode| {
        Config::new()
            .schemas(format!("{DIR}/base.yaml"))
            .lock_file(&path)
            .lock_mode(mode)
            .out_dir(dir.join("out"))
            .compile()
    };
    let err = build(LockMode::Frozen).expect_err("frozen: no lock fails");
    assert!(err.to_string().contains("there is no schema lock"), "{err}");
    assert!(!path.exists());
    build(LockMode::Auto).expect("auto writes it");
    assert_eq!(
        std::fs::read_to_string(&path).expect("lock"),
        fixture_lock()
    );
}

#[test]
fn the_committed_lock_of_schemas_is_up_to_date() {
    Config::new()
        .schemas(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/"))
        .lock_mode(LockMode::Frozen)
        .load()
        .expect("schemas/eventbus.lock records schemas/ exactly");
}

/// A crate's sources declaring one derive event, `field` its second field's type.
fn derive_sources(test: &str, amount: &str, version: u32) -> (PathBuf, PathBuf) {
    let (dir, _) = scratch(test);
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let version = if version > 1 {
        format!(", version = {version}")
    } else {
        String::new()
    };
    std::fs::write(
        src.join("lib.rs"),
        format!(
            r#"use eventbus::{{DomainEvent, Service}};
#[derive(Service)]
#[service(name = "shop", default)]
pub struct Shop;

/// An order was placed.
#[derive(DomainEvent, serde::Serialize, serde::Deserialize)]
#[event(aggregate = "order"{version})]
pub struct OrderPlaced {{
    #[event(aggregate_id)]
    pub order_id: uuid::Uuid,
    pub amount: {amount},
}}
"#
        ),
    )
    .unwrap();
    (src, dir.join("derive.lock"))
}

fn derive_config(src: &Path, lock: &Path) -> Config {
    let mut config = Config::new();
    config
        .sources(src)
        .lock_file(lock)
        .lock_mode(LockMode::Auto)
        .out_dir(src.parent().unwrap().join("out"));
    config
}

#[test]
fn a_breaking_change_to_a_derive_event_without_a_version_bump_fails_the_build() {
    let (src, lock) = derive_sources("derive-v1", "u64", 1);
    derive_config(&src, &lock).compile().unwrap();
    let recorded = std::fs::read_to_string(&lock).unwrap();
    assert!(recorded.contains("shop.order_placed v1"), "{recorded}");
    // `amount` becomes a string: refused, at the field, in the Rust file.
    let lib = src.join("lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, text.replace("amount: u64", "amount: String")).unwrap();
    let err = derive_config(&src, &lock)
        .compile()
        .expect_err("a breaking change must fail the build");
    let d = &err.diagnostics()[0];
    assert!(d.at.file.ends_with("lib.rs"), "{}", d.at);
    assert!(
        d.message.contains("`amount`") && d.message.contains("bump"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), recorded);
    // With the version bumped, it is a new event version: recorded beside v1.
    let (src2, _) = derive_sources("derive-v2", "String", 2);
    derive_config(&src2, &lock).compile().unwrap_err(); // v1 no longer declared
    // Keeping v1 as its own type next to v2 passes.
    let v2 = std::fs::read_to_string(src2.join("lib.rs")).unwrap();
    let v1 = text
        .replace("pub struct OrderPlaced", "pub struct OrderPlacedV1")
        .replace(
            "#[event(aggregate = \"order\")]",
            "#[event(aggregate = \"order\", name = \"order_placed\")]",
        );
    let v1 = v1
        .lines()
        .skip_while(|l| !l.starts_with("/// An order"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(src2.join("lib.rs"), format!("{v2}\n{v1}\n")).unwrap();
    derive_config(&src2, &lock).compile().unwrap();
    let both = std::fs::read_to_string(&lock).unwrap();
    assert!(
        both.contains("shop.order_placed v1") && both.contains("shop.order_placed v2"),
        "{both}"
    );
}

#[test]
fn a_schema_service_that_a_derive_also_declares_is_refused_with_the_recipe() {
    let (src, lock) = derive_sources("service-twice", "u64", 1);
    let schemas = src.parent().unwrap().join("schemas");
    std::fs::create_dir_all(&schemas).unwrap();
    let yaml = "service: shop\nevents:\n  ShopOpened: { category: system, description: Opened. }\n";
    std::fs::write(schemas.join("shop.yaml"), yaml).unwrap();
    let mut config = derive_config(&src, &lock);
    config.schemas(&schemas);
    let err = config.compile().expect_err("two declarations of `shop`");
    assert!(
        err.to_string().contains("service_type: crate::Shop"),
        "{err}"
    );
    // Naming the Rust type makes the schema's events its own: no service type is generated.
    let yaml = yaml.replace(
        "service: shop\n",
        "service: shop\nservice_type: crate::Shop\n",
    );
    std::fs::write(schemas.join("shop.yaml"), yaml).unwrap();
    let mut config = derive_config(&src, &lock);
    config.schemas(&schemas);
    config.compile().unwrap();
    let generated = std::fs::read_to_string(src.parent().unwrap().join("out/shop.rs")).unwrap();
    assert!(!generated.contains("pub struct Shop;"), "{generated}");
    assert!(generated.contains("service = crate::Shop"), "{generated}");
}

/// Two derive events of one crate claiming one event type and version: the compiler refuses them
/// when the crate declares its default service (`tests/ui/fail/event_type_declared_twice.rs`);
/// `Config::sources` refuses them at build time whatever their services, across the files of
/// `src`.
#[test]
fn a_derive_event_type_declared_twice_fails_the_build() {
    let (src, lock) = derive_sources("derive-twice", "u64", 1);
    let again = r#"
/// An order was placed, declared again under another Rust name.
#[derive(eventbus::DomainEvent, serde::Serialize, serde::Deserialize)]
#[event(aggregate = "order", name = "order_placed")]
pub struct OrderPlacedAgain {
    #[event(aggregate_id)]
    pub order_id: uuid::Uuid,
}
"#;
    std::fs::write(src.join("again.rs"), again).unwrap();
    let err = derive_config(&src, &lock)
        .compile()
        .expect_err("one event type and version declared by two types");
    let text = err.to_string();
    assert!(
        text.contains("`shop.order_placed` v1 is declared twice"),
        "{text}"
    );
    assert!(!lock.exists(), "nothing is recorded");
}
