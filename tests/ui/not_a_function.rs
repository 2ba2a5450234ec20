use syncmap::memoize;

#[memoize]
struct Cache;

fn main() {}
