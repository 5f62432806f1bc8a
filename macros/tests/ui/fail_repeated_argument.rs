//! An argument given twice.
#[bulwark::main(max_tasks = 10, max_tasks = 20)]
async fn main() {}
