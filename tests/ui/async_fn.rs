use syncmemo::memoize;

#[memoize]
async fn fetch(id: u64) -> u64 {
    id
}

fn main() {}
