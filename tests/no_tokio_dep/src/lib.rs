//! A user crate with bulwark and no tokio dependency of its own: it
//! compiles only if `bulwark::select!`, `join!`, `try_join!`, `pin!` and the
//! `bulwark::io` traits resolve through bulwark. tokio's macros name their
//! helpers `$crate::...`, which points at tokio through the crate that
//! defines them, not through the user's dependencies; this crate is the
//! check that it stays so. Its tests run in `cargo test --workspace`.
//!
//! It sits under `tests/` as a fixture, not a test target (Cargo takes only
//! `tests/*.rs` and `tests/*/main.rs` as those).

/// Runs each re-exported macro once on a bulwark runtime; returns what they
/// computed.
///
/// # Examples
///
/// ```
/// assert_eq!(bulwark_no_tokio_dep::run_macros(), 12);
/// ```
pub fn run_macros() -> u32 {
    use bulwark::io::{AsyncReadExt, AsyncWriteExt};

    let rt = bulwark::Runtime::new().expect("build the runtime");
    rt.block_on(async {
        let (a, b) = bulwark::join!(async { 1u32 }, async { 2u32 });
        let (c, d) = bulwark::try_join!(async { Ok::<_, ()>(3u32) }, async { Ok(4u32) })
            .expect("both are Ok");
        let fut = async { 1u32 };
        bulwark::pin!(fut);
        let e = bulwark::select! {
            v = &mut fut => v,
            _ = bulwark::time::sleep(std::time::Duration::from_secs(30)) => 0,
        };
        let (mut x, mut y) = bulwark::io::duplex(8);
        x.write_all(&[1]).await.expect("write to the pipe");
        let mut byte = [0u8];
        y.read_exact(&mut byte).await.expect("read from the pipe");
        a + b + c + d + e + u32::from(byte[0])
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_macros_resolve_and_run_without_a_tokio_dependency() {
        assert_eq!(super::run_macros(), 12);
    }
}
