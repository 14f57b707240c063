//! Compile-time behaviour: misrouting and bad declarations fail to compile with messages that name
//! the event and the fix (`ui/fail`), and valid declarations compile and run (`ui/pass`).
//!
//! Snapshots are for the installed toolchain. After a deliberate change to a message, refresh them
//! with `TRYBUILD=overwrite cargo test -p eventbus-tests --test ui` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/fail/*.rs");
    t.pass("ui/pass/*.rs");
}
