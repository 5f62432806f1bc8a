//! A ceiling of zero tasks, which the runtime refuses.
#[bulwark::main(max_tasks = 0)]
async fn main() {}
