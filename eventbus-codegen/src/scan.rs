//! Derive-declared events, read from a crate's Rust sources (feature `yaml`), so the crate's
//! contracts (AsyncAPI, JSON Schema) and its schema lock cover them like YAML events.
//!
//! `build.rs` runs it through [`crate::Config::sources`]: every `.rs` file under the given paths
//! is parsed with syn, and each struct carrying an event derive goes through the derive's own
//! front end ([`crate::derive::parse_event`]), so its name, version, category, topic and key are
//! exactly what the expansion gives it. Services and topic types come from `#[derive(Service)]`
//! and `#[derive(Topic)]` in the same files. Field types map to schema types
//! (`Scanner::ty`); structs and unit-variant enums of the sources used by a field become
//! declared types; serde's `rename`, `rename_all`, `skip`, `skip_serializing_if` and `flatten`
//! are honoured. A type it cannot see (another crate's) is any JSON value (`json`).
//!
//! An event whose attributes are wrong is left out: the derive reports it when the crate
//! compiles, at the attribute.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quote::ToTokens;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned as _;
use syn::{Attribute, Data, DeriveInput, Fields, Item, Token};

use crate::derive::{ServiceDecl, TopicDecl, doc_string, parse_event, parse_service, parse_topic};
use crate::emit::TopicName;
use crate::model::{Category, FileLocation, KeySource, ServiceRef, TopicRoute};
use crate::naming::to_snake_case;
use crate::schema::{
    Catalog, Diagnostic, Diagnostics, Error, EventSchema, FieldSchema, IntTy, Origin,
    ServiceSchema, Ty, TypeDecl, TypeKind, Variant,
};

/// Reads the derive-declared events of the `.rs` files under `paths` (files, or directories
/// searched recursively) into a catalog, one service each.
pub fn scan(paths: &[PathBuf]) -> Result<Catalog, Error> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files)?;
    }
    let mut scanner = Scanner::default();
    for path in &files {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
        let name: Arc<str> = Arc::from(path.display().to_string());
        scanner.catalog.inputs.push(path.clone());
        scanner
            .catalog
            .sources
            .insert(Arc::clone(&name), Arc::from(text.as_str()));
        match syn::parse_file(&text) {
            Ok(file) => scanner.items(&name, path, &file.items),
            Err(e) => scanner.error(
                &name,
                e.span(),
                format!("cannot parse this Rust file: {e}; fix it (the compiler says more)"),
            ),
        }
    }
    scanner.finish()
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::io("cannot read", path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            if entry.is_dir() || entry.extension().is_some_and(|x| x == "rs") {
                collect(&entry, out)?;
            }
        }
        Ok(())
    } else if path.is_file() {
        out.push(path.to_path_buf());
        Ok(())
    } else {
        Err(Error::Config(format!(
            "`sources(\"{}\")`: no such file or directory; give the crate's `src` directory",
            path.display()
        )))
    }
}

/// Where a span is, in `file`.
fn location(file: &Arc<str>, span: proc_macro2::Span) -> FileLocation {
    let start = span.start();
    FileLocation {
        file: Arc::clone(file),
        line: u32::try_from(start.line).unwrap_or(u32::MAX).max(1),
        column: u32::try_from(start.column + 1).unwrap_or(u32::MAX),
    }
}

/// The derives on an item: the last segment of each path (`eventbus::DomainEvent` →
/// `DomainEvent`).
fn derives(attrs: &[Attribute]) -> Vec<String> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("derive"))
        .filter_map(|a| {
            a.parse_args_with(Punctuated::<syn::Path, Token![,]>::parse_terminated)
                .ok()
        })
        .flatten()
        .filter_map(|p| p.segments.last().map(|s| s.ident.to_string()))
        .collect()
}

/// What serde attributes say of a field or a container.
#[derive(Default)]
struct Serde {
    rename: Option<String>,
    rename_all: Option<String>,
    skip: bool,
    maybe_absent: bool,
    flatten: bool,
    with: Option<String>,
}

fn serde_of(attrs: &[Attribute]) -> Serde {
    let mut out = Serde::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            let key = meta.path.to_token_stream().to_string();
            let value = || -> Option<String> {
                let v = meta.value().ok()?;
                let lit: syn::LitStr = v.parse().ok()?;
                Some(lit.value())
            };
            match key.as_str() {
                "rename" => out.rename = value().or(out.rename.take()),
                "rename_all" => out.rename_all = value(),
                "skip" | "skip_serializing" => out.skip = true,
                "skip_serializing_if" => {
                    out.maybe_absent = true;
                    let _ = value();
                }
                "flatten" => out.flatten = true,
                "with" | "serialize_with" => out.with = value(),
                _ => {
                    // Other keys (`default`, `alias`, `deserialize_with`, ...) do not change what
                    // is written; their values are skipped.
                    if meta.input.peek(Token![=]) {
                        let _ = meta.value().and_then(|v| v.parse::<syn::Expr>());
                    } else if meta.input.peek(syn::token::Paren) {
                        let _ = meta.parse_nested_meta(|inner| {
                            if inner.input.peek(Token![=]) {
                                let _ = inner.value().and_then(|v| v.parse::<syn::Expr>());
                            }
                            Ok(())
                        });
                    }
                }
            }
            Ok(())
        });
    }
    out
}

/// `name` as serde's `rename_all = rule` writes it.
fn renamed(name: &str, rule: Option<&str>) -> String {
    let snake = to_snake_case(name);
    let words: Vec<&str> = snake.split('_').filter(|w| !w.is_empty()).collect();
    let capital = |w: &str| {
        let mut c = w.chars();
        c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    };
    match rule {
        Some("lowercase") => name.to_lowercase(),
        Some("UPPERCASE") => name.to_uppercase(),
        Some("snake_case") => snake,
        Some("SCREAMING_SNAKE_CASE") => snake.to_uppercase(),
        Some("kebab-case") => words.join("-"),
        Some("SCREAMING-KEBAB-CASE") => words.join("-").to_uppercase(),
        Some("camelCase") => words
            .iter()
            .enumerate()
            .map(|(i, w)| if i == 0 { (*w).to_owned() } else { capital(w) })
            .collect(),
        Some("PascalCase") => words.iter().map(|w| capital(w)).collect(),
        _ => name.to_owned(),
    }
}

/// A plain type of the sources, a candidate for a field's type.
struct Plain {
    item: DeriveInput,
    file: Arc<str>,
}

struct Found {
    category: Category,
    input: DeriveInput,
    file: Arc<str>,
}

#[derive(Default)]
struct Scanner {
    catalog: Catalog,
    diagnostics: Vec<Diagnostic>,
    events: Vec<Found>,
    services: Vec<(ServiceDecl, Arc<str>, PathBuf, String)>,
    topics: Vec<TopicDecl>,
    plain: BTreeMap<String, Plain>,
}

impl Scanner {
    fn error(&mut self, file: &Arc<str>, span: proc_macro2::Span, message: String) {
        let at = location(file, span);
        let diagnostic = self.catalog.diagnostic(&at, message);
        self.diagnostics.push(diagnostic);
    }

    fn items(&mut self, file: &Arc<str>, path: &Path, items: &[Item]) {
        for item in items {
            let input: DeriveInput = match item {
                Item::Struct(s) => s.clone().into(),
                Item::Enum(e) => e.clone().into(),
                Item::Mod(m) => {
                    if let Some((_, inner)) = &m.content {
                        self.items(file, path, inner);
                    }
                    continue;
                }
                _ => continue,
            };
            let derives = derives(&input.attrs);
            let category = Category::ALL
                .iter()
                .copied()
                .find(|c| derives.iter().any(|d| d == c.derive_name()));
            if let Some(category) = category {
                self.events.push(Found {
                    category,
                    input,
                    file: Arc::clone(file),
                });
            } else if derives.iter().any(|d| d == "Service") {
                if let (service, None) = parse_service(&input) {
                    let doc = doc_string(&input.attrs);
                    self.services
                        .push((service, Arc::clone(file), path.to_path_buf(), doc));
                }
            } else if derives.iter().any(|d| d == "Topic") {
                if let (topic, None) = parse_topic(&input) {
                    self.topics.push(topic);
                }
            } else {
                self.plain
                    .entry(input.ident.to_string())
                    .or_insert_with(|| Plain {
                        item: input,
                        file: Arc::clone(file),
                    });
            }
        }
    }

    /// The service an event names (or the crate's default).
    fn service(&self, service: &ServiceRef) -> Option<usize> {
        match service {
            ServiceRef::Path(p) => {
                let ident = p.segments.last()?.ident.to_string();
                self.services.iter().position(|(s, ..)| s.ident == ident)
            }
            ServiceRef::CrateDefault => self.services.iter().position(|(s, ..)| s.default),
        }
    }

    fn finish(mut self) -> Result<Catalog, Error> {
        let mut by_service: BTreeMap<usize, Vec<EventSchema>> = BTreeMap::new();
        let mut types: BTreeMap<usize, BTreeMap<String, TypeDecl>> = BTreeMap::new();
        for found in std::mem::take(&mut self.events) {
            let (def, errors) = parse_event(found.category, &found.input);
            if errors.is_some() {
                continue; // the derive reports it, at the attribute
            }
            let Some(index) = self.service(&def.service) else {
                let which = match &def.service {
                    ServiceRef::Path(p) => format!("`{}`", p.to_token_stream()),
                    ServiceRef::CrateDefault => "the crate's default service".to_owned(),
                };
                self.error(
                    &found.file,
                    def.ident.span(),
                    format!(
                        "event `{}` belongs to {which}, which no `#[derive(Service)]` in the scanned sources declares: add the file declaring it to `Config::sources(..)`",
                        def.ident
                    ),
                );
                continue;
            };
            let service_name = self.services[index].0.name.value.clone();
            let join = |parts: Vec<Option<String>>| {
                parts
                    .into_iter()
                    .map(|p| p.unwrap_or_else(|| service_name.clone()))
                    .collect::<Vec<_>>()
                    .join(".")
            };
            let topic = match &def.topic {
                TopicRoute::Default => join(def.default_topic_parts()),
                TopicRoute::Name(n) => n.value.clone(),
                TopicRoute::Shared(path) => {
                    let ident = path
                        .segments
                        .last()
                        .map(|s| s.ident.to_string())
                        .unwrap_or_default();
                    match self.topics.iter().find(|t| t.ident == ident) {
                        Some(TopicDecl {
                            route: TopicName::Fixed(n),
                            ..
                        }) => n.clone(),
                        Some(TopicDecl {
                            route: TopicName::Aggregate(service, aggregate),
                            ..
                        }) => {
                            let name = self.service(service).map_or_else(
                                || service_name.clone(),
                                |i| self.services[i].0.name.value.clone(),
                            );
                            format!("domain.{name}.{aggregate}")
                        }
                        None => {
                            self.error(
                                &found.file,
                                path.span(),
                                format!(
                                    "event `{}` is published to `{ident}`, which no `#[derive(Topic)]` in the scanned sources declares: add its file to `Config::sources(..)`",
                                    def.ident
                                ),
                            );
                            continue;
                        }
                    }
                }
            };
            let used = types.entry(index).or_default();
            let mut fields = Vec::new();
            if let Data::Struct(data) = &found.input.data {
                let container = serde_of(&found.input.attrs);
                self.fields(&found.file, &data.fields, &container, used, &mut fields);
            }
            let key = match def.key_source() {
                KeySource::Field(ident) => Some(ident.to_string()),
                KeySource::None => None,
            };
            let value =
                |s: &Option<crate::model::Spanned<String>>| s.as_ref().map(|s| s.value.clone());
            by_service.entry(index).or_default().push(EventSchema {
                ident: def.ident.to_string(),
                name: def.name.value.clone(),
                version: def.version.value,
                category: def.category,
                description: def.description.clone(),
                aggregate: value(&def.aggregate),
                target: value(&def.target),
                audit_category: value(&def.audit_category),
                channel: value(&def.channel),
                kind: value(&def.kind),
                topic_name: match &def.topic {
                    TopicRoute::Name(n) => Some(n.value.clone()),
                    _ => None,
                },
                topic_type: match &def.topic {
                    TopicRoute::Shared(p) => Some(p.to_token_stream().to_string().replace(' ', "")),
                    _ => None,
                },
                roles: def
                    .fields
                    .iter()
                    .flat_map(|f| f.roles.iter().map(move |r| (r.value, f.ident.to_string())))
                    .collect(),
                fields,
                topic,
                key,
                at: location(&found.file, def.ident.span()),
            });
        }
        if !self.diagnostics.is_empty() {
            let mut diagnostics = self.diagnostics;
            diagnostics.sort_by(|a, b| {
                (&a.at.file, a.at.line, a.at.column).cmp(&(&b.at.file, b.at.line, b.at.column))
            });
            return Err(Error::Schema(Diagnostics(diagnostics)));
        }
        for (service, file, ..) in &self.services {
            self.catalog.rust_services.push((
                service.name.value.clone(),
                service.ident.to_string(),
                location(file, service.ident.span()),
            ));
        }
        for (index, events) in by_service {
            let (service, _, path, doc) = &self.services[index];
            self.catalog.services.push(ServiceSchema {
                origin: Origin::Derive,
                file: path.clone(),
                name: service.name.value.clone(),
                ident: service.ident.to_string(),
                rust_type: None,
                description: doc.clone(),
                default: service.default,
                aggregates: Vec::new(),
                types: types
                    .remove(&index)
                    .unwrap_or_default()
                    .into_values()
                    .collect(),
                events,
            });
        }
        Ok(self.catalog)
    }

    /// The schema fields of `fields` (serde's view of them), declaring the types they use.
    fn fields(
        &self,
        file: &Arc<str>,
        fields: &Fields,
        container: &Serde,
        used: &mut BTreeMap<String, TypeDecl>,
        out: &mut Vec<FieldSchema>,
    ) {
        let Fields::Named(named) = fields else {
            return;
        };
        for field in &named.named {
            let Some(ident) = &field.ident else { continue };
            let serde = serde_of(&field.attrs);
            if serde.skip {
                continue;
            }
            let (ty, optional) = match &serde.with {
                Some(with) if with.contains("rfc3339") => (Ty::Timestamp, is_option(&field.ty)),
                Some(_) => (Ty::Json, is_option(&field.ty)),
                None => self.ty(&field.ty, used),
            };
            if serde.flatten {
                // The fields of a flattened record of the sources are the event's own.
                if let Ty::Named(name) = &ty
                    && let Some(TypeKind::Record(inner)) = used.get(name).map(|t| t.kind.clone())
                {
                    out.extend(inner);
                }
                continue;
            }
            let name = ident.to_string();
            let name = name.strip_prefix("r#").unwrap_or(&name).to_owned();
            let wire = serde
                .rename
                .clone()
                .unwrap_or_else(|| renamed(&name, container.rename_all.as_deref()));
            let deprecated = field
                .attrs
                .iter()
                .find(|a| a.path().is_ident("deprecated"))
                .map(|_| "deprecated".to_owned());
            out.push(FieldSchema {
                ident: ident.to_string(),
                wire,
                ty,
                optional: optional || serde.maybe_absent,
                deprecated,
                description: doc_string(&field.attrs),
                at: location(file, ident.span()),
            });
        }
    }

    /// A Rust type as a schema type, and whether it may be absent (`Option`).
    fn ty(&self, ty: &syn::Type, used: &mut BTreeMap<String, TypeDecl>) -> (Ty, bool) {
        match ty {
            syn::Type::Reference(r) => self.ty(&r.elem, used),
            syn::Type::Paren(p) => self.ty(&p.elem, used),
            syn::Type::Group(g) => self.ty(&g.elem, used),
            syn::Type::Array(a) => (Ty::List(Box::new(self.ty(&a.elem, used).0)), false),
            syn::Type::Slice(s) => (Ty::List(Box::new(self.ty(&s.elem, used).0)), false),
            syn::Type::Path(p) if p.qself.is_none() => {
                let Some(last) = p.path.segments.last() else {
                    return (Ty::Json, false);
                };
                let args: Vec<&syn::Type> = match &last.arguments {
                    syn::PathArguments::AngleBracketed(a) => a
                        .args
                        .iter()
                        .filter_map(|a| match a {
                            syn::GenericArgument::Type(t) => Some(t),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let inner = |i: usize, used: &mut BTreeMap<String, TypeDecl>| {
                    args.get(i).map_or(Ty::Json, |t| self.ty(t, used).0)
                };
                let name = last.ident.to_string();
                let ty = match name.as_str() {
                    "Option" => return (inner(0, used), true),
                    "Box" | "Arc" | "Rc" | "Cow" => {
                        return args.first().map_or((Ty::Json, false), |t| self.ty(t, used));
                    }
                    "String" | "str" | "char" => Ty::String,
                    "bool" => Ty::Bool,
                    "isize" => Ty::Int(IntTy::I64),
                    "usize" => Ty::Int(IntTy::U64),
                    "f32" | "f64" => Ty::F64,
                    "Uuid" => Ty::Uuid,
                    "DateTime" => Ty::Timestamp,
                    "NaiveDate" => Ty::Date,
                    "Decimal" => Ty::Decimal,
                    "Value" => Ty::Json,
                    "Vec" | "VecDeque" | "HashSet" | "BTreeSet" | "LinkedList" | "IndexSet" => {
                        Ty::List(Box::new(inner(0, used)))
                    }
                    "HashMap" | "BTreeMap" | "IndexMap" => match args.first() {
                        Some(k) if matches!(self.ty(k, used).0, Ty::String) => {
                            Ty::Map(Box::new(inner(1, used)))
                        }
                        _ => Ty::Json,
                    },
                    other => match IntTy::parse(other) {
                        Some(i) => Ty::Int(i),
                        None => self.named(other, used),
                    },
                };
                (ty, false)
            }
            _ => (Ty::Json, false),
        }
    }

    /// A type of the sources by name, declared for the schema; any JSON value when the sources
    /// do not hold it (another crate's type) or it has no JSON shape we can state.
    fn named(&self, name: &str, used: &mut BTreeMap<String, TypeDecl>) -> Ty {
        if used.contains_key(name) {
            return Ty::Named(name.to_owned());
        }
        let Some(plain) = self.plain.get(name) else {
            return Ty::Json;
        };
        let container = serde_of(&plain.item.attrs);
        let at = location(&plain.file, plain.item.ident.span());
        let description = doc_string(&plain.item.attrs);
        // Declared before its fields are read, so a recursive type refers to itself.
        let placeholder = TypeDecl {
            ident: name.to_owned(),
            description: description.clone(),
            kind: TypeKind::Record(Vec::new()),
            at: at.clone(),
        };
        used.insert(name.to_owned(), placeholder);
        let kind = match &plain.item.data {
            Data::Struct(s) if matches!(s.fields, Fields::Named(_)) => {
                let mut fields = Vec::new();
                self.fields(&plain.file, &s.fields, &container, used, &mut fields);
                Some(TypeKind::Record(fields))
            }
            Data::Enum(e) if e.variants.iter().all(|v| matches!(v.fields, Fields::Unit)) => {
                Some(TypeKind::Enum(
                    e.variants
                        .iter()
                        .map(|v| {
                            let serde = serde_of(&v.attrs);
                            Variant {
                                ident: v.ident.to_string(),
                                wire: serde.rename.unwrap_or_else(|| {
                                    renamed(&v.ident.to_string(), container.rename_all.as_deref())
                                }),
                            }
                        })
                        .collect(),
                ))
            }
            _ => None,
        };
        match kind {
            Some(kind) => {
                used.insert(
                    name.to_owned(),
                    TypeDecl {
                        ident: name.to_owned(),
                        description,
                        kind,
                        at,
                    },
                );
                Ty::Named(name.to_owned())
            }
            None => {
                used.remove(name);
                Ty::Json
            }
        }
    }
}

fn is_option(ty: &syn::Type) -> bool {
    matches!(ty, syn::Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Option"))
}

/// Event names and versions declared twice across both front ends.
pub(crate) fn duplicates(catalog: &Catalog) -> Vec<(String, String, u32)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for s in &catalog.services {
        for e in &s.events {
            if !seen.insert((s.name.clone(), e.name.clone(), e.version)) {
                out.push((s.name.clone(), e.name.clone(), e.version));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_renames() {
        assert_eq!(renamed("order_id", Some("camelCase")), "orderId");
        assert_eq!(renamed("order_id", Some("PascalCase")), "OrderId");
        assert_eq!(renamed("order_id", Some("kebab-case")), "order-id");
        assert_eq!(
            renamed("order_id", Some("SCREAMING_SNAKE_CASE")),
            "ORDER_ID"
        );
        assert_eq!(renamed("BankTransfer", Some("snake_case")), "bank_transfer");
        assert_eq!(renamed("BankTransfer", Some("lowercase")), "banktransfer");
        assert_eq!(renamed("order_id", None), "order_id");
    }
}
