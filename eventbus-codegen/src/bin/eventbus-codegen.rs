//! The schema catalog CLI.
//!
//! ```text
//! eventbus-codegen check SCHEMAS...            # checks; prints each event: category, version, topic, key
//! eventbus-codegen asyncapi SCHEMAS... [-o F]  # writes the AsyncAPI 3.0 document (stdout by default)
//! eventbus-codegen jsonschema SCHEMAS... -o DIR  # writes one JSON Schema per event version
//! eventbus-codegen lock SCHEMAS...             # updates the schema lock (EVENTBUS_LOCK: mode)
//! eventbus-codegen migrations [--table T] [--store S] -o DIR # writes the outbox migrations (postgres.sql,
//!                                              # sqlite.sql) and the event store's (store_postgres.sql, store_sqlite.sql)
//! ```
//!
//! `--sources DIR` (repeatable) adds the derive-declared events of Rust sources (a crate's `src`)
//! to the catalog, beside or instead of YAML schemas; `--lock FILE` names the lock file.
//! `asyncapi` also takes `--server NAME=HOST:PORT[,SECURITY]` (security: `none`, `tls`,
//! `scram-sha-256`, `scram-sha-512`) and `--subscription GROUP=TOPIC` (both repeatable).
//!
//! Every command checks the schemas against the lock (`eventbus.lock`): a breaking change to a
//! locked event version fails; with `EVENTBUS_LOCK=frozen` (or `CI` set) any difference does.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: eventbus-codegen <check|asyncapi|jsonschema|lock> [SCHEMA_PATH...] [--sources SRC_DIR]... [--lock FILE] [-o OUT]
       eventbus-codegen migrations [--table TABLE] [--store STORE] -o DIR";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut args = args.into_iter();
    let command = args.next().ok_or(USAGE)?;
    let mut paths = Vec::new();
    let mut sources: Vec<PathBuf> = Vec::new();
    let mut lock: Option<PathBuf> = None;
    let mut servers: Vec<String> = Vec::new();
    let mut subscriptions: Vec<String> = Vec::new();
    let mut out: Option<PathBuf> = None;
    let mut table = "eventbus_outbox".to_owned();
    let mut store = "eventbus_store".to_owned();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-o" | "--out" => out = Some(args.next().ok_or(USAGE)?.into()),
            "--table" => table = args.next().ok_or(USAGE)?,
            "--store" => store = args.next().ok_or(USAGE)?,
            "--sources" => sources.push(args.next().ok_or(USAGE)?.into()),
            "--lock" => lock = Some(args.next().ok_or(USAGE)?.into()),
            "--server" => servers.push(args.next().ok_or(USAGE)?),
            "--subscription" => subscriptions.push(args.next().ok_or(USAGE)?),
            "-h" | "--help" => return Err(USAGE.into()),
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    if command == "migrations" {
        use eventbus_codegen::sql::{Dialect, outbox_migration, store_migration};
        let dir = out.ok_or(USAGE)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for (dialect, file) in [
            (Dialect::Postgres, "postgres.sql"),
            (Dialect::Sqlite, "sqlite.sql"),
        ] {
            let path = dir.join(file);
            std::fs::write(&path, outbox_migration(dialect, &table)?)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            println!("wrote {}", path.display());
        }
        for (dialect, file) in [
            (Dialect::Postgres, "store_postgres.sql"),
            (Dialect::Sqlite, "store_sqlite.sql"),
        ] {
            let path = dir.join(file);
            std::fs::write(&path, store_migration(dialect, &store)?)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            println!("wrote {}", path.display());
        }
        return Ok(());
    }
    if paths.is_empty() && sources.is_empty() {
        return Err(USAGE.into());
    }
    let mut config = eventbus_codegen::Config::new();
    for p in &paths {
        config.schemas(p);
    }
    for p in &sources {
        config.sources(p);
    }
    if let Some(lock) = &lock {
        config.lock_file(lock);
    }
    for server in &servers {
        let (name, rest) = server
            .split_once('=')
            .ok_or_else(|| format!("--server `{server}`: write NAME=HOST:PORT[,SECURITY]"))?;
        let (host, security) = rest.split_once(',').unwrap_or((rest, "none"));
        let security = eventbus_codegen::contracts::Security::parse(security).ok_or_else(|| {
            format!("--server `{server}`: security `{security}` is not one of none, tls, scram-sha-256, scram-sha-512")
        })?;
        config.server(name, host, security);
    }
    for subscription in &subscriptions {
        let (group, topic) = subscription
            .split_once('=')
            .ok_or_else(|| format!("--subscription `{subscription}`: write GROUP=TOPIC"))?;
        config.subscription(group, topic);
    }
    if command == "lock" {
        let notes = config.lock().map_err(|e| e.to_string())?;
        for note in &notes {
            println!("{note}");
        }
        if notes.is_empty() {
            println!("the schema lock is up to date");
        }
        return Ok(());
    }
    let catalog = config.load().map_err(|e| e.to_string())?;
    match command.as_str() {
        "check" => {
            for s in &catalog.services {
                println!("{} ({})", s.name, s.file.display());
                for e in &s.events {
                    println!(
                        "  {:<28} {:<12} v{:<3} {:<48} key: {}",
                        e.ident,
                        e.category.as_str(),
                        e.version,
                        e.topic,
                        e.key.as_deref().unwrap_or("(none)")
                    );
                }
            }
            let n: usize = catalog.services.iter().map(|s| s.events.len()).sum();
            println!("{n} events in {} services: ok", catalog.services.len());
            Ok(())
        }
        "asyncapi" => {
            let (_, doc) = config
                .contracts(&catalog)
                .into_iter()
                .next()
                .ok_or("no AsyncAPI document")?;
            match out {
                Some(path) => std::fs::write(&path, doc)
                    .map_err(|e| format!("cannot write `{}`: {e}", path.display())),
                None => {
                    print!("{doc}");
                    Ok(())
                }
            }
        }
        "jsonschema" => {
            let dir = out.ok_or("jsonschema needs `-o DIR`")?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
            for (file, text) in eventbus_codegen::contracts::json_schemas(&catalog) {
                let path = dir.join(file);
                std::fs::write(&path, text)
                    .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
            }
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    }
}
