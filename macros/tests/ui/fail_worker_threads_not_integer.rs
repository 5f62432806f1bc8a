//! `worker_threads` given as a string.
#[bulwark::main(worker_threads = "4")]
async fn main() {}
