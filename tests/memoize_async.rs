use std::sync::atomic::{AtomicUsize, Ordering};
use syncmemo::memoize;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone, PartialEq)]
struct Profile {
    name: String,
}

#[memoize(ttl = "60s", capacity = 100)]
async fn fetch_profile(user: &str) -> Result<Profile, String> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    let n: u32 = "5".parse().map_err(|_| "bad".to_string())?;
    tokio::time::sleep(std::time::Duration::from_millis(n as u64)).await;
    Ok(Profile {
        name: user.to_string(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn smoke() {
    let h = tokio::spawn(fetch_profile("ana"));
    assert_eq!(h.await.unwrap().unwrap().name, "ana");
    assert_eq!(fetch_profile("ana").await.unwrap().name, "ana");
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    fetch_profile_cache().invalidate(&"ana".to_string());
}
