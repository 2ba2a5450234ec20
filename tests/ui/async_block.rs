use std::future::Future;
use std::pin::Pin;

use syncmemo::memoize;

#[memoize]
static FETCH: fn(u64) -> Pin<Box<dyn Future<Output = u64> + Send>> =
    |id| Box::pin(async move { id });

#[memoize]
static READY: std::sync::LazyLock<Pin<Box<dyn Future<Output = u64> + Send + Sync>>> =
    std::sync::LazyLock::new(|| Box::pin(async { 7 }));

fn main() {}
