//! The YAML events (schemas/) and the derive-declared ones (src/) form one catalog: one schema
//! lock (schemas/eventbus.lock) guards both, and the contracts of both are written to contracts/.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    eventbus_codegen::Config::new()
        .schemas("schemas/")
        .sources("src")
        .contracts_dir(std::path::Path::new(&std::env::var("OUT_DIR")?).join("contracts"))
        .compile()?;
    Ok(())
}
