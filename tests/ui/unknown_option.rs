use syncmemo::memoize;

#[memoize(capacity = 10, sizee = 3)]
fn square(x: u64) -> u64 {
    x * x
}

fn main() {}
