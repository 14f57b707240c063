//! `Config`: compiles YAML event schemas to Rust in `build.rs` (feature `yaml`).

use std::path::{Path, PathBuf};

use crate::schema::lock::{self, LockMode};
use crate::schema::{self, Catalog, Error, rust::RustOptions};

/// Compiles YAML event schemas into Rust, for `build.rs`. Modelled on prost-build's `Config`.
///
/// ```no_run
/// // build.rs
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     eventbus_codegen::Config::new().schemas("schemas/").compile()?;
///     Ok(())
/// }
/// ```
///
/// and in the crate: `eventbus::include_events!("payments");` (the schema's `service:` name).
/// A schema error fails the build with every problem found, each at `file:line:column`.
#[derive(Debug, Clone, Default)]
pub struct Config {
    paths: Vec<PathBuf>,
    sources: Vec<PathBuf>,
    contracts_dir: Option<PathBuf>,
    contract_options: crate::contracts::Options,
    out_dir: Option<PathBuf>,
    lock_file: Option<PathBuf>,
    no_lock: bool,
    lock_mode: Option<LockMode>,
    options: RustOptions,
    attribute_errors: Vec<String>,
}

impl Config {
    /// A configuration with no schemas, writing to `$OUT_DIR`.
    pub fn new() -> Self {
        Config::default()
    }

    /// Adds a schema file, or a directory searched for `*.yaml` and `*.yml` (recursively).
    pub fn schemas(&mut self, path: impl AsRef<Path>) -> &mut Self {
        self.paths.push(path.as_ref().to_path_buf());
        self
    }

    /// Adds Rust sources (a file, or a directory searched for `*.rs`, usually `"src"`) whose
    /// derive-declared events (`#[derive(DomainEvent)]`, ...) join the YAML ones in the crate's
    /// catalog: in the contracts ([`Config::contracts_dir`]) and the schema lock, so a breaking
    /// change to a derive event without a version bump fails the build too. Their Rust is the
    /// derive's; nothing is generated for them. See [`crate::scan`].
    pub fn sources(&mut self, path: impl AsRef<Path>) -> &mut Self {
        self.sources.push(path.as_ref().to_path_buf());
        self
    }

    /// Writes the crate's contracts on `compile`: `asyncapi.json` (AsyncAPI 3.0, every event of
    /// the catalog) and `schemas/{service}.{event}.v{N}.schema.json` (JSON Schema 2020-12, one
    /// per event version), into `dir` (created; files rewritten only when they change).
    pub fn contracts_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.contracts_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Adds a Kafka server to the AsyncAPI document (`"production"`, `"kafka-1.example:9093"`),
    /// with how clients authenticate to it.
    pub fn server(
        &mut self,
        name: impl Into<String>,
        host: impl Into<String>,
        security: crate::contracts::Security,
    ) -> &mut Self {
        self.contract_options
            .servers
            .push(crate::contracts::Server {
                name: name.into(),
                host: host.into(),
                security,
            });
        self
    }

    /// Declares that consumer group `group` receives from `topic`: the AsyncAPI document gets a
    /// receive operation for the topic, the group ids in its Kafka binding.
    pub fn subscription(
        &mut self,
        group: impl Into<String>,
        topic: impl Into<String>,
    ) -> &mut Self {
        self.contract_options
            .subscriptions
            .push((group.into(), topic.into()));
        self
    }

    /// Writes the generated files to `dir` instead of `$OUT_DIR`.
    pub fn out_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.out_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Adds an attribute to a generated type (`"."` for every record, enum and event), e.g.
    /// `.type_attribute("PaymentCaptured", "#[derive(Eq)]")`.
    pub fn type_attribute(
        &mut self,
        ty: impl Into<String>,
        attribute: impl AsRef<str>,
    ) -> &mut Self {
        match attribute.as_ref().parse::<proc_macro2::TokenStream>() {
            Ok(tokens) => self.options.type_attributes.push((ty.into(), tokens)),
            Err(e) => self.attribute_errors.push(format!(
                "type_attribute `{}` is not valid Rust: {e}",
                attribute.as_ref()
            )),
        }
        self
    }

    /// The path generated code names the runtime by (`::eventbus` by default), for a crate that
    /// renames or re-exports it.
    pub fn runtime_path(&mut self, path: impl AsRef<str>) -> &mut Self {
        match syn::parse_str(path.as_ref()) {
            Ok(p) => self.options.runtime = p,
            Err(e) => self.attribute_errors.push(format!(
                "runtime_path `{}` is not a path: {e}",
                path.as_ref()
            )),
        }
        self
    }

    /// The schema lock file (default: `eventbus.lock` in the first schema directory, or next to
    /// the first schema file). It records the shape of every event version; see
    /// [`LockMode`] and `docs/schema.md`, "Evolution".
    pub fn lock_file(&mut self, path: impl AsRef<Path>) -> &mut Self {
        self.lock_file = Some(path.as_ref().to_path_buf());
        self
    }

    /// Skips the evolution gate (no lock file is read or written).
    pub fn no_lock(&mut self) -> &mut Self {
        self.no_lock = true;
        self
    }

    /// When the lock is written. Unset (the default), the mode comes from the environment:
    /// `EVENTBUS_LOCK=auto|frozen|update`, else `frozen` when `CI` is set, else `auto`
    /// ([`LockMode::from_env`]). Set here, it wins over the environment.
    pub fn lock_mode(&mut self, mode: LockMode) -> &mut Self {
        self.lock_mode = Some(mode);
        self
    }

    fn mode(&self) -> Result<LockMode, Error> {
        match self.lock_mode {
            Some(m) => Ok(m),
            None => LockMode::from_env(),
        }
    }

    /// Reads and checks the schemas, and checks them against the lock, without writing anything:
    /// a breaking change to a locked event version is an error; additive changes are not (in
    /// [`LockMode::Frozen`], any difference from the lock is).
    pub fn load(&self) -> Result<Catalog, Error> {
        let catalog = self.read()?;
        if !self.no_lock {
            let mode = self.mode()?;
            let check_mode = if mode == LockMode::Frozen {
                LockMode::Frozen
            } else {
                LockMode::Auto
            };
            if mode != LockMode::Update {
                lock::check(&catalog, &self.lock_path(), check_mode)?;
            }
        }
        Ok(catalog)
    }

    /// Reads the schemas and updates the lock as its mode allows (what `compile` does, without
    /// generating Rust; the CLI's `lock` command). Returns what was recorded, one line each.
    pub fn lock(&self) -> Result<Vec<String>, Error> {
        let catalog = self.read()?;
        if self.no_lock {
            return Ok(Vec::new());
        }
        self.update_lock(&catalog)
    }

    fn update_lock(&self, catalog: &Catalog) -> Result<Vec<String>, Error> {
        let path = self.lock_path();
        let outcome = lock::check(catalog, &path, self.mode()?)?;
        match &outcome.updated {
            Some(updated) => {
                lock::write(updated, &path)?;
                Ok(outcome.notes)
            }
            None => Ok(Vec::new()),
        }
    }

    fn read(&self) -> Result<Catalog, Error> {
        if let Some(e) = self.attribute_errors.first() {
            return Err(Error::Config(e.clone()));
        }
        if self.paths.is_empty() && self.sources.is_empty() {
            return Err(Error::Config(
                "no schemas: call `.schemas(\"schemas/\")` (YAML) or `.sources(\"src\")` (derive events) before `.compile()`".into(),
            ));
        }
        let mut catalog = if self.paths.is_empty() {
            Catalog::default()
        } else {
            schema::load(&self.paths)?
        };
        if !self.sources.is_empty() {
            let derived = crate::scan::scan(&self.sources)?;
            catalog.merge(derived);
            for s in catalog
                .services
                .iter()
                .filter(|s| s.origin == schema::Origin::Yaml && s.rust_type.is_none())
            {
                if let Some((_, rust, at)) = catalog
                    .rust_services
                    .iter()
                    .find(|(name, ..)| *name == s.name)
                {
                    return Err(Error::Config(format!(
                        "the service `{}` is declared twice: by `{}` (a schema) and by `#[derive(Service)] struct {rust}` at {at}; keep the Rust type and name it in the schema with `service_type: crate::{rust}` (its path), so the schema's events belong to it",
                        s.name,
                        s.file.display()
                    )));
                }
            }
            if let Some((service, event, version)) = crate::scan::duplicates(&catalog).first() {
                return Err(Error::Config(format!(
                    "`{service}.{event}` v{version} is declared twice (in a YAML schema and with a derive, or twice): declare each event version once"
                )));
            }
        }
        Ok(catalog)
    }

    /// The lock file: set, else `eventbus.lock` in the first schema directory (or next to the
    /// first schema file), else, with sources only, next to the first source directory (the
    /// crate's root for `src`).
    fn lock_path(&self) -> PathBuf {
        self.lock_file.clone().unwrap_or_else(|| {
            let dir = match (self.paths.first(), self.sources.first()) {
                (Some(first), _) if first.is_dir() => first.clone(),
                (Some(first), _) => first.parent().map(Path::to_path_buf).unwrap_or_default(),
                (None, Some(src)) => src.parent().map(Path::to_path_buf).unwrap_or_default(),
                (None, None) => PathBuf::new(),
            };
            dir.join("eventbus.lock")
        })
    }

    /// The contract files of `catalog`: `(path relative to the contracts directory, text)`.
    pub fn contracts(&self, catalog: &Catalog) -> Vec<(PathBuf, String)> {
        let mut out = vec![(
            PathBuf::from("asyncapi.json"),
            crate::contracts::asyncapi_with(catalog, &self.contract_options),
        )];
        out.extend(
            crate::contracts::json_schemas(catalog)
                .into_iter()
                .map(|(name, text)| (Path::new("schemas").join(name), text)),
        );
        out
    }

    /// The generated Rust of each service: `(service name, file text)`.
    pub fn generate(&self, catalog: &Catalog) -> Vec<(String, String)> {
        catalog
            .services
            .iter()
            .filter(|s| s.origin == schema::Origin::Yaml)
            .map(|s| (s.name.clone(), self.options.service_file(s)))
            .collect()
    }

    /// Reads the schemas, checks them and the lock, writes `{service}.rs` for each service to the
    /// out directory, and updates the lock as its mode allows ([`LockMode`]); prints
    /// `cargo:rerun-if-changed` for every schema file and directory and the lock, and a
    /// `cargo:warning` for each change recorded in the lock.
    pub fn compile(&self) -> Result<(), Error> {
        for path in self.paths.iter().chain(&self.sources) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
        let result = self.read();
        if let Ok(catalog) = &result {
            for input in &catalog.inputs {
                println!("cargo:rerun-if-changed={}", input.display());
            }
        }
        let catalog = result?;
        if !self.no_lock {
            let path = self.lock_path();
            println!("cargo:rerun-if-changed={}", path.display());
            println!("cargo:rerun-if-env-changed=EVENTBUS_LOCK");
            println!("cargo:rerun-if-env-changed=CI");
            for note in self.update_lock(&catalog)? {
                println!("cargo:warning=eventbus schema lock: {note}");
            }
        }
        let out = match &self.out_dir {
            Some(d) => d.clone(),
            None => std::env::var_os("OUT_DIR")
                .map(PathBuf::from)
                .ok_or_else(|| {
                    Error::Config(
                        "OUT_DIR is not set: run from build.rs, or set `.out_dir(...)`".into(),
                    )
                })?,
        };
        std::fs::create_dir_all(&out).map_err(|e| Error::io("cannot create", &out, e))?;
        for (name, text) in self.generate(&catalog) {
            write_if_changed(&out.join(format!("{name}.rs")), &text)?;
        }
        if let Some(dir) = &self.contracts_dir {
            for (path, text) in self.contracts(&catalog) {
                write_if_changed(&dir.join(path), &text)?;
            }
        }
        Ok(())
    }
}

impl Config {
    /// [`Config::compile`] for `build.rs`, reporting a failure as cargo errors: each line of each
    /// problem is printed as a `cargo::error=` line (cargo shows each as an `error:` line and
    /// fails the build once the script ends). Returns whether it compiled.
    ///
    /// ```no_run
    /// // in build.rs's `fn main()`
    /// eventbus_codegen::Config::new().schemas("schemas/").compile_or_report();
    /// ```
    ///
    /// The script should then end normally: a build script that exits non-zero has cargo print
    /// its whole output a second time, under "failed to run custom build command".
    pub fn compile_or_report(&self) -> bool {
        match self.compile() {
            Ok(()) => true,
            Err(e) => {
                print!("{}", e.cargo_errors());
                false
            }
        }
    }
}

/// Writes `text` to `path` (creating its directory) unless it holds it already.
fn write_if_changed(path: &Path, text: &str) -> Result<(), Error> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    }
    std::fs::write(path, text).map_err(|e| Error::io("cannot write", path, e))
}
