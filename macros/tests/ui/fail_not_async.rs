#[bulwark::main]
fn main() {}
