#![deny(dead_code)]

#[syncmemo::memoize]
fn never_called(x: u64) -> u64 {
    x * 2
}

fn main() {}
