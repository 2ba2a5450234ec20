use syncmemo::memoize;

#[memoize(max_weight = 1_000_000)]
fn name(id: u32) -> String {
    id.to_string()
}

fn main() {}
