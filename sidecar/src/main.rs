//! The `berth` binary (skeleton; the CLI lands in the next commit).
#![forbid(unsafe_code)]

fn main() {
    println!("berth {}", env!("CARGO_PKG_VERSION"));
}
