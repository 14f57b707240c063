//! The derive front end: `#[derive(DomainEvent)]` input → [`EventDef`].
//!
//! Attributes are parsed here, validated by the rules of [`crate::check`], expanded by
//! [`crate::emit`]. Every error is collected and reported at the attribute or field it concerns;
//! on error the expansion still emits fallback impls so the user sees one message, not a cascade.

mod aggregate;
mod words;

pub use aggregate::expand_aggregate;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned as _;
use syn::{Attribute, Data, DeriveInput, Expr, Fields, Lit, LitInt, LitStr, Path};
use words::say;

use crate::check;
use crate::model::{
    self, Category, EventDef, FieldDef, FieldRole, ServiceRef, Spanned, TopicRoute,
};
use crate::naming::{did_you_mean, to_snake_case};

/// Collects errors, combining them into one `syn::Error` at the end.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>, Vec<&'static str>);

impl Errors {
    pub(crate) fn push(&mut self, err: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(err),
            None => self.0 = Some(err),
        }
    }

    pub(crate) fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Remembers that the user wrote a misspelling of `key`.
    pub(crate) fn suggested(&mut self, key: &'static str) {
        self.1.push(key);
    }

    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }
}

/// The struct-level keys of `#[event(...)]`, and the categories each applies to.
const STRUCT_KEYS: &[(&str, &[Category])] = &[
    (
        "service",
        &[
            Category::Domain,
            Category::Audit,
            Category::System,
            Category::Notification,
        ],
    ),
    ("source", &[Category::Integration]),
    ("aggregate", &[Category::Domain]),
    ("target", &[Category::Integration]),
    ("audit_category", &[Category::Audit]),
    ("channel", &[Category::Notification]),
    ("kind", &[Category::Notification]),
    ("name", &Category::ALL),
    ("version", &Category::ALL),
    ("topic", &Category::ALL),
    ("crate", &Category::ALL),
];

/// The field-level keys of `#[event(...)]`.
const FIELD_KEYS: &[(&str, FieldRole)] = &[
    ("aggregate_id", FieldRole::AggregateId),
    ("key", FieldRole::Key),
    ("actor", FieldRole::Actor),
    ("recipient", FieldRole::Recipient),
];

/// Parses a derive input of `category` into the event model, validating it.
///
/// Returns the model, as complete as the input allows, and every error found in it.
pub fn parse_event(category: Category, input: &DeriveInput) -> (EventDef, Option<syn::Error>) {
    let mut errors = Errors::default();
    let ident = input.ident.clone();
    let derive = category.derive_name();

    let mut def = EventDef {
        ident: ident.clone(),
        at: ident.span().into(),
        vis: input.vis.clone(),
        category,
        krate: syn::parse_quote!(::eventbus),
        service: ServiceRef::CrateDefault,
        name: Spanned::new(to_snake_case(&ident.to_string()), ident.span()),
        version: Spanned::new(1, ident.span()),
        description: doc_string(&input.attrs),
        aggregate: None,
        target: None,
        audit_category: None,
        channel: None,
        kind: None,
        topic: TopicRoute::Default,
        fields: Vec::new(),
    };

    if !input.generics.params.is_empty() {
        errors.at(
            input.generics.span(),
            format!(
                "`#[derive({derive})]` does not support generic types: an event is one concrete payload on the wire; declare `{ident}` without type parameters"
            ),
        );
    }

    let shape_error =
        !matches!(&input.data, Data::Struct(s) if !matches!(s.fields, Fields::Unnamed(_)));
    match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => {
                for field in &named.named {
                    if let Some(f) = parse_field(&ident, field, &mut errors) {
                        def.fields.push(f);
                    }
                }
            }
            Fields::Unnamed(_) => errors.at(
                data.fields.span(),
                format!(
                    "`#[derive({derive})]` needs a struct with named fields: `{ident}` is a tuple struct, and event payloads are JSON objects whose field names are the schema; write `struct {ident} {{ name: Type, .. }}`"
                ),
            ),
            // A unit payload is `null`: fine for a system event; a domain event is told below
            // that it lacks an aggregate id.
            Fields::Unit => {}
        },
        Data::Enum(data) => errors.at(
            data.enum_token.span(),
            format!(
                "`#[derive({derive})]` applies to structs: `{ident}` is an enum; declare one struct per event (each has its own name, version and topic)"
            ),
        ),
        Data::Union(data) => errors.at(
            data.union_token.span(),
            format!("`#[derive({derive})]` applies to structs with named fields, not unions"),
        ),
    }

    for attr in input.attrs.iter().filter(|a| a.path().is_ident("event")) {
        let result = attr.parse_nested_meta(|meta| {
            parse_struct_key(category, &mut def, &meta, &mut errors);
            Ok(())
        });
        if let Err(e) = result {
            errors.push(e);
        }
    }

    // A wrong shape (enum, tuple struct, union) has no fields to check: one error is enough.
    if !shape_error {
        for problem in check::check(&def.declared()) {
            if problem.missing().is_some_and(|m| errors.1.contains(&m)) {
                continue; // the user wrote a misspelling of it, already reported
            }
            errors.at(problem.at.span(), say(&def.ident, def.category, &problem));
        }
    }

    (def, errors.finish().err())
}

fn parse_struct_key(
    category: Category,
    def: &mut EventDef,
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
) {
    let key = meta.path.to_token_stream().to_string().replace(' ', "");
    let span = meta.path.span();
    let derive = category.derive_name();
    let Some((_, applies)) = STRUCT_KEYS.iter().find(|(k, _)| *k == key) else {
        let valid: Vec<&str> = STRUCT_KEYS
            .iter()
            .filter(|(_, cats)| cats.contains(&category))
            .map(|(k, _)| *k)
            .collect();
        let field_key = FIELD_KEYS.iter().any(|(k, _)| *k == key);
        let hint = if field_key {
            format!(" `{key}` is a field attribute: put `#[event({key})]` on the field")
        } else if let Some(s) = did_you_mean(&key, &valid) {
            if let Some((k, _)) = STRUCT_KEYS.iter().find(|(k, _)| *k == s) {
                errors.suggested(k);
            }
            format!(" did you mean `{s}`?")
        } else {
            format!(" expected one of: {}", valid.join(", "))
        };
        errors.at(
            span,
            format!(
                "unknown attribute `{key}` on event `{}` (`#[derive({derive})]`);{hint}",
                def.ident
            ),
        );
        skip_value(meta);
        return;
    };
    if !applies.contains(&category) && matches!(key.as_str(), "service" | "source") {
        // The owner has another key in this category: say which, with the value as written.
        let (instead, owner) = if key == "service" {
            ("source", "its source, the service that publishes it")
        } else {
            ("service", "its service")
        };
        let written = value_path(meta, &key, errors).map_or_else(
            || "MyService".to_owned(),
            |p| p.to_token_stream().to_string().replace(' ', ""),
        );
        errors.at(
            span,
            format!(
                "`{key}` does not apply to {} events: the owner of `{}` is {owner}; write `{instead} = {written}` (without it, the crate's default service is the owner)",
                category.as_str(),
                def.ident
            ),
        );
        return;
    }
    if !applies.contains(&category) {
        let owners: Vec<&str> = applies.iter().map(|c| c.derive_name()).collect();
        errors.at(
            span,
            format!(
                "`{key}` does not apply to {} events (it belongs to {}); remove it from `{}`",
                category.as_str(),
                owners.join(", "),
                def.ident
            ),
        );
        skip_value(meta);
        return;
    }
    match key.as_str() {
        "service" | "source" => {
            if let Some(path) = value_path(meta, &key, errors) {
                def.service = ServiceRef::Path(path);
            }
        }
        "crate" => {
            if let Some(path) = value_path(meta, &key, errors) {
                def.krate = path;
            }
        }
        "aggregate" => def.aggregate = value_str(meta, &key, errors),
        "target" => def.target = value_str(meta, &key, errors),
        "audit_category" => def.audit_category = value_str(meta, &key, errors),
        "channel" => def.channel = value_str(meta, &key, errors),
        "kind" => def.kind = value_str(meta, &key, errors),
        "name" => {
            if let Some(name) = value_str(meta, &key, errors) {
                def.name = name;
            }
        }
        "version" => match meta.value().and_then(|v| v.parse::<LitInt>()) {
            Ok(lit) => match lit.base10_parse::<u32>() {
                Ok(v) => def.version = Spanned::new(v, lit.span()),
                Err(_) => errors.at(lit.span(), "`version` is a whole number from 1, e.g. `version = 2`"),
            },
            Err(e) => errors.at(e.span(), "`version` is a whole number from 1, e.g. `version = 2`"),
        },
        "topic" => match meta.value().and_then(|v| v.parse::<Expr>()) {
            Ok(Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. })) => {
                def.topic = TopicRoute::Name(Spanned::new(s.value(), s.span()));
            }
            Ok(Expr::Path(p)) => def.topic = TopicRoute::Shared(p.path),
            Ok(other) => errors.at(
                other.span(),
                "`topic` is a topic name (`topic = \"orders.v1\"`) or a topic type declared with `#[derive(Topic)]` (`topic = OrderTopic`)",
            ),
            Err(e) => errors.push(e),
        },
        _ => unreachable!("every key in STRUCT_KEYS is handled"),
    }
}

/// Consumes `= value` or `(...)` after an unknown key so parsing goes on.
fn skip_value(meta: &ParseNestedMeta<'_>) {
    if meta.input.peek(syn::Token![=]) {
        let _ = meta.value().and_then(|v| v.parse::<Expr>());
    } else if meta.input.peek(syn::token::Paren) {
        let _ = meta.parse_nested_meta(|inner| {
            skip_value(&inner);
            Ok(())
        });
    }
}

fn value_str(
    meta: &ParseNestedMeta<'_>,
    key: &str,
    errors: &mut Errors,
) -> Option<Spanned<String>> {
    match meta.value().and_then(|v| v.parse::<LitStr>()) {
        Ok(s) => Some(Spanned::new(s.value(), s.span())),
        Err(e) => {
            errors.at(
                e.span(),
                format!("`{key}` takes a string, e.g. `{key} = \"order\"`"),
            );
            None
        }
    }
}

fn value_path(meta: &ParseNestedMeta<'_>, key: &str, errors: &mut Errors) -> Option<Path> {
    let parsed = meta.value().and_then(|v| {
        if v.peek(LitStr) {
            v.parse::<LitStr>()?.parse::<Path>()
        } else {
            v.parse::<Path>()
        }
    });
    match parsed {
        Ok(p) => Some(p),
        Err(e) => {
            let example = if key == "crate" {
                "crate = ::eventbus"
            } else {
                "service = Petstore"
            };
            errors.at(
                e.span(),
                format!("`{key}` takes a path to a type, e.g. `{example}`"),
            );
            None
        }
    }
}

fn parse_field(event: &syn::Ident, field: &syn::Field, errors: &mut Errors) -> Option<FieldDef> {
    let ident = field.ident.clone()?;
    let mut roles = Vec::new();
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("event")) {
        let result = attr.parse_nested_meta(|meta| {
            let key = meta.path.to_token_stream().to_string().replace(' ', "");
            match FIELD_KEYS.iter().find(|(k, _)| *k == key) {
                Some((_, role)) => roles.push(Spanned::new(*role, meta.path.span())),
                None => {
                    let names: Vec<&str> = FIELD_KEYS.iter().map(|(k, _)| *k).collect();
                    let struct_key = STRUCT_KEYS.iter().any(|(k, _)| *k == key);
                    let hint = if struct_key {
                        format!(" `{key}` is a struct attribute: put `#[event({key} = ...)]` above the struct")
                    } else if let Some(s) = did_you_mean(&key, &names) {
                        if let Some((k, _)) = FIELD_KEYS.iter().find(|(k, _)| *k == s) {
                            errors.suggested(k);
                        }
                        format!(" did you mean `{s}`?")
                    } else {
                        format!(" expected one of: {}", names.join(", "))
                    };
                    errors.at(meta.path.span(), format!("unknown field attribute `{key}` on `{event}::{ident}`;{hint}"));
                    skip_value(&meta);
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            errors.push(e);
        }
    }
    let serde_custom = field
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("serde"))
        .any(|a| {
            let text = a.meta.to_token_stream().to_string();
            text.contains("skip") || text.contains("with")
        });
    Some(FieldDef {
        ident,
        ty: field.ty.clone(),
        roles,
        serde_custom,
    })
}

/// The doc comment, joined and trimmed.
pub(crate) fn doc_string(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(s), ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .map(|l| l.strip_prefix(' ').map(str::to_owned).unwrap_or(l))
        .collect();
    lines.join("\n").trim().to_owned()
}

/// Expands `#[derive(<category>Event)]`.
pub fn expand_event(category: Category, input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(e) => return e.to_compile_error(),
    };
    match parse_event(category, &input) {
        (def, None) => crate::emit::event(&def),
        (def, Some(err)) => {
            let mut out = err.to_compile_error();
            out.extend(crate::emit::fallback(&def));
            out
        }
    }
}

/// Expands `#[derive(Service)]`: `#[service(name = "petstore", default)]`.
pub fn expand_service(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(e) => return e.to_compile_error(),
    };
    let (service, errors) = parse_service(&input);
    let mut out = TokenStream::new();
    if let Some(e) = errors {
        out.extend(e.to_compile_error());
    }
    out.extend(crate::emit::service(
        &input.ident,
        &input.vis,
        &service.name.value,
        service.default,
        &service.krate,
    ));
    out
}

/// A service as `#[derive(Service)]` declares it.
#[derive(Debug, Clone)]
pub struct ServiceDecl {
    /// The type's name.
    pub ident: syn::Ident,
    /// The service's name (`#[service(name = ..)]`, else the type's name in snake_case).
    pub name: Spanned<String>,
    /// `#[service(default)]`.
    pub default: bool,
    /// The path of the `eventbus` crate.
    pub krate: Path,
}

/// Parses `#[derive(Service)]`'s input, validating it.
pub fn parse_service(input: &DeriveInput) -> (ServiceDecl, Option<syn::Error>) {
    let mut errors = Errors::default();
    let ident = &input.ident;
    let mut name = Spanned::new(to_snake_case(&ident.to_string()), ident.span());
    let mut is_default = false;
    let mut krate: Path = syn::parse_quote!(::eventbus);
    if !matches!(&input.data, Data::Struct(s) if matches!(s.fields, Fields::Unit))
        || !input.generics.params.is_empty()
    {
        errors.at(
            ident.span(),
            format!("`#[derive(Service)]` applies to a unit struct: write `pub struct {ident};`"),
        );
    }
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("service")) {
        let result = attr.parse_nested_meta(|meta| {
            let key = meta.path.to_token_stream().to_string().replace(' ', "");
            match key.as_str() {
                "name" => {
                    if let Some(n) = value_str(&meta, "name", &mut errors) {
                        name = n;
                    }
                }
                "default" => is_default = true,
                "crate" => {
                    if let Some(p) = value_path(&meta, "crate", &mut errors) {
                        krate = p;
                    }
                }
                _ => {
                    let hint = did_you_mean(&key, &["name", "default", "crate"]).map_or_else(
                        || " expected `name`, `default` or `crate`".to_owned(),
                        |s| format!(" did you mean `{s}`?"),
                    );
                    errors.at(
                        meta.path.span(),
                        format!("unknown attribute `{key}` for `#[derive(Service)]`;{hint}"),
                    );
                    skip_value(&meta);
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            errors.push(e);
        }
    }
    if let Err(e) = model::check_segment("the service name", &name.value) {
        errors.at(name.at.span(), format!("service `{ident}`: {e}"));
    }
    let decl = ServiceDecl {
        ident: ident.clone(),
        name,
        default: is_default,
        krate,
    };
    (decl, errors.finish().err())
}

/// Expands `#[derive(Topic)]`: `#[topic(name = "a.b")]` or `#[topic(service = S, aggregate = "order")]`.
pub fn expand_topic(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(e) => return e.to_compile_error(),
    };
    let (topic, errors) = parse_topic(&input);
    let mut out = TokenStream::new();
    if let Some(e) = errors {
        out.extend(e.to_compile_error());
    }
    out.extend(crate::emit::topic_type(
        &input.ident,
        &topic.route,
        &topic.krate,
    ));
    out
}

/// A topic type as `#[derive(Topic)]` declares it.
#[derive(Debug, Clone)]
pub struct TopicDecl {
    /// The type's name.
    pub ident: syn::Ident,
    /// Its name, fixed or per aggregate.
    pub route: crate::emit::TopicName,
    /// The path of the `eventbus` crate.
    pub krate: Path,
}

/// Parses `#[derive(Topic)]`'s input, validating it.
pub fn parse_topic(input: &DeriveInput) -> (TopicDecl, Option<syn::Error>) {
    let mut errors = Errors::default();
    let ident = &input.ident;
    let mut name: Option<Spanned<String>> = None;
    let mut aggregate: Option<Spanned<String>> = None;
    let mut service = ServiceRef::CrateDefault;
    let mut krate: Path = syn::parse_quote!(::eventbus);
    if !matches!(&input.data, Data::Struct(s) if matches!(s.fields, Fields::Unit))
        || !input.generics.params.is_empty()
    {
        errors.at(
            ident.span(),
            format!("`#[derive(Topic)]` applies to a unit struct: write `pub struct {ident};`"),
        );
    }
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("topic")) {
        let result = attr.parse_nested_meta(|meta| {
            let key = meta.path.to_token_stream().to_string().replace(' ', "");
            match key.as_str() {
                "name" => name = value_str(&meta, "name", &mut errors),
                "aggregate" => aggregate = value_str(&meta, "aggregate", &mut errors),
                "service" => {
                    if let Some(p) = value_path(&meta, "service", &mut errors) {
                        service = ServiceRef::Path(p);
                    }
                }
                "crate" => {
                    if let Some(p) = value_path(&meta, "crate", &mut errors) {
                        krate = p;
                    }
                }
                _ => {
                    let keys = ["name", "aggregate", "service", "crate"];
                    let hint = did_you_mean(&key, &keys).map_or_else(
                        || format!(" expected one of: {}", keys.join(", ")),
                        |s| format!(" did you mean `{s}`?"),
                    );
                    errors.at(
                        meta.path.span(),
                        format!("unknown attribute `{key}` for `#[derive(Topic)]`;{hint}"),
                    );
                    skip_value(&meta);
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            errors.push(e);
        }
    }
    let route = match (&name, &aggregate) {
        (Some(n), None) => {
            if let Err(e) = model::check_topic(&n.value) {
                errors.at(n.at.span(), format!("topic `{ident}`: {e}"));
            }
            crate::emit::TopicName::Fixed(n.value.clone())
        }
        (None, Some(a)) => {
            if let Err(e) = model::check_segment("`aggregate`", &a.value) {
                errors.at(a.at.span(), format!("topic `{ident}`: {e}"));
            }
            crate::emit::TopicName::Aggregate(service, a.value.clone())
        }
        _ => {
            errors.at(
                ident.span(),
                format!(
                    "`#[derive(Topic)]` on `{ident}` needs either `#[topic(aggregate = \"order\")]` (the per-aggregate topic `domain.{{service}}.order`) or `#[topic(name = \"...\")]`, not both"
                ),
            );
            crate::emit::TopicName::Fixed(String::new())
        }
    };
    let decl = TopicDecl {
        ident: ident.clone(),
        route,
        krate,
    };
    (decl, errors.finish().err())
}
