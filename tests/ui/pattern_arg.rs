use syncmemo::memoize;

#[memoize]
fn add((a, b): (u8, u8)) -> u8 {
    a + b
}

fn main() {}
