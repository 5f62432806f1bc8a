//! `start_paused` without `flavor = "current_thread"` (tokio's rule).
#[bulwark::main(start_paused = true)]
async fn main() {}
