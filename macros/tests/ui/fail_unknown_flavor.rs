#[bulwark::main(flavor = "local")]
async fn main() {}
