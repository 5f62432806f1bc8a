//! Zero workers, which the runtime refuses.
#[bulwark::main(worker_threads = 0)]
async fn main() {}
