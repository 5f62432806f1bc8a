//! A runtime flavor that does not exist.
#[bulwark::main(flavor = "local")]
async fn main() {}
