use syncmemo::memoize;

#[memoize]
fn push(items: &mut Vec<u8>) -> usize {
    items.push(1);
    items.len()
}

fn main() {}
