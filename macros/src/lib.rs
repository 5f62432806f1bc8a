//! `#[bulwark::main]` and `#[bulwark::test]`: tokio's entry-point attributes
//! for the bulwark runtime. Use them through the facade (`bulwark::main`,
//! `bulwark::test`); the expansion names `::bulwark::runtime::Builder`, so
//! a program needs only the `bulwark` dependency.
//!
//! Each attribute turns an `async fn` into a plain `fn` that builds a
//! runtime and blocks on the function's body, with the builder calls its
//! arguments ask for and nothing else:
//!
//! | argument | builder call | default |
//! |---|---|---|
//! | `flavor = "multi_thread"` | `Builder::new_multi_thread()` | `main` |
//! | `flavor = "current_thread"` | `Builder::new_current_thread()` | `test` |
//! | `worker_threads = N` | `.worker_threads(N)` (multi_thread only) | one per core |
//! | `max_tasks = N` | `.max_tasks(N)` | 1 000 000 |
//! | `default_deadline = "5s"` | `.default_deadline(Some(Duration::from_secs(5)))` | none |
//! | `start_paused = true` | `.start_paused(true)` (current_thread only) | off |
//! | `crate = "path"` | `path::runtime::Builder` | `::bulwark` |
//!
//! `default_deadline` takes a whole number and a unit: `"500ms"`, `"5s"`,
//! `"2m"` or `"1h"`. Mistakes (a function that is not `async`, an unknown
//! argument, a bad value, parameters on `main` or a test) are compile errors
//! pointing at what is wrong.
//!
//! # Examples
//!
//! ```
//! #[bulwark::main(worker_threads = 2, max_tasks = 10_000, default_deadline = "30s")]
//! async fn main() {
//!     let answer = bulwark::spawn(async { 6 * 7 }).await.unwrap();
//!     assert_eq!(answer, 42);
//! }
//! ```
//!
//! is exactly
//!
//! ```
//! fn main() {
//!     let body = async {
//!         let answer = bulwark::spawn(async { 6 * 7 }).await.unwrap();
//!         assert_eq!(answer, 42);
//!     };
//!     bulwark::runtime::Builder::new_multi_thread()
//!         .worker_threads(2)
//!         .max_tasks(10_000)
//!         .default_deadline(Some(std::time::Duration::from_secs(30)))
//!         .build()
//!         .expect("Failed building the Runtime")
//!         .block_on(body)
//! }
//! ```

// The crate docs show what `#[bulwark::main] async fn main` expands to,
// which is a `fn main` written out.
#![allow(clippy::needless_doctest_main)]

use proc_macro::TokenStream;

mod entry;

/// Runs an `async fn` on a bulwark runtime: the function becomes a plain
/// `fn` that builds the runtime and blocks on its body, as `#[tokio::main]`.
///
/// The runtime is the multi-thread one unless `flavor = "current_thread"`.
/// Arguments, all optional, each one builder call: `flavor`,
/// `worker_threads = N`, `max_tasks = N`, `default_deadline = "5s"` (or
/// `"500ms"`, `"2m"`, `"1h"`), `start_paused = true` (with
/// `flavor = "current_thread"`), and `crate = "path"` for a renamed
/// `bulwark` dependency. See the [crate docs](crate) for the table.
///
/// The function keeps its attributes, visibility, name and return type, so
/// `main` may return a `Result`. `main` takes no parameters; another
/// function under this attribute may (it blocks on its body when called).
///
/// # Panics
///
/// The generated function panics if the runtime cannot be built (a thread
/// cannot be started), with "Failed building the Runtime".
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// #[bulwark::main(max_tasks = 100, default_deadline = "2s")]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     // Every task spawned without a deadline of its own gets 2 s.
///     let quick = bulwark::spawn(async { "done" });
///     assert_eq!(quick.await?, "done");
///     assert_eq!(
///         bulwark::runtime::Handle::current().default_deadline(),
///         Some(Duration::from_secs(2))
///     );
///     Ok(())
/// }
/// ```
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::expand(entry::Kind::Main, args.into(), item.into()).into()
}

/// Runs an `async fn` test on a fresh bulwark runtime: `#[tokio::test]` for
/// bulwark. The function becomes a `#[test]` that builds the runtime and
/// blocks on its body.
///
/// The runtime is the current-thread one (one worker) unless
/// `flavor = "multi_thread"`, as in tokio. It takes the arguments of
/// [`main`](macro@main): `flavor`, `worker_threads = N` (multi_thread only),
/// `max_tasks = N`, `default_deadline = "5s"`, `start_paused = true`
/// (current_thread only) and `crate = "path"`. The test takes no
/// parameters and keeps its other attributes (`#[should_panic]`,
/// `#[ignore]`), its return type (a `Result` works) and its name.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// #[bulwark::test(max_tasks = 1)]
/// async fn a_second_task_is_rejected() {
///     let first = bulwark::spawn(std::future::pending::<()>());
///     let second = bulwark::spawn(async {});
///     assert!(second.await.unwrap_err().is_rejected());
///     first.abort();
/// }
///
/// #[bulwark::test(flavor = "multi_thread", worker_threads = 2, default_deadline = "50ms")]
/// async fn a_task_past_the_default_deadline_is_dropped() {
///     let slow = bulwark::spawn(bulwark::time::sleep(Duration::from_secs(10)));
///     assert!(slow.await.unwrap_err().is_deadline_exceeded());
/// }
///
/// // Paused time: the clock jumps to the next timer while nothing can run.
/// #[bulwark::test(start_paused = true)]
/// async fn an_hour_passes_at_once() {
///     let real = std::time::Instant::now();
///     bulwark::time::sleep(Duration::from_secs(3600)).await;
///     assert!(real.elapsed() < Duration::from_secs(60));
/// }
/// ```
///
/// (A doc example only compiles a `#[test]`; the facade's
/// `tests/macros.rs` runs tests like these.)
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::expand(entry::Kind::Test, args.into(), item.into()).into()
}
