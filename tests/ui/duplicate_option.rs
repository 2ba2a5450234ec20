use syncmemo::memoize;

#[memoize(capacity = 10, capacity = 20)]
fn square(x: u64) -> u64 {
    x * x
}

fn main() {}
