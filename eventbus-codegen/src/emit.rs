//! The Rust emitter: [`EventDef`] → tokens.
//!
//! Generated code reaches the runtime only through `eventbus::__private`, so a user's crate needs
//! no other dependency. Names that depend on the service (topics, the CloudEvents type, the outbox
//! statements) are concatenated at compile time from the service type's `NAME` constant.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::{Path, Visibility};

use crate::model::{Category, EventDef, KeySource, ServiceRef, TopicRoute};

/// A piece of a name built at compile time.
enum Part {
    Lit(String),
    ServiceName,
    Const(TokenStream),
}

/// Joins `parts` into one `concat_const!` expression, merging adjacent literals.
fn concat(krate: &Path, parts: Vec<Part>) -> TokenStream {
    let mut merged: Vec<Part> = Vec::new();
    for part in parts {
        match (merged.last_mut(), part) {
            (Some(Part::Lit(prev)), Part::Lit(next)) => prev.push_str(&next),
            (_, part) => merged.push(part),
        }
    }
    if let [Part::Lit(only)] = merged.as_slice() {
        return quote!(#only);
    }
    let items = merged.iter().map(|p| match p {
        Part::Lit(s) => quote!(#s),
        Part::ServiceName => quote!(<__Service as #krate::__private::Service>::NAME),
        Part::Const(t) => t.clone(),
    });
    quote!(#krate::__private::concat_const!(#(#items),*))
}

/// `[Some("domain"), None, Some("order")]` → `"domain." SERVICE ".order"`.
fn dotted(parts: Vec<Option<String>>) -> Vec<Part> {
    let mut out = Vec::new();
    for (i, p) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push(Part::Lit(".".to_owned()));
        }
        out.push(p.map_or(Part::ServiceName, Part::Lit));
    }
    out
}

pub(crate) fn service_path(def_service: &ServiceRef) -> TokenStream {
    match def_service {
        ServiceRef::Path(p) => quote!(#p),
        ServiceRef::CrateDefault => quote!(__EventbusDefault),
    }
}

/// Resolves the crate's default service without naming a path that may not exist: the crate
/// root's `__EventbusDefaultService` (declared by `#[derive(Service)] #[service(default)]`) when
/// there is one, else a stand-in declared here. An inner block's glob import of the crate root
/// shadows an outer block's glob import of the stand-in, so the lookup falls back only when the
/// crate root has none. Declares the type alias `__EventbusDefault`; `owner` (an event or topic
/// type) is named in the message when it needs the default service and there is none. `claim`
/// goes where the crate root's names are in scope (for `__EventbusClaims`, see [`event`]).
///
/// `vis` is the owner's: the event's impls name the slot, and the slot's impl names the service,
/// so this asks of the default service what naming it directly did (to be as visible as the
/// event).
pub(crate) fn default_service(
    krate: &Path,
    owner: (&Ident, &Visibility),
    needed: bool,
    claim: TokenStream,
) -> TokenStream {
    let (owner, vis) = owner;
    let eb = quote!(#krate::__private);
    // The slot only where the default service is the owner's: an event of another service must
    // not ask anything of the default one (it may be less visible than the event).
    let (slot, slot_impl, resolved) = if needed {
        (
            quote! {
                #[doc(hidden)]
                #vis struct __EventbusDefaultSlot;
            },
            quote! {
                impl #eb::DefaultServiceSlot for __EventbusDefaultSlot {
                    type Service = __EventbusDefaultService;
                }
            },
            quote_spanned! {owner.span()=>
                type __EventbusDefault = <__EventbusDefaultSlot as #eb::DefaultServiceSlot>::Service;
                const _: () = #eb::assert_default_service::<__EventbusDefault, #owner>();
            },
        )
    } else {
        (TokenStream::new(), TokenStream::new(), TokenStream::new())
    };
    quote! {
        #[doc(hidden)]
        mod __eventbus_no_default {
            pub enum __EventbusDefaultService {}
            pub enum __EventbusClaims {}
        }
        impl #eb::Service for __eventbus_no_default::__EventbusDefaultService {
            const NAME: &'static str = "";
        }
        #slot
        const _: () = {
            #[allow(unused_imports)]
            use __eventbus_no_default::*;
            const _: () = {
                #[allow(unused_imports)]
                use crate::*;
                #slot_impl
                #claim
            };
        };
        #resolved
    }
}

/// FNV-1a, 128 bits: the key of an event type in [`event`]'s uniqueness claim.
fn fnv1a_128(text: &str) -> u128 {
    let mut hash: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for byte in text.bytes() {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    hash
}

/// The name of the topic type an event declares for itself.
pub fn own_topic_ident(event: &Ident) -> Ident {
    format_ident!("{}Topic", event)
}

/// The expansion of a valid event.
pub fn event(def: &EventDef) -> TokenStream {
    let krate = &def.krate;
    let eb = quote!(#krate::__private);
    let ident = &def.ident;
    let vis = &def.vis;
    let service = service_path(&def.service);
    let category = format_ident!("{}", def.category.marker());
    let category_trait = format_ident!("{}", def.category.derive_name());
    let name = &def.name.value;
    let version = proc_macro2::Literal::u32_unsuffixed(def.version.value);
    let description = &def.description;

    // Topic: its type, its name, and the check that a shared topic fits.
    let mut topic_decl = TokenStream::new();
    let mut topic_impl = TokenStream::new();
    let mut topic_check = TokenStream::new();
    let topic_ty: TokenStream;
    let topic_value: TokenStream;
    match &def.topic {
        TopicRoute::Default | TopicRoute::Name(_) => {
            let topic_ident = own_topic_ident(ident);
            topic_ty = quote!(#topic_ident);
            topic_value = match &def.topic {
                TopicRoute::Name(n) => concat(krate, vec![Part::Lit(n.value.clone())]),
                _ => concat(krate, dotted(def.default_topic_parts())),
            };
            let shown = match &def.topic {
                TopicRoute::Name(n) => n.value.clone(),
                _ => def
                    .default_topic_parts()
                    .into_iter()
                    .map(|p| p.unwrap_or_else(|| "{service}".to_owned()))
                    .collect::<Vec<_>>()
                    .join("."),
            };
            let doc = format!(" The topic of [`{ident}`] events: `{shown}`.");
            topic_decl = quote! {
                #[doc = #doc]
                #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
                #vis struct #topic_ident;
            };
            let too_long = format!(
                "the topic of event `{ident}` is longer than 249 characters, Kafka's limit: shorten the service, aggregate or event name, or set `#[event(topic = \"...\")]`"
            );
            topic_impl = quote! {
                impl #eb::Topic for #topic_ident {
                    const NAME: &'static str = __TOPIC;
                }
                const _: () = ::core::assert!(__TOPIC.len() <= #eb::MAX_TOPIC_LEN, #too_long);
            };
        }
        TopicRoute::Shared(path) => {
            topic_ty = quote!(#path);
            topic_value = quote!(<#path as #eb::Topic>::NAME);
            if def.category == Category::Domain {
                let aggregate = def
                    .aggregate
                    .as_ref()
                    .map(|a| a.value.clone())
                    .unwrap_or_default();
                let expected = concat(
                    krate,
                    dotted(vec![Some("domain".into()), None, Some(aggregate.clone())]),
                );
                let path_str = quote!(#path).to_string().replace(' ', "");
                let msg = format!(
                    "domain event `{ident}` (aggregate `{aggregate}`) is routed to `{path_str}`, which is not its aggregate's topic `domain.{{{{service}}}}.{aggregate}`: a per-aggregate topic carries the events of one aggregate of one service; declare `#[derive(Topic)] #[topic(aggregate = \"{aggregate}\")]` and route to it"
                );
                topic_check = quote! {
                    const _: () = ::core::assert!(#eb::str_eq(__TOPIC, #expected), #msg);
                };
            }
        }
    }

    let event_type = concat(krate, dotted(def.event_type_parts()));

    // The outbox INSERT of this type, from the one definition of the table (`eventbus-core`):
    // what the type knows (topic, event type, version) written in, the rest bound.
    let insert = |dialect: eventbus_core::outbox::Dialect| {
        use eventbus_core::outbox::Piece;
        let parts = eventbus_core::outbox::insert_generated(dialect, crate::OUTBOX_TABLE)
            .into_iter()
            .map(|piece| match piece {
                Piece::Text(text) => Part::Lit(text),
                Piece::Topic => Part::Const(quote!(__TOPIC)),
                Piece::EventType => Part::Const(quote!(__EVENT_TYPE)),
                Piece::Version => Part::Lit(def.version.value.to_string()),
            })
            .collect();
        concat(krate, parts)
    };
    let insert_pg = insert(eventbus_core::outbox::Dialect::Postgres);
    let insert_sqlite = insert(eventbus_core::outbox::Dialect::Sqlite);

    // Key fields are read through `KeyField<Event>`, spanned at the field's type, so a type that
    // cannot be a key is reported once, there, naming the event.
    let field_key = |field_ident: &Ident| {
        let ty = def
            .fields
            .iter()
            .find(|f| &f.ident == field_ident)
            .map(|f| &f.ty);
        let span = ty.map_or_else(proc_macro2::Span::call_site, |t| t.span());
        quote_spanned!(span=> <#ty as #eb::KeyField<#ident>>::field_key(&self.#field_ident))
    };
    let (partition_key, key_field) = match def.key_source() {
        KeySource::Field(f) => {
            let name = f.to_string();
            let name = name.strip_prefix("r#").unwrap_or(&name).to_owned();
            (
                field_key(&f),
                quote!(const KEY_FIELD: ::core::option::Option<&'static str> = ::core::option::Option::Some(#name);),
            )
        }
        KeySource::None => (quote!(::core::option::Option::None), TokenStream::new()),
    };

    let (category_items, subject) = match def.category {
        Category::Domain => {
            let aggregate = def
                .aggregate
                .as_ref()
                .map(|a| a.value.clone())
                .unwrap_or_default();
            let id = def
                .field_with(crate::model::FieldRole::AggregateId)
                .map(|f| f.ident.clone());
            let subject = id.map(|id| {
                let value = field_key(&id);
                quote! {
                    fn subject(&self) -> ::core::option::Option<#eb::String> {
                        #value
                    }
                }
            });
            (quote!(const AGGREGATE: &'static str = #aggregate;), subject)
        }
        Category::Integration => {
            let target = def
                .target
                .as_ref()
                .map(|t| t.value.clone())
                .unwrap_or_default();
            (quote!(const TARGET: &'static str = #target;), None)
        }
        Category::Audit => {
            let c = def
                .audit_category
                .as_ref()
                .map(|t| t.value.clone())
                .unwrap_or_default();
            (quote!(const AUDIT_CATEGORY: &'static str = #c;), None)
        }
        Category::System => (TokenStream::new(), None),
        Category::Notification => {
            let channel = def
                .channel
                .as_ref()
                .map(|t| t.value.clone())
                .unwrap_or_default();
            let kind = def
                .kind
                .as_ref()
                .map(|t| t.value.clone())
                .unwrap_or_default();
            (
                quote!(const CHANNEL: &'static str = #channel; const KIND: &'static str = #kind;),
                None,
            )
        }
    };

    // Ownership: an event is published only by its service (an integration event by its source).
    let owned = quote!(impl #eb::OwnedBy<__Service> for #ident {});
    // A domain event may rebuild any aggregate of its service (`#[derive(Aggregate)]` checks the
    // aggregate's name).
    let domain_of = (def.category == Category::Domain).then(|| {
        quote!(impl<__A: ?::core::marker::Sized> #eb::DomainEventOf<__Service, __A> for #ident {})
    });

    // One Rust type per event type and version: a claim on the crate's `__EventbusClaims`
    // (declared `pub(crate)` with its default service, so never another crate's, even through a
    // glob import; this expansion's stand-in when the crate has none), keyed on the service, the
    // event type and the version. A second type claiming the same is a conflicting
    // implementation, reported at its name.
    let unique_key = def
        .event_type_parts()
        .into_iter()
        .map(|p| p.unwrap_or_else(|| "{service}".to_owned()))
        .collect::<Vec<_>>()
        .join(".");
    let unique_hash = proc_macro2::Literal::u128_unsuffixed(fnv1a_128(&unique_key));
    let unique = quote_spanned! {def.name.at.span()=>
        impl #eb::OneRustTypePerEventTypeAndVersion<__Service, #unique_hash, #version> for __EventbusClaims {}
    };
    let default_service = default_service(
        krate,
        (ident, vis),
        matches!(def.service, ServiceRef::CrateDefault),
        unique,
    );

    let field_checks = def.fields.iter().filter(|f| !f.serde_custom).map(|f| {
        let ty = &f.ty;
        quote_spanned!(ty.span()=> #eb::assert_payload_field::<#ident, #ty>();)
    });

    // Routed to every topic type where the event's own is that topic: a wrong one is reported
    // by `RoutedHere`, naming the topic the event is on. Spanned at the struct, not the derive.
    let routed = quote_spanned! {ident.span()=>
        impl<__T: #eb::Topic> #eb::RoutedTo<__T> for #ident
        where
            #topic_ty: #eb::RoutedHere<__T, #ident>,
        {
        }
    };

    let doc_topic = format!(" The topic [`{ident}`] is published to (AD-004).");
    let doc_name = format!(" The name of [`{ident}`] on the wire.");
    let doc_type = format!(" The CloudEvents `type` of [`{ident}`].");
    let doc_version = format!(" The schema version of [`{ident}`].");
    let doc_publish = format!(
        " Publishes this event with `bus` (the `publish_{}` of its category).",
        def.category.as_str()
    );
    let publish_method = format_ident!("publish_{}", def.category.as_str());

    quote! {
        #topic_decl

        const _: () = {
            #default_service
            type __Service = #service;
            const __TOPIC: &str = #topic_value;
            const __EVENT_TYPE: &str = #event_type;

            #topic_impl
            #topic_check

            impl #eb::Event for #ident {
                type Category = #eb::category::#category;
                type Service = __Service;
                type Topic = #topic_ty;
                const NAME: &'static str = #name;
                const EVENT_TYPE: &'static str = __EVENT_TYPE;
                const VERSION: u32 = #version;
                const DESCRIPTION: &'static str = #description;
                const TOPIC: &'static str = __TOPIC;
                const OUTBOX_INSERT_POSTGRES: &'static str = #insert_pg;
                const OUTBOX_INSERT_SQLITE: &'static str = #insert_sqlite;
                #key_field

                fn partition_key(&self) -> ::core::option::Option<#eb::String> {
                    #partition_key
                }

                #subject
            }

            impl #eb::#category_trait for #ident {
                #category_items
            }

            #owned
            #domain_of
            #routed

            #[allow(dead_code)]
            fn __assert_fields() {
                #(#field_checks)*
            }

            // The values themselves, not `<Self as Event>::..`: a payload without serde is then
            // reported once, at the `Event` impl.
            impl #ident {
                #[doc = #doc_topic]
                #vis const TOPIC: &'static str = __TOPIC;
                #[doc = #doc_name]
                #vis const NAME: &'static str = #name;
                #[doc = #doc_type]
                #vis const EVENT_TYPE: &'static str = __EVENT_TYPE;
                #[doc = #doc_version]
                #vis const VERSION: u32 = #version;

                #[doc = #doc_publish]
                #vis fn publish<'bus, __S: #eb::Service>(
                    &self,
                    bus: &'bus #eb::EventBus<__S>,
                ) -> #eb::BoxFuture<'bus, ::core::result::Result<#eb::Receipt, #eb::PublishError>>
                where
                    Self: #eb::OwnedBy<__S>,
                {
                    bus.#publish_method(self)
                }
            }
        };
    }
}

/// What an invalid event expands to besides its errors: impls with placeholder values, so code
/// that uses the event still type-checks and the user sees only the real error.
pub fn fallback(def: &EventDef) -> TokenStream {
    let krate = &def.krate;
    let eb = quote!(#krate::__private);
    let ident = &def.ident;
    let category = format_ident!("{}", def.category.marker());
    let category_trait = format_ident!("{}", def.category.derive_name());
    let category_items = match def.category {
        Category::Domain => quote!(
            const AGGREGATE: &'static str = "";
        ),
        Category::Integration => quote!(
            const TARGET: &'static str = "";
        ),
        Category::Audit => quote!(
            const AUDIT_CATEGORY: &'static str = "";
        ),
        Category::System => TokenStream::new(),
        Category::Notification => quote!(
            const CHANNEL: &'static str = "";
            const KIND: &'static str = "";
        ),
    };
    quote! {
        const _: () = {
            impl #eb::Event for #ident {
                type Category = #eb::category::#category;
                type Service = #eb::InvalidEvent;
                type Topic = #eb::InvalidEvent;
                const NAME: &'static str = "";
                const EVENT_TYPE: &'static str = "";
                const VERSION: u32 = 0;
                const DESCRIPTION: &'static str = "";
                const TOPIC: &'static str = "";
                const OUTBOX_INSERT_POSTGRES: &'static str = "";
                const OUTBOX_INSERT_SQLITE: &'static str = "";
                fn partition_key(&self) -> ::core::option::Option<#eb::String> {
                    ::core::option::Option::None
                }
            }
            impl #eb::#category_trait for #ident {
                #category_items
            }
            impl<__S: #eb::Service> #eb::OwnedBy<__S> for #ident {}
            impl<__S: #eb::Service, __A: ?::core::marker::Sized> #eb::DomainEventOf<__S, __A> for #ident {}
            impl<__T: #eb::Topic> #eb::RoutedTo<__T> for #ident {}
        };
    }
}

/// The expansion of `#[derive(Service)]`.
pub fn service(
    ident: &Ident,
    vis: &Visibility,
    name: &str,
    is_default: bool,
    krate: &Path,
) -> TokenStream {
    let eb = quote!(#krate::__private);
    let default_alias = is_default.then(|| {
        quote! {
            #[doc(hidden)]
            #[allow(unreachable_pub)]
            #vis type __EventbusDefaultService = #ident;
            impl<__E: ?::core::marker::Sized> #eb::CrateDefaultService<__E> for #ident {}
            /// What this crate's event derives claim their event type on (one Rust type each).
            #[doc(hidden)]
            #[allow(dead_code)]
            pub(crate) enum __EventbusClaims {}
        }
    });
    quote! {
        impl #eb::Service for #ident {
            const NAME: &'static str = #name;
        }
        #default_alias
    }
}

/// How a `#[derive(Topic)]` type names its topic.
#[derive(Debug, Clone)]
pub enum TopicName {
    /// `#[topic(name = "...")]`.
    Fixed(String),
    /// `#[topic(aggregate = "order")]`: `domain.{service}.order`.
    Aggregate(ServiceRef, String),
}

/// The expansion of `#[derive(Topic)]`.
pub fn topic_type(ident: &Ident, name: &TopicName, krate: &Path) -> TokenStream {
    let eb = quote!(#krate::__private);
    let (service_ty, value, default) = match name {
        TopicName::Fixed(n) => (quote!(()), quote!(#n), TokenStream::new()),
        TopicName::Aggregate(service, aggregate) => (
            service_path(service),
            concat(
                krate,
                dotted(vec![Some("domain".into()), None, Some(aggregate.clone())]),
            ),
            match service {
                ServiceRef::CrateDefault => default_service(
                    krate,
                    (ident, &Visibility::Inherited),
                    true,
                    TokenStream::new(),
                ),
                ServiceRef::Path(_) => TokenStream::new(),
            },
        ),
    };
    let too_long = format!(
        "the topic `{ident}` is longer than 249 characters, Kafka's limit: shorten the service or aggregate name"
    );
    quote! {
        const _: () = {
            #default
            #[allow(dead_code)]
            type __Service = #service_ty;
            impl #eb::Topic for #ident {
                const NAME: &'static str = #value;
            }
            const _: () = ::core::assert!(<#ident as #eb::Topic>::NAME.len() <= #eb::MAX_TOPIC_LEN, #too_long);
        };
    }
}
