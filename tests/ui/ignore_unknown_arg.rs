use syncmemo::memoize;

#[memoize(ignore(verbose))]
fn square(x: u64) -> u64 {
    x * x
}

fn main() {}
