use std::future::Future;
use std::pin::Pin;

use syncmemo::memoize;

#[memoize]
fn fetch(id: u64) -> Pin<Box<dyn Future<Output = u64> + Send>> {
    Box::pin(async move { id })
}

fn main() {}
