//! The YAML events (schemas/) and the derive-declared ones (src/) form one catalog: one schema
//! lock (schemas/eventbus.lock) guards both, and the contracts of both are written to contracts/.

fn main() {
    let out = std::env::var("OUT_DIR").unwrap_or_default();
    eventbus_codegen::Config::new()
        .schemas("schemas/")
        .sources("src")
        .contracts_dir(std::path::Path::new(&out).join("contracts"))
        .compile_or_report();
}
