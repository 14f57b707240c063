//! One file's syntax: its service head, aggregates, types, fields and events, as written (names
//! are resolved across files in `resolve.rs`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::node::{Kind, Node, Pos};
use super::{Aggregate, FieldSchema, IntTy, Routing, Ty, TypeDecl, TypeKind, Variant};
use crate::model::{self, Category, FieldRole};
use crate::naming::{did_you_mean, to_pascal_case};

use super::keys::*;
use super::{File, RawEvent, Reader, ServiceHead, TypeRef, loc};

impl Reader {
    pub(super) fn file(&mut self, path: &Path, name: Arc<str>, root: &Node) -> File {
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
            rust_type: None,
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
                "service_type" => {
                    if let (Some(s), Some(h)) = (self.string(&name, value, "`service_type`"), head.as_mut()) {
                        if syn::parse_str::<syn::Path>(&s).is_err() {
                            self.err(&name, value.at, format!("`service_type: {s}` is not a Rust path: name the `#[derive(Service)]` type the events belong to, e.g. `service_type: crate::Inventory`"));
                        } else {
                            h.rust_type = Some((s, value.at));
                        }
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

    pub(super) fn routing(&mut self, file: &Arc<str>, node: &Node) -> Option<Routing> {
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

    pub(super) fn type_decl(
        &mut self,
        file: &Arc<str>,
        key: &str,
        at: Pos,
        node: &Node,
    ) -> Option<(TypeDecl, Vec<TypeRef>)> {
        // A refused name is reported here; the type is still declared (see below).
        self.ident(file, at, key, "the type name", false);
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
                        // Still an enum: its fields are not also told the type is unknown.
                        kind = Some(TypeKind::Enum(Vec::new()));
                        continue;
                    };
                    let mut variants: Vec<Variant> = Vec::new();
                    for item in items {
                        if let Some(s) = self.string(file, item, "an enum value") {
                            let ident = to_pascal_case(&s);
                            let wire_ok = s.starts_with(|c: char| c.is_ascii_alphabetic())
                                && s.chars()
                                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                            if !wire_ok || !is_ident(&ident) {
                                self.err(file, item.at, format!("enum value `{s}` does not make a Rust variant name: use letters, digits, `_` and `-`, starting with a letter"));
                            } else if variants.iter().any(|v| v.ident == ident) {
                                self.err(file, item.at, format!("enum value `{s}` becomes the variant `{ident}`, like an earlier value of `{key}`: rename one"));
                            } else {
                                variants.push(Variant { ident, wire: s });
                            }
                        }
                    }
                    if items.is_empty() {
                        self.err(file, v.at, format!("enum `{key}` has no values: a field of it could never hold one; list its values, e.g. `enum: [card, bank_transfer]`"));
                    }
                    kind = Some(TypeKind::Enum(variants));
                }
            }
        }
        // A type is declared even when its body is wrong (reported once, here): the fields
        // using it are not also told it is unknown (nothing is generated while an error stands).
        let kind = kind.unwrap_or_else(|| {
            if !self.misspelled(node.at, "fields") && !self.misspelled(node.at, "enum") {
                self.err(file, at, format!("type `{key}` has neither `fields` (a record) nor `enum` (a list of values): add one"));
            }
            TypeKind::Record(Vec::new())
        });
        Some((
            TypeDecl {
                ident: key.to_owned(),
                description,
                kind,
                at: loc(file, at),
            },
            refs,
        ))
    }

    /// Fields of an event or record; returns them and the named types they use.
    pub(super) fn fields(
        &mut self,
        file: &Arc<str>,
        node: &Node,
        owner: &str,
    ) -> (Vec<FieldSchema>, Vec<(Ty, String, Pos)>) {
        let mut out = Vec::new();
        let mut refs = Vec::new();
        let mut wires: HashMap<String, Pos> = HashMap::new();
        for (key, at, value) in self.map(file, node, &format!("the fields of {owner}"), &[]) {
            let mut ok = self.ident(
                file,
                at,
                key,
                &format!("field `{key}` of {owner}: the name"),
                true,
            );
            let bare = key.strip_prefix("r#").unwrap_or(key);
            if ok && bare != crate::naming::to_snake_case(bare) {
                let snake = crate::naming::to_snake_case(bare);
                self.err(
                    file,
                    at,
                    format!("field `{key}` of {owner} is not snake_case, as Rust fields are: write `{snake}:`, and keep `{key}` on the wire with `rename: {key}`"),
                );
                ok = false;
            }
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

    pub(super) fn event(
        &mut self,
        file: &Arc<str>,
        key: &str,
        at: Pos,
        node: &Node,
    ) -> Option<RawEvent> {
        // The key is the Rust type's name, as written: `item_catalogued:` is refused with the
        // name it should be, not silently re-cased.
        let ident = key.to_owned();
        let ok = if key.starts_with(|c: char| c.is_ascii_uppercase()) {
            self.ident(file, at, &ident, "the event type name", false)
        } else {
            let pascal = to_pascal_case(key);
            self.err(
                file,
                at,
                format!("the event key `{key}` is not a Rust type name: write `{pascal}:` (PascalCase; the wire name is `{}` either way, or set it with `name:`)", crate::naming::to_snake_case(&pascal)),
            );
            false
        };
        let mut ev = RawEvent {
            key_at: at,
            ident,
            name: None,
            version: (1, at),
            category: None,
            description: String::new(),
            strings: BTreeMap::new(),
            description_misspelled: false,
            roles: Vec::new(),
            fields: Vec::new(),
            field_types: Vec::new(),
        };
        // A category written but wrong (or misspelled) is reported as that, not also as missing.
        let mut category_written = false;
        for (k, _, v) in self.map(file, node, &format!("event `{key}`"), EVENT_KEYS) {
            match k {
                "category" => {
                    category_written = true;
                    let Some(s) = self.string(file, v, "`category`") else { continue };
                    match Category::ALL.iter().find(|c| c.as_str() == s) {
                        Some(c) => ev.category = Some(*c),
                        None => {
                            let words: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
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
        ev.description_misspelled = self.misspelled(node.at, "description");
        if ev.category.is_none()
            && !category_written
            && !self.misspelled(node.at, "category")
            && matches!(node.kind, Kind::Map(_))
        {
            self.err(file, at, format!("event `{key}` has no `category`: add `category: domain` (or integration, audit, system, notification)"));
        }
        ok.then_some(ev)
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
