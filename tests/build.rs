//! Compiles the example and fixture schemas, so tests (and UI tests) use real generated types.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    eventbus_codegen::Config::new()
        .schemas("../schemas/")
        .compile()?;
    Ok(())
}
