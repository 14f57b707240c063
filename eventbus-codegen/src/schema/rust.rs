//! The Rust emitter for schemas: a service → struct declarations carrying the derives.
//!
//! Like prost-build, this emits declarations, not expansions: `#[derive(::eventbus::DomainEvent)]`
//! and its `#[event(...)]` attributes, so the derive expands a YAML event exactly as it expands a
//! hand-written one.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};
use syn::Path;

use super::{EventSchema, FieldSchema, Routing, ServiceSchema, Ty, TypeDecl, TypeKind};
use crate::model::{Category, FieldRole};
use crate::naming::to_snake_case;

/// What the emitter needs besides the schema.
#[derive(Debug, Clone)]
pub struct RustOptions {
    /// The path of the `eventbus` crate in generated code (`::eventbus` by default).
    pub runtime: Path,
    /// Extra attributes per type: `(type name or "." for every type, attribute)`.
    pub type_attributes: Vec<(String, TokenStream)>,
}

impl Default for RustOptions {
    fn default() -> Self {
        RustOptions {
            runtime: syn::parse_quote!(::eventbus),
            type_attributes: Vec::new(),
        }
    }
}

fn ident(name: &str) -> Ident {
    match name.strip_prefix("r#") {
        Some(raw) => Ident::new_raw(raw, Span::call_site()),
        None => Ident::new(name, Span::call_site()),
    }
}

fn docs(text: &str) -> TokenStream {
    let lines = text.trim().lines().map(|l| format!(" {l}"));
    quote!(#(#[doc = #lines])*)
}

impl RustOptions {
    fn is_default_runtime(&self) -> bool {
        let rt = &self.runtime;
        quote!(#rt).to_string() == quote!(::eventbus).to_string()
    }

    fn extra(&self, ty: &str) -> TokenStream {
        let attrs = self
            .type_attributes
            .iter()
            .filter(|(p, _)| p == "." || p == ty)
            .map(|(_, a)| a);
        quote!(#(#attrs)*)
    }

    fn serde(&self) -> (TokenStream, TokenStream) {
        let rt = &self.runtime;
        let path = format!(
            "{}::__private::serde",
            quote!(#rt).to_string().replace(' ', "")
        );
        (
            quote!(#rt::__private::serde::Serialize, #rt::__private::serde::Deserialize),
            quote!(#[serde(crate = #path)]),
        )
    }

    /// The Rust type of a schema type.
    pub fn ty(&self, ty: &Ty) -> TokenStream {
        let rt = &self.runtime;
        match ty {
            Ty::String => quote!(::std::string::String),
            Ty::Bool => quote!(bool),
            Ty::Int(i) => {
                let ident = syn::Ident::new(i.name(), proc_macro2::Span::call_site());
                quote!(#ident)
            }
            Ty::F64 => quote!(f64),
            Ty::Decimal => quote!(#rt::types::Decimal),
            Ty::Uuid => quote!(#rt::types::Uuid),
            Ty::Timestamp => quote!(#rt::types::Timestamp),
            Ty::Date => quote!(#rt::types::Date),
            Ty::Bytes => quote!(#rt::types::Bytes),
            Ty::Json => quote!(#rt::types::Json),
            Ty::Named(n) => {
                let i = ident(n);
                quote!(#i)
            }
            Ty::List(t) => {
                let t = self.ty(t);
                quote!(::std::vec::Vec<#t>)
            }
            Ty::Map(t) => {
                let t = self.ty(t);
                quote!(::std::collections::BTreeMap<::std::string::String, #t>)
            }
        }
    }

    fn field(&self, f: &FieldSchema, roles: &[FieldRole]) -> TokenStream {
        let name = ident(&f.ident);
        let mut doc = f.description.clone();
        if let Some(note) = &f.deprecated {
            let note = if note.is_empty() {
                String::new()
            } else {
                format!(": {note}")
            };
            doc = format!("{doc}\n\nDeprecated{note}").trim().to_owned();
        }
        let doc = docs(&doc);
        // `#[deprecated]`: code that names the field (a struct literal, a read) is warned.
        let deprecated = f.deprecated.as_ref().map(|note| {
            if note.is_empty() {
                quote!(#[deprecated])
            } else {
                quote!(#[deprecated(note = #note)])
            }
        });
        let role_attrs = roles.iter().map(|r| {
            let w = format_ident!("{}", r.word());
            quote!(#[event(#w)])
        });
        let bare = f.ident.strip_prefix("r#").unwrap_or(&f.ident);
        let rename = (f.wire != bare).then(|| {
            let w = &f.wire;
            quote!(#[serde(rename = #w)])
        });
        let ty = self.ty(&f.ty);
        if f.optional {
            quote! {
                #doc
                #deprecated
                #(#role_attrs)*
                #rename
                #[serde(default, skip_serializing_if = "::core::option::Option::is_none")]
                pub #name: ::core::option::Option<#ty>,
            }
        } else {
            quote! {
                #doc
                #deprecated
                #(#role_attrs)*
                #rename
                pub #name: #ty,
            }
        }
    }

    fn type_decl(&self, t: &TypeDecl) -> TokenStream {
        let name = ident(&t.ident);
        let doc = docs(&t.description);
        let (ser, serde_crate) = self.serde();
        let extra = self.extra(&t.ident);
        match &t.kind {
            TypeKind::Record(fields) => {
                let fields = fields.iter().map(|f| self.field(f, &[]));
                quote! {
                    #doc
                    #[derive(Debug, Clone, PartialEq, #ser)]
                    #serde_crate
                    #extra
                    pub struct #name {
                        #(#fields)*
                    }
                }
            }
            TypeKind::Enum(variants) => {
                let variants = variants.iter().map(|v| {
                    let i = ident(&v.ident);
                    let w = &v.wire;
                    let doc = format!(" `\"{w}\"` on the wire.");
                    quote!(#[doc = #doc] #[serde(rename = #w)] #i,)
                });
                quote! {
                    #doc
                    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, #ser)]
                    #serde_crate
                    #extra
                    // Variants are named as on the wire (`EUR`), not re-cased.
                    #[allow(clippy::upper_case_acronyms)]
                    pub enum #name {
                        #(#variants)*
                    }
                }
            }
        }
    }

    /// The declaration of one event.
    pub fn event(&self, service: &ServiceSchema, e: &EventSchema) -> TokenStream {
        let rt = &self.runtime;
        let name = ident(&e.ident);
        let doc = docs(&e.description);
        let derive = format_ident!("{}", e.category.derive_name());
        let (ser, serde_crate) = self.serde();
        let svc = self.service_path(service);
        let mut args = Vec::new();
        if e.category == Category::Integration {
            args.push(quote!(source = #svc));
        } else {
            args.push(quote!(service = #svc));
        }
        if e.name != to_snake_case(&e.ident) {
            let n = &e.name;
            args.push(quote!(name = #n));
        }
        for (key, value) in [
            ("aggregate", &e.aggregate),
            ("target", &e.target),
            ("audit_category", &e.audit_category),
            ("channel", &e.channel),
            ("kind", &e.kind),
        ] {
            if let Some(v) = value {
                let k = format_ident!("{key}");
                args.push(quote!(#k = #v));
            }
        }
        let version = proc_macro2::Literal::u32_unsuffixed(e.version);
        args.push(quote!(version = #version));
        if let Some(t) = &e.topic_name {
            args.push(quote!(topic = #t));
        } else if let Some(t) = &e.topic_type {
            let t = ident(t);
            args.push(quote!(topic = #t));
        }
        if !self.is_default_runtime() {
            args.push(quote!(crate = #rt));
        }
        let fields = e.fields.iter().map(|f| {
            let roles: Vec<FieldRole> = e
                .roles
                .iter()
                .filter(|(_, n)| n == &f.ident)
                .map(|(r, _)| *r)
                .collect();
            self.field(f, &roles)
        });
        let extra = self.extra(&e.ident);
        quote! {
            #doc
            #[derive(Debug, Clone, PartialEq, #rt::#derive, #ser)]
            #serde_crate
            #[event(#(#args),*)]
            #extra
            pub struct #name {
                #(#fields)*
            }
        }
    }

    /// The service type events name: the generated one, or `service_type:`'s path.
    fn service_path(&self, s: &ServiceSchema) -> TokenStream {
        match s.rust_type.as_deref().map(syn::parse_str::<syn::Path>) {
            Some(Ok(path)) => quote!(#path),
            _ => {
                let name = ident(&s.ident);
                quote!(#name)
            }
        }
    }

    /// Every declaration of a service: its type (unless `service_type:` names an existing one),
    /// its per-aggregate topics, its types, its events.
    pub fn service(&self, s: &ServiceSchema) -> TokenStream {
        let rt = &self.runtime;
        let name = self.service_path(s);
        let own_type = s.rust_type.is_none();
        let service_name = &s.name;
        let doc = docs(if s.description.is_empty() {
            "The service."
        } else {
            &s.description
        });
        let default = s.default.then(|| quote!(, default));
        let krate = (!self.is_default_runtime()).then(|| quote!(, crate = #rt));
        let topics = s
            .aggregates
            .iter()
            .filter(|a| a.routing == Routing::PerAggregate)
            .map(|a| {
                let t = ident(&a.topic_ident);
                let agg = &a.name;
                let doc = docs(&format!(
                    "Every event of the `{agg}` aggregate, in order per {agg} id: `domain.{service_name}.{agg}`."
                ));
                quote! {
                    #doc
                    #[derive(Debug, Clone, Copy, Default, #rt::Topic)]
                    #[topic(service = #name, aggregate = #agg #krate)]
                    pub struct #t;
                }
            });
        let types = s.types.iter().map(|t| self.type_decl(t));
        let events = s.events.iter().map(|e| self.event(s, e));
        let declaration = own_type.then(|| {
            quote! {
                #doc
                #[derive(Debug, Clone, Copy, Default, #rt::Service)]
                #[service(name = #service_name #default #krate)]
                pub struct #name;
            }
        });
        quote! {
            #declaration

            #(#topics)*
            #(#types)*
            #(#events)*
        }
    }

    /// The generated file of a service: `@generated` header, then the formatted declarations.
    pub fn service_file(&self, s: &ServiceSchema) -> String {
        format!(
            "// @generated by eventbus-codegen from `{}`. Do not edit: change the schema.\n\n{}",
            s.file.display(),
            crate::format(self.service(s))
        )
    }
}
