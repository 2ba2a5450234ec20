use std::future::Future;

use syncmemo::memoize;

#[memoize]
fn fetch(id: u64) -> impl Future<Output = u64> {
    async move { id }
}

fn main() {}
