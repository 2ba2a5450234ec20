use syncmemo::memoize;

#[memoize(cache_err)]
fn square(x: u64) -> u64 {
    x * x
}

fn main() {}
