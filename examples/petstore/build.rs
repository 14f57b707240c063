//! The payments service's events come from `schemas/payments.yaml`; the derive-declared events
//! of `src/` join them in the petstore's catalog, so the schema lock (`eventbus.lock` here)
//! guards both: a breaking change to either without a version bump fails this build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    eventbus_codegen::Config::new()
        .schemas("../../schemas/")
        .sources("src")
        .lock_file("eventbus.lock")
        .compile()?;
    Ok(())
}
