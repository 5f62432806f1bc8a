#[bulwark::main]
async fn main() {
    unimplemented!();
}
