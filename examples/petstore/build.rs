//! The payments service's events come from `schemas/payments.yaml`; the derive-declared events
//! of `src/` join them in the petstore's catalog, so the schema lock (`eventbus.lock` here)
//! guards both: a breaking change to either without a version bump fails this build.
//! A schema mistake is reported as cargo errors, each at its `file:line:column`.

fn main() {
    eventbus_codegen::Config::new()
        .schemas("../../schemas/")
        .sources("src")
        .lock_file("eventbus.lock")
        .compile_or_report();
}
