//! Every argument, through the facade only; `main` runs.
use std::time::Duration;

#[bulwark::test(flavor = "multi_thread", worker_threads = 2, max_tasks = 4, default_deadline = "1h")]
async fn a_test() {}

#[bulwark::test(max_tasks = 2, default_deadline = "2m", start_paused = true)]
async fn a_current_thread_test() -> Result<(), bulwark::task::JoinError> {
    Ok(())
}

/// Not `main`: it may take parameters, and blocks on its body when called.
#[bulwark::main(flavor = "current_thread")]
async fn double(n: u32) -> u32 {
    bulwark::spawn(async move { n * 2 }).await.unwrap()
}

#[bulwark::main(crate = "::bulwark", flavor = "multi_thread", worker_threads = 2, max_tasks = 1_000, default_deadline = "500ms")]
pub async fn main() -> Result<(), bulwark::task::JoinError> {
    assert_eq!(
        bulwark::runtime::Handle::current().default_deadline(),
        Some(Duration::from_millis(500))
    );
    let n = bulwark::spawn(async { 21 }).await?;
    std::thread::spawn(move || assert_eq!(double(n), 42))
        .join()
        .unwrap();
    Ok(())
}
