//! Reading schema files into a [`Catalog`], collecting every problem.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proc_macro2::{Ident, Span};

use super::node::{self, Kind, Node, Pos};
use super::{
    Aggregate, Catalog, Diagnostic, Diagnostics, Error, EventSchema, FieldSchema, IntTy, Routing,
    ServiceSchema, Ty, TypeDecl, TypeKind, Variant,
};
use crate::model::{
    self, Category, EventDef, FieldDef, FieldRole, FileLocation, ServiceRef, Spanned, TopicRoute,
};
use crate::naming::{did_you_mean, to_pascal_case, to_snake_case};

const TOP_KEYS: &[&str] = &[
    "service",
    "description",
    "default",
    "defaults",
    "imports",
    "aggregates",
    "types",
    "events",
];
const SHARED_KEYS: &[&str] = &["description", "imports", "types"];
const DEFAULTS_KEYS: &[&str] = &["routing", "key"];
const AGGREGATE_KEYS: &[&str] = &["description", "id", "routing"];
const TYPE_KEYS: &[&str] = &["description", "fields", "enum"];
const FIELD_KEYS: &[&str] = &["type", "description", "optional", "deprecated", "rename"];
const EVENT_KEYS: &[&str] = &[
    "category",
    "version",
    "description",
    "name",
    "aggregate",
    "aggregate_id",
    "target",
    "audit_category",
    "channel",
    "kind",
    "key",
    "actor",
    "recipient",
    "topic",
    "fields",
];
const BUILTIN_TYPES: &[&str] = &[
    "string",
    "bool",
    "i32",
    "i64",
    "u32",
    "u64",
    "f64",
    "decimal",
    "uuid",
    "timestamp",
    "date",
    "bytes",
    "json",
    "list<T>",
    "map<string, T>",
];

/// Rust's keywords (strict and reserved, 2024 edition).
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try",
];

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
                reader.err(
                    &name,
                    at,
                    format!("invalid YAML: {message}; fix the syntax (indentation, a missing `:`, an unclosed bracket or quote)"),
                );
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
    roles: Vec<(FieldRole, String, Pos)>,
    fields: Vec<FieldSchema>,
    field_types: Vec<(Ty, String, Pos)>,
}

#[derive(Default)]
struct Reader {
    diagnostics: Vec<Diagnostic>,
    catalog: Catalog,
}

fn loc(file: &Arc<str>, at: Pos) -> FileLocation {
    FileLocation {
        file: file.clone(),
        line: at.line,
        column: at.column,
    }
}

fn is_ident(s: &str) -> bool {
    let s = s.strip_prefix("r#").unwrap_or(s);
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s != "_"
}

impl Reader {
    fn err(&mut self, file: &Arc<str>, at: Pos, message: String) {
        let d = self.catalog.diagnostic(&loc(file, at), message);
        self.diagnostics.push(d);
    }

    /// The entries of a mapping, reporting unknown keys (with a suggestion) and non-string keys.
    fn map<'n>(
        &mut self,
        file: &Arc<str>,
        node: &'n Node,
        what: &str,
        allowed: &[&str],
    ) -> Vec<(&'n str, Pos, &'n Node)> {
        let Kind::Map(entries) = &node.kind else {
            if !matches!(node.kind, Kind::Null) {
                self.err(
                    file,
                    node.at,
                    format!(
                        "{what} is {}, but it must be a mapping of `key: value` lines",
                        node.kind.what()
                    ),
                );
            }
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, value) in entries {
            let Some(k) = key.as_str() else {
                self.err(
                    file,
                    key.at,
                    format!("a key of {what} is {}; keys are names", key.kind.what()),
                );
                continue;
            };
            if !allowed.is_empty() && !allowed.contains(&k) {
                let hint = match did_you_mean(k, allowed) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("expected one of: {}", allowed.join(", ")),
                };
                self.err(file, key.at, format!("unknown key `{k}` in {what}: {hint}"));
                continue;
            }
            out.push((k, key.at, value));
        }
        out
    }

    fn string(&mut self, file: &Arc<str>, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            Kind::Str(s) => Some(s.clone()),
            other => {
                self.err(
                    file,
                    node.at,
                    format!("{what} must be a string, not {}", other.what()),
                );
                None
            }
        }
    }

    fn boolean(&mut self, file: &Arc<str>, node: &Node, what: &str) -> Option<bool> {
        match &node.kind {
            Kind::Bool(b) => Some(*b),
            other => {
                self.err(
                    file,
                    node.at,
                    format!("{what} must be `true` or `false`, not {}", other.what()),
                );
                None
            }
        }
    }

    /// A Rust identifier for `what`, reporting keywords and invalid names.
    fn ident(&mut self, file: &Arc<str>, at: Pos, name: &str, what: &str, raw_ok: bool) -> bool {
        if !is_ident(name) {
            self.err(
                file,
                at,
                format!("{what} `{name}` is not a Rust identifier: use letters, digits and `_`, starting with a letter"),
            );
            return false;
        }
        let bare = name.strip_prefix("r#");
        if bare.is_some()
            && (!raw_ok || ["self", "Self", "super", "crate"].contains(&bare.unwrap_or_default()))
        {
            self.err(
                file,
                at,
                format!("{what} `{name}` cannot be a raw identifier: rename it"),
            );
            return false;
        }
        if bare.is_none() && KEYWORDS.contains(&name) {
            let fix = if raw_ok && !["self", "Self", "super", "crate"].contains(&name) {
                format!(
                    "write it as the raw identifier `r#{name}` (the wire name stays `{name}`), or rename it and keep the wire name with `rename: {name}`"
                )
            } else {
                "rename it".to_owned()
            };
            self.err(
                file,
                at,
                format!("{what} `{name}` is a Rust keyword: {fix}"),
            );
            return false;
        }
        true
    }

    fn file(&mut self, path: &Path, name: Arc<str>, root: &Node) -> File {
        let mut out = File {
            name: name.clone(),
            path: path.to_path_buf(),
            service: None,
            imports: Vec::new(),
            types: Vec::new(),
        };
        let is_service = matches!(&root.kind, Kind::Map(e) if e.iter().any(|(k, _)| k.as_str() == Some("service")));
        let allowed = if is_service { TOP_KEYS } else { SHARED_KEYS };
        let what = if is_service {
            "a service schema"
        } else {
            "a shared types file (a service schema starts with `service: name`)"
        };
        if matches!(root.kind, Kind::Null) {
            self.err(&name, root.at, "the file is empty: start a service schema with `service: name`, or a shared types file with `types:`".into());
        }
        let entries = self.map(&name, root, what, allowed);
        let mut head = is_service.then(|| ServiceHead {
            name: String::new(),
            description: String::new(),
            default: false,
            default_key: None,
            aggregates: Vec::new(),
            events: Vec::new(),
        });
        let mut default_routing = Routing::PerEvent;
        let mut aggregates_node = None;
        let mut events_node = None;
        for (key, _, value) in &entries {
            match *key {
                "service" => {
                    if let (Some(s), Some(h)) = (self.string(&name, value, "`service`"), head.as_mut()) {
                        if let Err(e) = model::check_segment("the service name", &s) {
                            self.err(&name, value.at, e);
                        }
                        h.name = s;
                    }
                }
                "description" => {
                    if let (Some(s), Some(h)) = (self.string(&name, value, "`description`"), head.as_mut()) {
                        h.description = s;
                    }
                }
                "default" => {
                    if let (Some(b), Some(h)) = (self.boolean(&name, value, "`default`"), head.as_mut()) {
                        h.default = b;
                    }
                }
                "defaults" => {
                    for (k, _, v) in self.map(&name, value, "`defaults`", DEFAULTS_KEYS) {
                        match k {
                            "routing" => {
                                if let Some(r) = self.routing(&name, v) {
                                    default_routing = r;
                                }
                            }
                            _ => {
                                if let (Some(s), Some(h)) = (self.string(&name, v, "`defaults.key`"), head.as_mut()) {
                                    h.default_key = Some((s, v.at));
                                }
                            }
                        }
                    }
                }
                "imports" => match &value.kind {
                    Kind::Seq(items) => {
                        for item in items {
                            if let Some(s) = self.string(&name, item, "an import") {
                                let base = path.parent().unwrap_or(Path::new(""));
                                out.imports.push((base.join(&s), s, item.at));
                            }
                        }
                    }
                    other => self.err(
                        &name,
                        value.at,
                        format!("`imports` must be a list of files (`imports: [shared/money.yaml]`), not {}", other.what()),
                    ),
                },
                "types" => {
                    for (k, at, v) in self.map(&name, value, "`types`", &[]) {
                        if let Some(t) = self.type_decl(&name, k, at, v) {
                            out.types.push(t);
                        }
                    }
                }
                "aggregates" => aggregates_node = Some(*value),
                _ => events_node = Some(*value),
            }
        }
        if let Some(h) = head.as_mut() {
            if let Some(node) = aggregates_node {
                for (k, at, v) in self.map(&name, node, "`aggregates`", &[]) {
                    if let Err(e) = model::check_segment("the aggregate name", k) {
                        self.err(&name, at, e);
                    }
                    let mut agg = Aggregate {
                        name: k.to_owned(),
                        description: String::new(),
                        routing: default_routing,
                        id_field: format!("{}_id", k.replace('-', "_")),
                        topic_ident: format!("{}Topic", to_pascal_case(k)),
                        at: loc(&name, at),
                    };
                    for (ak, _, av) in
                        self.map(&name, v, &format!("aggregate `{k}`"), AGGREGATE_KEYS)
                    {
                        match ak {
                            "description" => {
                                agg.description =
                                    self.string(&name, av, "`description`").unwrap_or_default()
                            }
                            "id" => {
                                if let Some(s) = self.string(&name, av, "`id`") {
                                    agg.id_field = s;
                                }
                            }
                            _ => {
                                if let Some(r) = self.routing(&name, av) {
                                    agg.routing = r;
                                }
                            }
                        }
                    }
                    h.aggregates.push(agg);
                }
            }
            if let Some(node) = events_node {
                for (k, at, v) in self.map(&name, node, "`events`", &[]) {
                    if let Some(e) = self.event(&name, k, at, v) {
                        h.events.push(e);
                    }
                }
            }
        }
        out.service = head;
        out
    }

    fn routing(&mut self, file: &Arc<str>, node: &Node) -> Option<Routing> {
        let s = self.string(file, node, "`routing`")?;
        match s.as_str() {
            "per_event" => Some(Routing::PerEvent),
            "per_aggregate" => Some(Routing::PerAggregate),
            other => {
                let hint = did_you_mean(other, &["per_event", "per_aggregate"])
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                self.err(file, node.at, format!("unknown routing `{other}`{hint}: use `per_event` (a topic per event type) or `per_aggregate` (a topic per aggregate, ordered per aggregate id)"));
                None
            }
        }
    }

    fn type_decl(
        &mut self,
        file: &Arc<str>,
        key: &str,
        at: Pos,
        node: &Node,
    ) -> Option<(TypeDecl, Vec<TypeRef>)> {
        let ok = self.ident(file, at, key, "the type name", false);
        let entries = self.map(file, node, &format!("type `{key}`"), TYPE_KEYS);
        let mut description = String::new();
        let mut kind = None;
        let mut refs = Vec::new();
        for (k, kat, v) in entries {
            match k {
                "description" => {
                    description = self.string(file, v, "`description`").unwrap_or_default()
                }
                "fields" => {
                    if kind.is_some() {
                        self.err(file, kat, format!("type `{key}` has both `fields` and `enum`: a type is a record or an enum; keep one"));
                    }
                    let (fields, r) = self.fields(file, v, &format!("type `{key}`"));
                    refs.extend(r);
                    kind = Some(TypeKind::Record(fields));
                }
                _ => {
                    if kind.is_some() {
                        self.err(file, kat, format!("type `{key}` has both `fields` and `enum`: a type is a record or an enum; keep one"));
                    }
                    let Kind::Seq(items) = &v.kind else {
                        self.err(file, v.at, format!("`enum` must be a list of values, e.g. `enum: [card, bank_transfer]`, not {}", v.kind.what()));
                        continue;
                    };
                    let mut variants: Vec<Variant> = Vec::new();
                    for item in items {
                        if let Some(s) = self.string(file, item, "an enum value") {
                            let ident = to_pascal_case(&s);
                            if !is_ident(&ident) || s.is_empty() {
                                self.err(file, item.at, format!("enum value `{s}` does not make a Rust variant name: use letters, digits, `_` and `-`, starting with a letter"));
                            } else if variants.iter().any(|v| v.ident == ident) {
                                self.err(file, item.at, format!("enum value `{s}` becomes the variant `{ident}`, like an earlier value of `{key}`: rename one"));
                            } else {
                                variants.push(Variant { ident, wire: s });
                            }
                        }
                    }
                    kind = Some(TypeKind::Enum(variants));
                }
            }
        }
        let Some(kind) = kind else {
            self.err(file, at, format!("type `{key}` has neither `fields` (a record) nor `enum` (a list of values): add one"));
            return None;
        };
        ok.then(|| {
            (
                TypeDecl {
                    ident: key.to_owned(),
                    description,
                    kind,
                    at: loc(file, at),
                },
                refs,
            )
        })
    }

    /// Fields of an event or record; returns them and the named types they use.
    fn fields(
        &mut self,
        file: &Arc<str>,
        node: &Node,
        owner: &str,
    ) -> (Vec<FieldSchema>, Vec<(Ty, String, Pos)>) {
        let mut out = Vec::new();
        let mut refs = Vec::new();
        let mut wires: HashMap<String, Pos> = HashMap::new();
        for (key, at, value) in self.map(file, node, &format!("the fields of {owner}"), &[]) {
            let ok = self.ident(
                file,
                at,
                key,
                &format!("field `{key}` of {owner}: the name"),
                true,
            );
            let mut field = FieldSchema {
                ident: key.to_owned(),
                wire: key.strip_prefix("r#").unwrap_or(key).to_owned(),
                ty: Ty::Json,
                optional: false,
                deprecated: None,
                description: String::new(),
                at: loc(file, at),
            };
            let mut ty_node = None;
            match &value.kind {
                Kind::Str(_) => ty_node = Some(value),
                Kind::Map(_) => {
                    for (k, _, v) in self.map(file, value, &format!("field `{key}` of {owner}"), FIELD_KEYS) {
                        match k {
                            "type" => ty_node = Some(v),
                            "description" => field.description = self.string(file, v, "`description`").unwrap_or_default(),
                            "optional" => field.optional = self.boolean(file, v, "`optional`").unwrap_or(false),
                            "deprecated" => {
                                field.deprecated = match &v.kind {
                                    Kind::Bool(true) => Some(String::new()),
                                    Kind::Bool(false) => None,
                                    Kind::Str(s) => Some(s.clone()),
                                    other => {
                                        self.err(file, v.at, format!("`deprecated` is `true` or a note saying what to use instead, not {}", other.what()));
                                        None
                                    }
                                }
                            }
                            _ => {
                                if let Some(s) = self.string(file, v, "`rename`") {
                                    field.wire = s;
                                }
                            }
                        }
                    }
                }
                other => self.err(file, value.at, format!("field `{key}` of {owner} is {}: give its type (`{key}: string`) or a mapping (`{key}: {{ type: string, optional: true }}`)", other.what())),
            }
            match ty_node {
                Some(t) => {
                    if let Some(text) = self.string(file, t, "the type") {
                        let (text, opt) = match text.strip_suffix('?') {
                            Some(t) => (t.trim().to_owned(), true),
                            None => (text.trim().to_owned(), false),
                        };
                        field.optional |= opt;
                        match parse_ty(&text) {
                            Ok(ty) => {
                                collect_named(&ty, t.at, &text, &mut refs);
                                field.ty = ty;
                            }
                            Err(e) => self.err(file, t.at, e),
                        }
                    }
                }
                None if matches!(value.kind, Kind::Map(_)) => self.err(file, at, format!("field `{key}` of {owner} has no `type`: add `type: string` (or another type)")),
                None => {}
            }
            if let Some(prev) = wires.get(&field.wire) {
                self.err(file, at, format!("field `{key}` of {owner} is named `{}` on the wire, like the field at line {}: rename one", field.wire, prev.line));
            } else {
                wires.insert(field.wire.clone(), at);
            }
            if ok {
                out.push(field);
            }
        }
        (out, refs)
    }

    fn event(&mut self, file: &Arc<str>, key: &str, at: Pos, node: &Node) -> Option<RawEvent> {
        let ident = if key.starts_with(|c: char| c.is_ascii_uppercase()) {
            key.to_owned()
        } else {
            to_pascal_case(key)
        };
        let ok = self.ident(file, at, &ident, "the event type name", false);
        let mut ev = RawEvent {
            key_at: at,
            ident,
            name: None,
            version: (1, at),
            category: None,
            description: String::new(),
            strings: BTreeMap::new(),
            roles: Vec::new(),
            fields: Vec::new(),
            field_types: Vec::new(),
        };
        for (k, _, v) in self.map(file, node, &format!("event `{key}`"), EVENT_KEYS) {
            match k {
                "category" => {
                    let Some(s) = self.string(file, v, "`category`") else { continue };
                    match Category::ALL.iter().find(|c| c.word() == s) {
                        Some(c) => ev.category = Some(*c),
                        None => {
                            let words: Vec<&str> = Category::ALL.iter().map(|c| c.word()).collect();
                            let hint = did_you_mean(&s, &words).map_or_else(|| format!("use one of: {}", words.join(", ")), |w| format!("did you mean `{w}`?"));
                            self.err(file, v.at, format!("unknown category `{s}` for event `{key}`: {hint}"));
                        }
                    }
                }
                "version" => match &v.kind {
                    Kind::Int(n) => match u32::try_from(*n) {
                        Ok(n) => ev.version = (n, v.at),
                        Err(_) => self.err(file, v.at, format!("`version` of event `{key}` is {n}: a version is a whole number from 1")),
                    },
                    other => self.err(file, v.at, format!("`version` of event `{key}` is {}: a version is a whole number from 1, e.g. `version: 2`", other.what())),
                },
                "description" => ev.description = self.string(file, v, "`description`").unwrap_or_default(),
                "name" => ev.name = self.string(file, v, "`name`").map(|s| (s, v.at)),
                "fields" => {
                    let (fields, refs) = self.fields(file, v, &format!("event `{key}`"));
                    ev.fields = fields;
                    ev.field_types = refs;
                }
                "aggregate_id" | "key" | "actor" | "recipient" => {
                    let role = match k {
                        "aggregate_id" => FieldRole::AggregateId,
                        "key" => FieldRole::Key,
                        "actor" => FieldRole::Actor,
                        _ => FieldRole::Recipient,
                    };
                    if let Some(s) = self.string(file, v, &format!("`{k}` (a field name)")) {
                        ev.roles.push((role, s, v.at));
                    }
                }
                _ => {
                    let k: &'static str = EVENT_KEYS.iter().find(|e| **e == k).copied().unwrap_or("topic");
                    if let Some(s) = self.string(file, v, &format!("`{k}`")) {
                        ev.strings.insert(k, (s, v.at));
                    }
                }
            }
        }
        if ev.category.is_none() && matches!(node.kind, Kind::Map(_)) {
            self.err(file, at, format!("event `{key}` has no `category`: add `category: domain` (or integration, audit, system, notification)"));
        }
        ok.then_some(ev)
    }

    /// Resolves imports and types, builds the events, and runs the model's checks.
    fn resolve(&mut self, files: &[File]) {
        let by_path: HashMap<PathBuf, usize> = files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.path.canonicalize().unwrap_or_else(|_| f.path.clone()), i))
            .collect();
        for file in files {
            // The types this file sees: its own, then those of its imports (transitively).
            let mut visible: Vec<&TypeDecl> = file.types.iter().map(|(t, _)| t).collect();
            let mut stack: Vec<usize> = Vec::new();
            for (path, written, at) in &file.imports {
                match by_path.get(&path.canonicalize().unwrap_or_else(|_| path.clone())) {
                    Some(i) => stack.push(*i),
                    None => self.err(&file.name, *at, format!("cannot import `{written}`: no such file (imports are relative to this file)")),
                }
            }
            let mut done = BTreeSet::new();
            while let Some(i) = stack.pop() {
                if !done.insert(i) {
                    continue;
                }
                let f = &files[i];
                if f.service.is_some() {
                    self.err(&file.name, file.imports.iter().find(|(p, _, _)| p.canonicalize().ok() == f.path.canonicalize().ok()).map_or(Pos::default(), |i| i.2), format!("`{}` is a service schema: import only shared types files (files with `types:` and no `service:`)", f.name));
                    continue;
                }
                visible.extend(f.types.iter().map(|(t, _)| t));
                for (path, _, _) in &f.imports {
                    if let Some(j) =
                        by_path.get(&path.canonicalize().unwrap_or_else(|_| path.clone()))
                    {
                        stack.push(*j);
                    }
                }
            }
            let names: Vec<&str> = visible.iter().map(|t| t.ident.as_str()).collect();
            let check_refs = |this: &mut Self, refs: &[(Ty, String, Pos)]| {
                for (ty, written, at) in refs {
                    let Ty::Named(n) = ty else { continue };
                    if !names.contains(&n.as_str()) {
                        let mut all: Vec<&str> = names.clone();
                        all.extend(BUILTIN_TYPES);
                        let hint = match did_you_mean(n, &all) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!(
                                "declare it under `types:` (here or in an imported file), or use one of: {}",
                                BUILTIN_TYPES.join(", ")
                            ),
                        };
                        this.err(
                            &file.name,
                            *at,
                            format!("unknown type `{n}` in `{written}`: {hint}"),
                        );
                    }
                }
            };
            for (_, refs) in &file.types {
                check_refs(self, refs);
            }
            let Some(head) = &file.service else { continue };
            for e in &head.events {
                check_refs(self, &e.field_types);
            }
            let mut types: Vec<TypeDecl> = Vec::new();
            let mut seen_types = BTreeSet::new();
            for t in visible {
                if seen_types.insert(t.ident.clone()) {
                    types.push(t.clone());
                }
            }
            let service = self.service(file, head, types);
            self.catalog.services.push(service);
        }
    }

    fn service(&mut self, file: &File, head: &ServiceHead, types: Vec<TypeDecl>) -> ServiceSchema {
        let name = &file.name;
        let service_ident = to_pascal_case(&head.name);
        // Rust names in the generated file: each must be unique after case conversion.
        let mut idents: HashMap<String, (String, FileLocation)> = HashMap::new();
        let mut claim = |this: &mut Self, ident: &str, what: String, at: &FileLocation| {
            if let Some((first, first_at)) = idents.get(ident) {
                this.diagnostics.push(this.catalog.diagnostic(at, format!("{what} becomes the Rust type `{ident}`, like {first} at {first_at}: names that differ only in case or `_`/`-` collide; rename one")));
            } else {
                idents.insert(ident.to_owned(), (what, at.clone()));
            }
        };
        let file_start = loc(name, Pos { line: 1, column: 1 });
        claim(
            self,
            &service_ident,
            format!("the service `{}`", head.name),
            &file_start,
        );
        for a in &head.aggregates {
            if a.routing == Routing::PerAggregate {
                claim(
                    self,
                    &a.topic_ident,
                    format!("the topic type of aggregate `{}`", a.name),
                    &a.at,
                );
            }
        }
        for t in &types {
            claim(self, &t.ident, format!("the type `{}`", t.ident), &t.at);
        }
        let mut events = Vec::new();
        let mut versions: HashMap<(String, u32), FileLocation> = HashMap::new();
        for raw in &head.events {
            let at = loc(name, raw.key_at);
            claim(self, &raw.ident, format!("the event `{}`", raw.ident), &at);
            if let Some(e) = self.event_schema(file, head, raw) {
                let own_topic = e.topic_type.is_none();
                if own_topic {
                    claim(
                        self,
                        &format!("{}Topic", e.ident),
                        format!("the topic type of event `{}`", e.ident),
                        &at,
                    );
                }
                let event_type = match (&e.category, &e.aggregate) {
                    (Category::Domain, Some(a)) => format!("{}.{a}.{}", head.name, e.name),
                    _ => format!("{}.{}", head.name, e.name),
                };
                let version_at = loc(name, raw.version.1);
                match versions.get(&(event_type.clone(), e.version)) {
                    Some(first) => {
                        let d = self.catalog.diagnostic(&version_at, format!("event `{}` version {} is declared twice (first at {first}), on topic `{}`: bump `version` of the newer declaration, or give it another `name`", e.name, e.version, e.topic));
                        self.diagnostics.push(d);
                    }
                    None => {
                        versions.insert((event_type, e.version), version_at);
                    }
                }
                events.push(e);
            }
        }
        ServiceSchema {
            file: file.path.clone(),
            name: head.name.clone(),
            ident: service_ident,
            description: head.description.clone(),
            default: head.default,
            aggregates: head.aggregates.clone(),
            types,
            events,
        }
    }

    fn event_schema(
        &mut self,
        file: &File,
        head: &ServiceHead,
        raw: &RawEvent,
    ) -> Option<EventSchema> {
        let name = &file.name;
        let category = raw.category?;
        let s = |k: &str| raw.strings.get(k).cloned();
        let spanned = |v: Option<(String, Pos)>| v.map(|(s, p)| Spanned::new(s, loc(name, p)));
        let aggregate = s("aggregate");
        let agg = aggregate
            .as_ref()
            .and_then(|(a, _)| head.aggregates.iter().find(|x| &x.name == a));
        if let (Some((a, at)), None, Category::Domain) = (&aggregate, agg, category) {
            let known: Vec<&str> = head.aggregates.iter().map(|x| x.name.as_str()).collect();
            let hint = did_you_mean(a, &known).map_or_else(
                || format!("declare it under `aggregates:` (`aggregates: {{ {a}: {{ description: ... }} }}`)"),
                |k| format!("did you mean `{k}`?"),
            );
            self.err(name, *at, format!("event `{}` names the aggregate `{a}`, which this service does not declare: {hint}", raw.ident));
        }
        // Roles: as written, plus the defaults (aggregate id field, service default key).
        let mut roles: Vec<(FieldRole, String, Pos)> = raw.roles.clone();
        let has = |roles: &[(FieldRole, String, Pos)], r: FieldRole| roles.iter().any(|x| x.0 == r);
        if category == Category::Domain
            && !has(&roles, FieldRole::AggregateId)
            && let Some(a) = agg
            && raw.fields.iter().any(|f| f.ident == a.id_field)
        {
            roles.push((FieldRole::AggregateId, a.id_field.clone(), raw.key_at));
        }
        if matches!(category, Category::Integration | Category::System)
            && !has(&roles, FieldRole::Key)
            && let Some((k, _)) = &head.default_key
            && raw.fields.iter().any(|f| &f.ident == k)
        {
            roles.push((FieldRole::Key, k.clone(), raw.key_at));
        }
        // Each role names an existing field whose type can be a key.
        let mut ok_roles = Vec::new();
        for (role, field, at) in &roles {
            match raw.fields.iter().find(|f| &f.ident == field) {
                None => {
                    let names: Vec<&str> = raw.fields.iter().map(|f| f.ident.as_str()).collect();
                    let hint = did_you_mean(field, &names).map_or_else(
                        || {
                            format!(
                                "the fields are: {}",
                                if names.is_empty() {
                                    "(none)".to_owned()
                                } else {
                                    names.join(", ")
                                }
                            )
                        },
                        |s| format!("did you mean `{s}`?"),
                    );
                    self.err(
                        name,
                        *at,
                        format!(
                            "`{}: {field}` on event `{}`: there is no field `{field}`; {hint}",
                            role.word(),
                            raw.ident
                        ),
                    );
                }
                Some(f) => {
                    if f.ty.can_be_key() {
                        ok_roles.push((*role, field.clone(), *at));
                    } else {
                        self.err(name, *at, format!("field `{field}` of event `{}` is a `{}`, which cannot be a partition key (`{}`): a key is a string, integer, uuid or bool; choose another field", raw.ident, f.ty.schema_name(), role.word()));
                    }
                }
            }
        }
        let topic_name = s("topic");
        let topic_type = match (category, agg) {
            (Category::Domain, Some(a))
                if a.routing == Routing::PerAggregate && topic_name.is_none() =>
            {
                Some(a.topic_ident.clone())
            }
            _ => None,
        };
        let wire_name = raw
            .name
            .clone()
            .unwrap_or_else(|| (to_snake_case(&raw.ident), raw.key_at));
        // The model's checks, the same as the derive's.
        let def = EventDef {
            ident: Ident::new(&raw.ident, Span::call_site()),
            at: loc(name, raw.key_at).into(),
            vis: syn::parse_quote!(pub),
            category,
            krate: syn::parse_quote!(::eventbus),
            service: ServiceRef::Path(syn::parse_quote!(Service)),
            name: Spanned::new(wire_name.0.clone(), loc(name, wire_name.1)),
            version: Spanned::new(raw.version.0, loc(name, raw.version.1)),
            description: raw.description.clone(),
            aggregate: spanned(aggregate.clone()),
            target: spanned(s("target")),
            audit_category: spanned(s("audit_category")),
            channel: spanned(s("channel")),
            kind: spanned(s("kind")),
            topic: match (&topic_name, &topic_type) {
                (Some((t, p)), _) => TopicRoute::Name(Spanned::new(t.clone(), loc(name, *p))),
                (None, Some(t)) => TopicRoute::Shared(
                    syn::parse_str(t).unwrap_or_else(|_| syn::parse_quote!(Topic)),
                ),
                (None, None) => TopicRoute::Default,
            },
            fields: raw
                .fields
                .iter()
                .map(|f| FieldDef {
                    ident: Ident::new(
                        f.ident.strip_prefix("r#").unwrap_or(&f.ident),
                        Span::call_site(),
                    ),
                    ty: syn::parse_quote!(()),
                    roles: ok_roles
                        .iter()
                        .filter(|(_, n, _)| n == &f.ident)
                        .map(|(r, _, p)| Spanned::new(*r, loc(name, *p)))
                        .collect(),
                    serde_custom: false,
                })
                .collect(),
        };
        let mut problems = model::validate(&def);
        // A role that named a missing field was reported above; do not also call it missing.
        problems.retain(|p| {
            !p.missing
                .is_some_and(|m| roles.iter().any(|r| r.0.word() == m))
        });
        for p in problems {
            let mut message = p.message.replace(
                "add a doc comment (`/// What happened.`) above the struct",
                "add `description: What happened.` to the event",
            );
            if let Some(m) = p.missing {
                message = format!("{message} (in a schema: `{m}: ...` on the event)");
            }
            let at =
                p.at.file()
                    .cloned()
                    .unwrap_or_else(|| loc(name, raw.key_at));
            self.diagnostics.push(self.catalog.diagnostic(&at, message));
        }
        let topic = match (&topic_name, agg, category) {
            (Some((t, _)), _, _) => t.clone(),
            (None, Some(a), Category::Domain) if a.routing == Routing::PerAggregate => {
                format!("domain.{}.{}", head.name, a.name)
            }
            _ => def
                .default_topic_parts()
                .into_iter()
                .map(|p| p.unwrap_or_else(|| head.name.clone()))
                .collect::<Vec<_>>()
                .join("."),
        };
        if topic_name.is_none()
            && let Err(e) = model::check_topic(&topic)
        {
            self.err(name, raw.key_at, format!("event `{}`: {e}", raw.ident));
        }
        let key = match def.key_source() {
            model::KeySource::Field(f) => Some(
                raw.fields
                    .iter()
                    .find(|x| f == x.ident.strip_prefix("r#").unwrap_or(&x.ident))
                    .map_or_else(|| f.to_string(), |x| x.ident.clone()),
            ),
            model::KeySource::None => None,
        };
        Some(EventSchema {
            ident: raw.ident.clone(),
            name: wire_name.0,
            version: raw.version.0,
            category,
            description: raw.description.clone(),
            aggregate: aggregate.map(|a| a.0),
            target: s("target").map(|a| a.0),
            audit_category: s("audit_category").map(|a| a.0),
            channel: s("channel").map(|a| a.0),
            kind: s("kind").map(|a| a.0),
            topic_name: topic_name.map(|t| t.0),
            topic_type,
            roles: ok_roles.into_iter().map(|(r, f, _)| (r, f)).collect(),
            fields: raw.fields.clone(),
            topic,
            key,
            at: loc(name, raw.key_at),
        })
    }
}

/// Parses a type as written: `string`, `list<Money>`, `map<string, i64>`, `Money`.
pub(crate) fn parse_ty(text: &str) -> Result<Ty, String> {
    let t = text.trim();
    let inner = |prefix: &str| t.strip_prefix(prefix).and_then(|r| r.strip_suffix('>'));
    if let Some(inner) = inner("list<") {
        return parse_ty(inner).map(|t| Ty::List(Box::new(t)));
    }
    if let Some(inner) = inner("map<") {
        let Some((k, v)) = inner.split_once(',') else {
            return Err(format!("`{t}`: a map is `map<string, T>`"));
        };
        if k.trim() != "string" {
            return Err(format!(
                "`{t}`: map keys are strings (JSON object keys): write `map<string, {}>`",
                v.trim()
            ));
        }
        return parse_ty(v).map(|t| Ty::Map(Box::new(t)));
    }
    Ok(match t {
        "string" => Ty::String,
        "bool" => Ty::Bool,
        "i32" => Ty::Int(IntTy::I32),
        "i64" => Ty::Int(IntTy::I64),
        "u32" => Ty::Int(IntTy::U32),
        "u64" => Ty::Int(IntTy::U64),
        "f64" => Ty::F64,
        "decimal" => Ty::Decimal,
        "uuid" => Ty::Uuid,
        "timestamp" => Ty::Timestamp,
        "date" => Ty::Date,
        "bytes" => Ty::Bytes,
        "json" => Ty::Json,
        other if other.starts_with(|c: char| c.is_ascii_uppercase()) && is_ident(other) => {
            Ty::Named(other.to_owned())
        }
        other => {
            let hint = did_you_mean(other, BUILTIN_TYPES).map_or_else(
                || format!("use one of: {}, or a type declared under `types:` (names start with a capital letter)", BUILTIN_TYPES.join(", ")),
                |s| format!("did you mean `{s}`?"),
            );
            return Err(format!("unknown type `{other}`: {hint}"));
        }
    })
}

fn collect_named(ty: &Ty, at: Pos, written: &str, out: &mut Vec<(Ty, String, Pos)>) {
    match ty {
        Ty::Named(_) => out.push((ty.clone(), written.to_owned(), at)),
        Ty::List(t) | Ty::Map(t) => collect_named(t, at, written, out),
        _ => {}
    }
}
