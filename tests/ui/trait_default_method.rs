trait Area {
    fn side(&self) -> u64;

    #[syncmemo::memoize]
    fn area(&self) -> u64 {
        self.side() * self.side()
    }
}

fn main() {}
