//! The attributes' compile errors, pinned: each `tests/ui/fail_*.rs` must
//! fail with exactly its `.stderr` (trybuild), and `tests/ui/pass.rs` must
//! compile and run.
//!
//! To update the `.stderr` files after changing a message:
//! `TRYBUILD=overwrite cargo test -p bulwark-macros --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass.rs");
    t.compile_fail("tests/ui/fail_*.rs");
}
