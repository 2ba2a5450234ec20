use syncmemo::memoize;

fn bytes(_key: &u32, value: &String) -> u64 {
    value.len() as u64
}

#[memoize(capacity = 100, max_weight = 1_000_000, weigher = bytes)]
fn name(id: u32) -> String {
    id.to_string()
}

fn main() {}
