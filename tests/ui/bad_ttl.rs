use syncmemo::memoize;

#[memoize(ttl = "30 parsecs")]
fn square(x: u64) -> u64 {
    x * x
}

fn main() {}
