use syncmemo::memoize;

// Takes the value only: a weigher takes the key too.
fn bytes(value: &str) -> u64 {
    value.len() as u64
}

#[memoize(max_weight = 1_000_000, weigher = bytes)]
fn name(id: u32) -> String {
    id.to_string()
}

// Returns a `usize`: a weight is a `u64`.
fn by_text(text: &str, value: &usize) -> usize {
    text.len() + value
}

#[memoize(max_weight = 1_000_000, weigher = by_text)]
fn count(text: &str) -> usize {
    text.len()
}

// Takes a key of another type.
fn by_id(id: &u64, _value: &String) -> u64 {
    *id
}

#[memoize(max_weight = 1_000_000, weigher = by_id)]
fn label(id: u32) -> String {
    id.to_string()
}

fn main() {}
