#[bulwark::main(default_deadline = "5 seconds")]
async fn main() {}
