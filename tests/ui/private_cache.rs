mod inner {
    #[syncmemo::memoize]
    fn hidden(x: u64) -> u64 {
        x
    }
}

fn main() {
    let _ = inner::hidden_cache();
}
