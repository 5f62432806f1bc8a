//! A `default_deadline` not in the forms "500ms", "5s", "2m", "1h".
#[bulwark::main(default_deadline = "5 seconds")]
async fn main() {}
