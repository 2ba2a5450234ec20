use std::collections::HashMap;
use syncmemo::memoize;

#[memoize]
fn total(prices: &HashMap<String, u64>) -> u64 {
    prices.values().sum()
}

fn main() {}
