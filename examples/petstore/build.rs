//! The payments service's events come from `schemas/payments.yaml`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    eventbus_codegen::Config::new()
        .schemas("../../schemas/")
        .compile()?;
    Ok(())
}
