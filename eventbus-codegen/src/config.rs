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
        if self.paths.is_empty() {
            return Err(Error::Config(
                "no schemas: call `.schemas(\"schemas/\")` before `.compile()`".into(),
            ));
        }
        schema::load(&self.paths)
    }

    fn lock_path(&self) -> PathBuf {
        self.lock_file.clone().unwrap_or_else(|| {
            let first = &self.paths[0];
            let dir = if first.is_dir() {
                first.clone()
            } else {
                first.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            dir.join("eventbus.lock")
        })
    }

    /// The generated Rust of each service: `(service name, file text)`.
    pub fn generate(&self, catalog: &Catalog) -> Vec<(String, String)> {
        catalog
            .services
            .iter()
            .map(|s| (s.name.clone(), self.options.service_file(s)))
            .collect()
    }

    /// Reads the schemas, checks them and the lock, writes `{service}.rs` for each service to the
    /// out directory, and updates the lock as its mode allows ([`LockMode`]); prints
    /// `cargo:rerun-if-changed` for every schema file and directory and the lock, and a
    /// `cargo:warning` for each change recorded in the lock.
    pub fn compile(&self) -> Result<(), Error> {
        for path in &self.paths {
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
            let path = out.join(format!("{name}.rs"));
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                std::fs::write(&path, text).map_err(|e| Error::io("cannot write", &path, e))?;
            }
        }
        Ok(())
    }
}
