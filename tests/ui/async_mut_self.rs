use syncmemo::memoize;

#[derive(Clone, Hash, PartialEq, Eq)]
struct Counter(u64);

impl Counter {
    #[memoize]
    async fn bump(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

fn main() {}
