//! `main` takes no parameters.
#[bulwark::main]
async fn main(port: u16) {
    let _ = port;
}
