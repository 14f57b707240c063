//! The eventbus event model and code generator.
//!
//! One intermediate representation ([`model::EventDef`]) with its validation, front ends that
//! fill it (the derive input today; YAML schemas for `build.rs`), and emitters that turn it into
//! Rust. `eventbus-derive` is a thin shell over [`derive`](mod@derive); generated code only names
//! `eventbus::__private`, so users depend on `eventbus` alone.
//!
//! Users do not call this crate directly: they write `#[derive(eventbus::DomainEvent)]`.

pub mod check;
pub mod derive;
pub mod emit;
pub mod model;
pub mod naming;

pub use model::Category;

/// The default outbox table (its one definition: `eventbus-core`).
pub const OUTBOX_TABLE: &str = eventbus_core::outbox::DEFAULT_TABLE;

/// Formats generated tokens as a Rust file with prettyplease (for `build.rs` output and golden
/// tests). Returns the tokens' text unformatted when they are not a valid file, so the caller
/// sees the compiler's error rather than ours.
#[cfg(feature = "format")]
pub fn format(tokens: proc_macro2::TokenStream) -> String {
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(_) => tokens.to_string(),
    }
}

#[cfg(feature = "yaml")]
pub mod schema;

#[cfg(feature = "yaml")]
mod config;
#[cfg(feature = "yaml")]
pub use config::Config;
#[cfg(feature = "yaml")]
pub use schema::lock::LockMode;
#[cfg(feature = "yaml")]
pub mod contracts;
#[cfg(feature = "yaml")]
pub mod scan;
#[cfg(feature = "yaml")]
pub mod sql;
