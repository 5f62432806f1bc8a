#[bulwark::main(max_tasks = 0)]
async fn main() {}
