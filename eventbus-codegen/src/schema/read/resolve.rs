//! Across files: imports, the types they share, and each service's schema.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use super::node::Pos;
use super::{Routing, ServiceSchema, Ty, TypeDecl};
use crate::model::{Category, FileLocation};
use crate::naming::{did_you_mean, to_pascal_case};

use super::keys::BUILTIN_TYPES;
use super::{File, Reader, ServiceHead, loc};

impl Reader {
    /// Resolves imports and types, builds the events, and runs the model's checks.
    pub(super) fn resolve(&mut self, files: &[File]) {
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

    pub(super) fn service(
        &mut self,
        file: &File,
        head: &ServiceHead,
        types: Vec<TypeDecl>,
    ) -> ServiceSchema {
        let name = &file.name;
        let service_ident = match &head.rust_type {
            Some((path, _)) => path.rsplit("::").next().unwrap_or(path).trim().to_owned(),
            None => to_pascal_case(&head.name),
        };
        if let (Some((_, at)), true) = (&head.rust_type, head.default) {
            let d = self.catalog.diagnostic(&loc(name, *at), "`default: true` with `service_type:`: whether the service is the crate's default is said by its Rust type (`#[service(default)]`); remove `default:`".to_owned());
            self.diagnostics.push(d);
        }
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
        if head.rust_type.is_none() {
            claim(
                self,
                &service_ident,
                format!("the service `{}`", head.name),
                &file_start,
            );
        }
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
            origin: super::super::Origin::Yaml,
            file: file.path.clone(),
            name: head.name.clone(),
            ident: service_ident,
            rust_type: head.rust_type.as_ref().map(|(p, _)| p.clone()),
            description: head.description.clone(),
            default: head.default,
            aggregates: head.aggregates.clone(),
            types,
            events,
        }
    }
}
