use syncmemo::memoize;

#[memoize(shared, tier_errors = "return")]
fn double(x: u32) -> u32 {
    x * 2
}

fn main() {}
