//! `#[bulwark::test]` mistakes; each is its own error.

#[bulwark::test]
fn not_async() {}

#[bulwark::test]
async fn takes_parameters(n: u32) {
    let _ = n;
}

#[bulwark::test(worker_threads = 2)]
async fn workers_on_current_thread() {}

#[bulwark::test(flavor = "multi_thread", start_paused = true)]
async fn paused_on_multi_thread() {}

#[bulwark::test(default_deadline = "0s")]
async fn zero_deadline() {}

#[bulwark::test(default_deadline = 5)]
async fn deadline_not_a_string() {}

#[bulwark::test(start_paused = "yes")]
async fn start_paused_not_bool() {}

#[bulwark::test]
#[test]
async fn second_test_attribute() {}

#[bulwark::test(multi_thread)]
async fn bare_word() {}

fn main() {}
