#[tokio::main]
async fn main() {
    unimplemented!();
}
