//! The watchdog's thread (`bulwark-watchdog`) lives as long as its runtime,
//! one per runtime, and none with `Watchdog::off()`. A file of its own: it
//! counts the process's threads, which other tests' runtimes would change.

mod common;

use bulwark::runtime::Watchdog;
use common::{builder, threads_named, wait_until, within};

/// Linux keeps 15 bytes of a thread's name.
const NAME: &str = "bulwark-watchdo";

#[test]
fn one_watchdog_thread_per_runtime_for_as_long_as_it_lives() {
    within(60, "watchdog threads to come and go", || {
        assert_eq!(threads_named(NAME).len(), 0);
        let rt = builder(1).build().expect("runtime");
        wait_until(5, "the watchdog thread to start", || {
            threads_named(NAME).len() == 1
        });
        let mut b = builder(1);
        b.watchdog(Watchdog::off());
        let quiet = b.build().expect("runtime without a watchdog");
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(
            threads_named(NAME).len(),
            1,
            "no thread for Watchdog::off()"
        );
        drop(quiet);
        drop(rt);
        wait_until(5, "the watchdog thread to exit with its runtime", || {
            threads_named(NAME).is_empty()
        });
    });
}
