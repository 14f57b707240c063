//! Reading schema files into a [`Catalog`], collecting every problem, in four phases, a file each:
//!
//! | file | phase |
//! |---|---|
//! | `keys.rs` | the keys each mapping allows (with "did you mean"), scalar values, identifiers |
//! | `syntax.rs` | one file's syntax: its service, aggregates, types, fields and events, as written |
//! | `resolve.rs` | across files: imports, shared types, one service's schema |
//! | `bridge.rs` | to the model: each event through the rules of [`crate::check`], worded for a schema |

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::node::{self, Pos};
use super::{
    Aggregate, Catalog, Diagnostic, Diagnostics, Error, EventSchema, FieldSchema, IntTy, Routing,
    ServiceSchema, Ty, TypeDecl, TypeKind, Variant,
};
use crate::model::{Category, FieldRole, FileLocation};

mod bridge;
mod keys;
mod resolve;
mod syntax;

/// Reads every schema file under `paths` (files, or directories searched for `*.yaml`/`*.yml`)
/// and the files they import; returns the catalog or every problem found.
pub fn load(paths: &[PathBuf]) -> Result<Catalog, Error> {
    let mut reader = Reader::default();
    let mut queue: Vec<PathBuf> = Vec::new();
    for path in paths {
        if path.is_dir() {
            collect_dir(path, &mut queue, &mut reader.catalog.inputs)?;
        } else {
            queue.push(path.clone());
        }
    }
    let mut files: Vec<File> = Vec::new();
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    let mut i = 0;
    while i < queue.len() {
        let path = queue[i].clone();
        i += 1;
        let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
        if !seen.insert(canonical) {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        reader.catalog.inputs.push(path.clone());
        let name: Arc<str> = Arc::from(path.display().to_string());
        reader
            .catalog
            .sources
            .insert(name.clone(), Arc::from(text.as_str()));
        let file = match node::parse(&text) {
            Ok(root) => reader.file(&path, name, &root),
            Err((message, at)) => {
                // Worded and placed by `node::parse`.
                reader.err(&name, at, message);
                continue;
            }
        };
        // A missing import is reported, at the import, when the file is resolved.
        queue.extend(
            file.imports
                .iter()
                .filter(|i| i.0.is_file())
                .map(|i| i.0.clone()),
        );
        files.push(file);
    }
    reader.resolve(&files);
    let mut diagnostics = reader.diagnostics;
    diagnostics.sort_by(|a, b| {
        (&a.at.file, a.at.line, a.at.column).cmp(&(&b.at.file, b.at.line, b.at.column))
    });
    diagnostics.dedup();
    if diagnostics.is_empty() {
        Ok(reader.catalog)
    } else {
        Err(Error::Schema(Diagnostics(diagnostics)))
    }
}

fn collect_dir(dir: &Path, out: &mut Vec<PathBuf>, inputs: &mut Vec<PathBuf>) -> Result<(), Error> {
    inputs.push(dir.to_path_buf());
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("cannot read directory", dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_dir(&path, out, inputs)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// A named type used by a field: the type, the text it was written as, and where.
type TypeRef = (Ty, String, Pos);

/// One file, read but not yet resolved against its imports.
struct File {
    name: Arc<str>,
    path: PathBuf,
    service: Option<ServiceHead>,
    imports: Vec<(PathBuf, String, Pos)>,
    types: Vec<(TypeDecl, Vec<TypeRef>)>,
}

struct ServiceHead {
    name: String,
    /// `service_type:`: the path of an existing `#[derive(Service)]` type.
    rust_type: Option<(String, Pos)>,
    description: String,
    default: bool,
    default_key: Option<(String, Pos)>,
    aggregates: Vec<Aggregate>,
    events: Vec<RawEvent>,
}

/// An event as written, before the model's checks.
struct RawEvent {
    key_at: Pos,
    ident: String,
    name: Option<(String, Pos)>,
    version: (u32, Pos),
    category: Option<Category>,
    description: String,
    strings: BTreeMap<&'static str, (String, Pos)>,
    /// `description:` was misspelled (reported): its absence is no second error.
    description_misspelled: bool,
    roles: Vec<(FieldRole, String, Pos)>,
    fields: Vec<FieldSchema>,
    field_types: Vec<(Ty, String, Pos)>,
}

#[derive(Default)]
struct Reader {
    diagnostics: Vec<Diagnostic>,
    catalog: Catalog,
    /// Unknown keys that were misspellings of a known one: the mapping's position and the key.
    misspelled: Vec<(Pos, &'static str)>,
}

fn loc(file: &Arc<str>, at: Pos) -> FileLocation {
    FileLocation {
        file: file.clone(),
        line: at.line,
        column: at.column,
    }
}

impl Reader {
    pub(super) fn err(&mut self, file: &Arc<str>, at: Pos, message: String) {
        let d = self.catalog.diagnostic(&loc(file, at), message);
        self.diagnostics.push(d);
    }
}
