use syncmemo::memoize;

#[memoize]
const fn square(x: u64) -> u64 {
    x * x
}

fn main() {}
