//! Compiles the example and fixture schemas, so tests (and UI tests) use real generated types.
//! A schema mistake is reported as cargo errors, each at its `file:line:column`.

fn main() {
    eventbus_codegen::Config::new()
        .schemas("../schemas/")
        .compile_or_report();
}
