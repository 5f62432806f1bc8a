//! An argument neither tokio nor bulwark has.
#[bulwark::main(threads = 4)]
async fn main() {}
