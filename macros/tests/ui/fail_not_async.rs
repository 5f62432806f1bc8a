//! The attribute on a function that is not `async`.
#[bulwark::main]
fn main() {}
