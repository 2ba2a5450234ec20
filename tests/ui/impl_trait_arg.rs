use syncmemo::memoize;

#[memoize]
fn total(items: impl IntoIterator<Item = u8>) -> u64 {
    items.into_iter().map(u64::from).sum()
}

fn main() {}
