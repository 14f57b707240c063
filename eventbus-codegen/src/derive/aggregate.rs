//! `#[derive(Aggregate)]`: an event-sourced aggregate and the enum of its events.
//!
//! ```text
//! #[derive(Aggregate, Default)]
//! #[aggregate(
//!     service = Petstore,                    // default: the crate's default service
//!     name = "order",                        // default: the type's name in snake_case
//!     events(OrderPlaced, OrderPaid),        // the domain events it is rebuilt from
//!     upcast(OrderPlacedV1 => OrderPlaced),  // older stored versions, converted with `From`
//!     event_enum = OrderEvent,               // default: `{Type}Event`
//!     derive(Clone, PartialEq),              // more derives for the enum (it always has `Debug`)
//!     snapshot(every = 100, version = 1),    // snapshots (needs Serialize + Deserialize); default: none
//! )]
//! pub struct Order { .. }
//! ```
//!
//! The expansion: the enum (one variant per event, named as the event type) with `From` for
//! each; `Aggregate` (its `apply` calls `Apply<E>::on` per variant); `AggregateEvent` for the
//! enum (event type, version, stream id, the envelope, decoding by type and version, upcasts);
//! `EventOf<Aggregate>` for each event. The checks, each at the event it concerns: a domain event
//! of the aggregate's service (`DomainEventOf`, a trait bound with its own message), of this
//! aggregate (a `const` assertion whose message names the event's aggregate), an upcast between
//! two versions of one event type, older to newer.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned as _;
use syn::{Data, DeriveInput, Ident, Path, Token};

use super::{Errors, skip_value, value_path, value_str};
use crate::model::{self, ServiceRef, Spanned};
use crate::naming::{did_you_mean, to_snake_case};

/// `Old => New`.
struct Upcast {
    old: Path,
    new: Path,
}

impl Parse for Upcast {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let old = input.parse()?;
        input.parse::<Token![=>]>()?;
        let new = input.parse()?;
        Ok(Upcast { old, new })
    }
}

const KEYS: &[&str] = &[
    "service",
    "name",
    "events",
    "upcast",
    "event_enum",
    "derive",
    "snapshot",
    "crate",
];

/// An aggregate as `#[derive(Aggregate)]` declares it.
struct AggregateDecl {
    service: ServiceRef,
    name: Spanned<String>,
    events: Vec<Path>,
    upcasts: Vec<Upcast>,
    event_enum: Ident,
    derives: Vec<Path>,
    /// `snapshot(every = N, version = V)`.
    snapshot: Option<(syn::LitInt, syn::LitInt)>,
    krate: Path,
}

fn last_ident(path: &Path) -> Ident {
    path.segments
        .last()
        .map_or_else(|| format_ident!("Event"), |s| s.ident.clone())
}

fn parse(input: &DeriveInput, errors: &mut Errors) -> AggregateDecl {
    let ident = &input.ident;
    let mut decl = AggregateDecl {
        service: ServiceRef::CrateDefault,
        name: Spanned::new(to_snake_case(&ident.to_string()), ident.span()),
        events: Vec::new(),
        upcasts: Vec::new(),
        event_enum: format_ident!("{}Event", ident),
        derives: Vec::new(),
        snapshot: None,
        krate: syn::parse_quote!(::eventbus),
    };
    if !matches!(input.data, Data::Struct(_)) || !input.generics.params.is_empty() {
        errors.at(
            ident.span(),
            format!(
                "`#[derive(Aggregate)]` applies to a struct without type parameters: the state `{ident}` is rebuilt from its events"
            ),
        );
    }
    for attr in input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("aggregate"))
    {
        let result = attr.parse_nested_meta(|meta| {
            let key = meta.path.to_token_stream().to_string().replace(' ', "");
            match key.as_str() {
                "service" => {
                    if let Some(p) = value_path(&meta, "service", errors) {
                        decl.service = ServiceRef::Path(p);
                    }
                }
                "crate" => {
                    if let Some(p) = value_path(&meta, "crate", errors) {
                        decl.krate = p;
                    }
                }
                "name" => {
                    if let Some(n) = value_str(&meta, "name", errors) {
                        decl.name = n;
                    }
                }
                "event_enum" => match meta.value().and_then(|v| v.parse::<Ident>()) {
                    Ok(i) => decl.event_enum = i,
                    Err(e) => errors.at(
                        e.span(),
                        "`event_enum` takes the name of the enum to generate, e.g. `event_enum = OrderEvent`",
                    ),
                },
                "events" | "derive" => {
                    let mut paths = Vec::new();
                    let parsed = meta.parse_nested_meta(|inner| {
                        paths.push(inner.path.clone());
                        Ok(())
                    });
                    if let Err(e) = parsed {
                        errors.at(
                            e.span(),
                            format!(
                                "`{key}` takes a list of types, e.g. `{key}({})`",
                                if key == "events" { "OrderPlaced, OrderPaid" } else { "Clone, PartialEq" }
                            ),
                        );
                    }
                    if key == "events" {
                        decl.events.extend(paths);
                    } else {
                        decl.derives.extend(paths);
                    }
                }
                "snapshot" => {
                    let (mut every, mut version) = (None, None);
                    let parsed = meta.parse_nested_meta(|inner| {
                        let lit: syn::LitInt = inner.value()?.parse()?;
                        if inner.path.is_ident("every") && lit.base10_parse::<u64>()? > 0 {
                            every = Some(lit);
                        } else if inner.path.is_ident("version") {
                            lit.base10_parse::<u32>()?;
                            version = Some(lit);
                        } else {
                            return Err(inner.error("unexpected"));
                        }
                        Ok(())
                    });
                    match (parsed, every, version) {
                        (Ok(()), Some(every), Some(version)) => {
                            decl.snapshot = Some((every, version));
                        }
                        (result, ..) => errors.at(
                            result.err().map_or_else(|| meta.path.span(), |e| e.span()),
                            "`snapshot` takes how many events apart the snapshots are (at least 1) and the snapshot schema version, e.g. `snapshot(every = 100, version = 1)`",
                        ),
                    }
                }
                "upcast" => {
                    let parsed = (|| -> syn::Result<Punctuated<Upcast, Token![,]>> {
                        let content;
                        syn::parenthesized!(content in meta.input);
                        Punctuated::parse_terminated(&content)
                    })();
                    match parsed {
                        Ok(list) => decl.upcasts.extend(list),
                        Err(e) => errors.at(
                            e.span(),
                            "`upcast` takes pairs of an old and a new version of one event, e.g. `upcast(OrderPlacedV1 => OrderPlaced)`",
                        ),
                    }
                }
                _ => {
                    let hint = did_you_mean(&key, KEYS).map_or_else(
                        || format!(" expected one of: {}", KEYS.join(", ")),
                        |s| format!(" did you mean `{s}`?"),
                    );
                    errors.at(
                        meta.path.span(),
                        format!("unknown attribute `{key}` for `#[derive(Aggregate)]`;{hint}"),
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
    if let Err(e) = model::check_segment("the aggregate name", &decl.name.value) {
        errors.at(decl.name.at.span(), format!("aggregate `{ident}`: {e}"));
    }
    if decl.events.is_empty() {
        errors.at(
            ident.span(),
            format!(
                "aggregate `{ident}` lists no events: name the domain events it is rebuilt from, `#[aggregate(events(OrderPlaced, OrderPaid))]`"
            ),
        );
    }
    let mut seen: Vec<Ident> = Vec::new();
    for event in &decl.events {
        let variant = last_ident(event);
        if seen.contains(&variant) {
            errors.at(
                event.span(),
                format!("aggregate `{ident}` lists `{variant}` twice: list each event once"),
            );
        }
        seen.push(variant);
    }
    for upcast in &decl.upcasts {
        let new = last_ident(&upcast.new);
        if !seen.contains(&new) {
            errors.at(
                upcast.new.span(),
                format!(
                    "`upcast({} => {new})` converts to `{new}`, which is not one of `{ident}`'s events: list it in `events(...)` (an old version converts to the current one)",
                    last_ident(&upcast.old)
                ),
            );
        }
    }
    decl
}

/// Expands `#[derive(Aggregate)]`.
pub fn expand_aggregate(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(e) => return e.to_compile_error(),
    };
    let mut errors = Errors::default();
    let decl = parse(&input, &mut errors);
    match errors.finish() {
        Ok(()) => emit(&input, &decl),
        Err(e) => e.to_compile_error(),
    }
}

fn emit(input: &DeriveInput, decl: &AggregateDecl) -> TokenStream {
    let krate = &decl.krate;
    let eb = quote!(#krate::__private);
    let st = quote!(#eb::store);
    let ident = &input.ident;
    let vis = &input.vis;
    let name = &decl.name.value;
    let enum_ident = &decl.event_enum;
    let events = &decl.events;
    let variants: Vec<Ident> = events.iter().map(last_ident).collect();
    let derives = &decl.derives;
    let service = crate::emit::service_path(&decl.service);
    let default_service = match decl.service {
        ServiceRef::CrateDefault => {
            crate::emit::default_service(krate, (ident, vis), true, TokenStream::new())
        }
        ServiceRef::Path(_) => TokenStream::new(),
    };

    let snapshot = match &decl.snapshot {
        None => TokenStream::new(),
        Some((every, version)) => quote! {
            const SNAPSHOT: ::core::option::Option<#st::SnapshotPolicy> =
                ::core::option::Option::Some(#st::SnapshotPolicy { every: #every, version: #version });

            fn __snapshot(&self) -> ::core::option::Option<::core::result::Result<::std::vec::Vec<u8>, #st::JsonError>> {
                #st::snapshot_encode(self)
            }

            fn __restore(payload: &[u8]) -> ::core::option::Option<::core::result::Result<Self, #st::JsonError>> {
                #st::snapshot_decode(payload)
            }
        },
    };

    let enum_doc = format!(
        " The events of the aggregate [`{ident}`] (`{name}`): one variant per event it is rebuilt from (generated by `#[derive(Aggregate)]`)."
    );
    let variant_docs = variants
        .iter()
        .map(|v| format!(" A [`{v}`]."))
        .collect::<Vec<_>>();

    // Each event: a domain event of the service (a bound with its own message), of this
    // aggregate (a const assertion naming the event's aggregate).
    let checks = events.iter().zip(&variants).map(|(event, variant)| {
        let head = format!(
            "`{variant}` is a domain event of the aggregate `"
        );
        let tail = format!(
            "`, so the aggregate `{ident}` (`{name}`) cannot be rebuilt from it: list only events declared with `#[event(aggregate = \"{name}\")]` in `#[aggregate(events(...))]` of `{ident}`; to react to `{variant}`, consume it and run a command of `{ident}`"
        );
        quote_spanned! {event.span()=>
            const _: () = #st::assert_domain_event_of::<__Service, #ident, #event>();
            const _: () = {
                const __MESSAGE: &str = #eb::concat_const!(#head, <#event as #eb::DomainEvent>::AGGREGATE, #tail);
                if !#eb::str_eq(<#event as #eb::DomainEvent>::AGGREGATE, #name) {
                    ::core::panic!("{}", __MESSAGE);
                }
            };
        }
    });

    let upcast_checks = decl.upcasts.iter().map(|u| {
        let (old, new) = (&u.old, &u.new);
        let (o, n) = (last_ident(old), last_ident(new));
        let same = format!(
            "`upcast({o} => {n})`: `{o}` and `{n}` are not versions of one event type (their CloudEvents types differ): declare `{o}` with the `name` (and `aggregate`, `service`) of `{n}` and an older `version`"
        );
        let older = format!(
            "`upcast({o} => {n})`: `{o}` is not an older version than `{n}`: an upcast converts a stored old version to the current one"
        );
        quote_spanned! {old.span()=>
            const _: () = ::core::assert!(#eb::str_eq(<#old as #eb::Event>::EVENT_TYPE, <#new as #eb::Event>::EVENT_TYPE), #same);
            const _: () = ::core::assert!(<#old as #eb::Event>::VERSION < <#new as #eb::Event>::VERSION, #older);
        }
    });

    let applies = events.iter().zip(&variants).map(|(event, variant)| {
        quote_spanned! {event.span()=>
            #enum_ident::#variant(event) => <Self as #st::Apply<#event>>::on(self, event),
        }
    });

    let decode_current = events.iter().zip(&variants).map(|(event, variant)| {
        quote! {
            if event_type == <#event as #eb::Event>::EVENT_TYPE
                && schema_version == <#event as #eb::Event>::VERSION
            {
                return ::core::option::Option::Some(#st::decode::<#event>(payload).map(#enum_ident::#variant));
            }
        }
    });
    let decode_old = decl.upcasts.iter().map(|u| {
        let (old, new) = (&u.old, &u.new);
        let variant = last_ident(new);
        quote_spanned! {new.span()=>
            if event_type == <#old as #eb::Event>::EVENT_TYPE
                && schema_version == <#old as #eb::Event>::VERSION
            {
                return ::core::option::Option::Some(
                    #st::decode::<#old>(payload)
                        .map(|old| #enum_ident::#variant(<#new as ::core::convert::From<#old>>::from(old))),
                );
            }
        }
    });

    quote! {
        #[doc = #enum_doc]
        #[derive(Debug #(, #derives)*)]
        // Variants are named as the events, which often share the aggregate's prefix.
        #[allow(clippy::enum_variant_names)]
        #vis enum #enum_ident {
            #(
                #[doc = #variant_docs]
                #variants(#events),
            )*
        }

        #(
            impl ::core::convert::From<#events> for #enum_ident {
                fn from(event: #events) -> Self {
                    #enum_ident::#variants(event)
                }
            }
        )*

        const _: () = {
            #default_service
            type __Service = #service;

            impl #st::Aggregate for #ident {
                type Service = __Service;
                const TYPE: &'static str = #name;
                type Event = #enum_ident;
                #snapshot

                fn apply(&mut self, event: &#enum_ident) {
                    match event {
                        #(#applies)*
                    }
                }
            }

            impl #st::AggregateEvent for #enum_ident {
                type Service = __Service;

                fn event_type(&self) -> &'static str {
                    match self {
                        #(#enum_ident::#variants(_) => <#events as #eb::Event>::EVENT_TYPE,)*
                    }
                }

                fn schema_version(&self) -> u32 {
                    match self {
                        #(#enum_ident::#variants(_) => <#events as #eb::Event>::VERSION,)*
                    }
                }

                fn stream_id(&self) -> ::core::option::Option<#eb::String> {
                    match self {
                        #(#enum_ident::#variants(event) => #eb::Event::subject(event),)*
                    }
                }

                fn __typed(
                    &self,
                    context: &#st::EventContext,
                ) -> ::core::result::Result<#st::Typed, #st::PublishError> {
                    match self {
                        #(#enum_ident::#variants(event) => #st::typed(event, context),)*
                    }
                }

                fn __decode(
                    event_type: &str,
                    schema_version: u32,
                    payload: &[u8],
                ) -> ::core::option::Option<::core::result::Result<Self, #st::JsonError>> {
                    #(#decode_current)*
                    #(#decode_old)*
                    ::core::option::Option::None
                }
            }

            #(
                impl #st::EventOf<#ident> for #events {
                    fn into_event(self) -> #enum_ident {
                        #enum_ident::#variants(self)
                    }
                }
            )*

            #(#checks)*
            #(#upcast_checks)*
        };
    }
}
