//! `include_events!`: brings the Rust that `eventbus_codegen::Config::compile()` generated from
//! YAML schemas (in `build.rs`) into a module.

/// Includes the events generated for one service schema by `eventbus_codegen::Config` in
/// `build.rs`: `eventbus::include_events!("payments")` includes `$OUT_DIR/payments.rs` (the name is
/// the schema's `service:`).
///
/// The generated file declares the service type, its per-aggregate topic types, the record and
/// enum types the schema uses, and the events, each carrying the derives a hand-written event
/// would. Include each service in its own module when two services share imported types:
///
/// ```ignore
/// pub mod payments {
///     eventbus::include_events!("payments");
/// }
/// ```
#[macro_export]
macro_rules! include_events {
    ($service:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $service, ".rs"));
    };
}
