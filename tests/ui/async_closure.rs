use syncmemo::memoize;

#[memoize]
const ASYNC_CLOSURE: () = {
    let _fetch = async |id: u64| id;
};

#[memoize]
const DOUBLE: fn(u64) -> u64 = |x| x * 2;

fn main() {}
