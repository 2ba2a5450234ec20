use syncmemo::memoize;

#[memoize]
struct Cache;

fn main() {}
