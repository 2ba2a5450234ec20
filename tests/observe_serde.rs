//! Feature `serde`: snapshots of caches (paged, filtered, values hidden), the registry as one
//! JSON document, and warm starts (export, import, and every way an import must refuse).

use syncmemo::memo::__private::MemoOptions;
use syncmemo::memo::{
    registry, MemoHandle, MemoSnapshot, RegistrySnapshot, SnapshotPage, WarmStartError,
};
use syncmemo::{memoize, Memo, MemoStats};

#[memoize]
fn double(x: u32) -> u32 {
    x * 2
}

#[memoize(capacity = 1000, ttl = "1h")]
fn greet(name: &str) -> String {
    format!("hello {name}")
}

/// `greet` again, for the round trip, which clears its cache: tests run in parallel, and a
/// clear of `greet`'s cache could come between another test's calls and its snapshot.
#[memoize(capacity = 1000, ttl = "1h")]
fn welcome(name: &str) -> String {
    format!("hello {name}")
}

fn handle(suffix: &str) -> MemoHandle {
    registry()
        .into_iter()
        .find(|c| c.name().ends_with(suffix))
        .expect("cache registered")
}

#[test]
fn snapshot_pages_cover_every_entry_once() {
    for x in 0..250 {
        double(x);
    }
    let cache = handle("::double");
    let mut seen = Vec::new();
    let mut page = SnapshotPage::first(100);
    let mut sizes = Vec::new();
    loop {
        let snapshot = MemoSnapshot::of(&cache, &page);
        assert!(snapshot.name.ends_with("::double"));
        assert_eq!(snapshot.offset, page.offset);
        sizes.push(snapshot.entries.len());
        for entry in &snapshot.entries {
            let key: u32 = entry.key.parse().unwrap();
            assert_eq!(entry.value, (key * 2).to_string());
            seen.push(key);
        }
        match snapshot.next_offset {
            Some(next) => page.offset = next,
            None => break,
        }
    }
    assert_eq!(sizes, [100, 100, 50]);
    seen.sort_unstable();
    assert_eq!(seen, (0..250).collect::<Vec<_>>());
}

#[test]
fn snapshot_filters_keys_and_hides_values() {
    for name in ["alice", "bob", "<script>alert(1)</script>"] {
        greet(name);
    }
    let cache = handle("::greet");
    let page = SnapshotPage {
        filter: Some("ali".into()),
        hide_values: true,
        ..SnapshotPage::default()
    };
    let snapshot = MemoSnapshot::of(&cache, &page);
    assert_eq!(snapshot.entries.len(), 1);
    assert_eq!(snapshot.entries[0].key, "\"alice\"");
    assert_eq!(snapshot.entries[0].value, "(hidden)");
    assert_eq!(snapshot.config.capacity, Some(1000));
    assert_eq!(
        snapshot.config.ttl,
        Some(std::time::Duration::from_secs(3600))
    );
    // A snapshot survives a JSON round trip.
    let json = serde_json::to_string(&snapshot).unwrap();
    let back: MemoSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snapshot);
}

#[test]
fn registry_is_one_json_document() {
    double(1);
    double(1);
    let doc: serde_json::Value =
        serde_json::to_value(RegistrySnapshot::take(&SnapshotPage::first(5))).unwrap();
    let caches = doc["caches"].as_array().unwrap();
    let entry = caches
        .iter()
        .find(|c| c["name"].as_str().unwrap().ends_with("::double"))
        .unwrap();
    assert!(entry["stats"]["hits"].as_u64().unwrap() >= 1);
    for field in [
        "misses",
        "computations",
        "evictions",
        "expirations",
        "entries",
    ] {
        assert!(entry["stats"][field].is_u64(), "{field}: {entry}");
    }
    assert!(entry["config"]["capacity"].is_null());
    assert!(entry["entries"].as_array().unwrap().len() <= 5);
}

#[test]
fn stats_round_trip() {
    let mut stats = MemoStats::default();
    stats.hits = 7;
    stats.entries = 3;
    let json = serde_json::to_string(&stats).unwrap();
    assert!(json.contains("\"hits\":7"), "{json}");
    assert_eq!(serde_json::from_str::<MemoStats>(&json).unwrap(), stats);
}

fn memo<K, V>(name: &'static str) -> &'static Memo<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Box::leak(Box::new(Memo::new(name, MemoOptions::DEFAULT.into())))
}

fn fill(memo: &'static Memo<String, Vec<u64>>, n: u64) {
    for i in 0..n {
        memo.__call(
            &format!("k{i}"),
            || format!("k{i}"),
            || vec![i; 3],
            |_| true,
        );
    }
}

fn contents<K, V>(memo: &Memo<K, V>) -> Vec<(K, V)>
where
    K: std::hash::Hash + Eq + Clone + Ord + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let mut all = Vec::new();
    memo.range(|k, v| {
        all.push((k.clone(), v.clone()));
        true
    });
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

#[test]
fn export_then_import_restores_every_entry() {
    let source = memo::<String, Vec<u64>>("app::lookup");
    fill(source, 500);
    let mut file = Vec::new();
    assert_eq!(source.export(&mut file).unwrap(), 500);

    let target = memo::<String, Vec<u64>>("app::lookup");
    target.__call("k0", || "k0".into(), || vec![42], |_| true); // already cached: kept
    assert_eq!(target.import(&file[..]).unwrap(), 499);
    assert_eq!(target.len(), 500);
    assert_eq!(target.get("k0"), Some(vec![42]));
    assert_eq!(target.get("k499"), Some(vec![499; 3]));
    let stats = target.stats();
    assert_eq!((stats.hits, stats.computations), (0, 1));
    // Imported values are hits afterwards.
    let v = target.__call("k7", || "k7".into(), || unreachable!(), |_| true);
    assert_eq!(v, vec![7; 3]);
}

#[test]
fn import_respects_capacity() {
    let source = memo::<String, Vec<u64>>("app::bounded");
    fill(source, 300);
    let mut file = Vec::new();
    source.export(&mut file).unwrap();
    let options = MemoOptions {
        capacity: Some(100),
        ..MemoOptions::DEFAULT
    };
    let target: &'static Memo<String, Vec<u64>> =
        Box::leak(Box::new(Memo::new("app::bounded", options.into())));
    target.import(&file[..]).unwrap();
    assert!(target.len() <= 100, "{}", target.len());
    let stats = target.stats();
    assert_eq!(stats.evictions + stats.rejections, 200, "{stats:?}");
}

/// Every refused import leaves the cache exactly as it was.
fn assert_refused(target: &'static Memo<String, Vec<u64>>, input: &[u8]) -> WarmStartError {
    let before = contents(target);
    let err = target.import(input).expect_err("import must refuse");
    assert_eq!(
        contents(target),
        before,
        "cache changed by a refused import"
    );
    assert!(!err.to_string().is_empty());
    err
}

#[test]
fn truncated_files_are_refused() {
    let source = memo::<String, Vec<u64>>("app::trunc");
    fill(source, 20);
    let mut file = Vec::new();
    source.export(&mut file).unwrap();
    let target = memo::<String, Vec<u64>>("app::trunc");
    fill(target, 3);
    for len in 0..file.len() {
        let err = assert_refused(target, &file[..len]);
        assert!(
            matches!(err, WarmStartError::Truncated),
            "prefix of {len} bytes: {err}"
        );
    }
    assert_eq!(target.import(&file[..]).unwrap(), 17);
}

#[test]
fn corrupt_bytes_are_refused() {
    let source = memo::<String, Vec<u64>>("app::corrupt");
    fill(source, 20);
    let mut file = Vec::new();
    source.export(&mut file).unwrap();
    let target = memo::<String, Vec<u64>>("app::corrupt");
    fill(target, 3);
    for i in 0..file.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = file.clone();
            bad[i] ^= flip;
            assert_refused(target, &bad);
        }
    }
    // Trailing garbage.
    let mut longer = file.clone();
    longer.push(0);
    assert!(matches!(
        assert_refused(target, &longer),
        WarmStartError::Corrupt(_)
    ));
    // Not a cache file at all.
    assert!(matches!(
        assert_refused(target, b"{\"caches\": []}"),
        WarmStartError::NotAWarmStartFile
    ));
}

#[test]
fn changed_signature_or_function_is_refused() {
    let source = memo::<String, Vec<u64>>("app::sig");
    fill(source, 5);
    let mut file = Vec::new();
    source.export(&mut file).unwrap();

    let other_value = memo::<String, Vec<u32>>("app::sig");
    let before = other_value.len();
    match other_value.import(&file[..]) {
        Err(WarmStartError::TypeMismatch { expected, found }) => {
            assert!(expected.1.contains("u32") && found.1.contains("u64"));
        }
        other => panic!("expected a type mismatch, got {other:?}"),
    }
    assert_eq!(other_value.len(), before);

    let other_key = memo::<(String, u8), Vec<u64>>("app::sig");
    assert!(matches!(
        other_key.import(&file[..]),
        Err(WarmStartError::TypeMismatch { .. })
    ));

    let other_function = memo::<String, Vec<u64>>("app::other");
    match other_function.import(&file[..]) {
        Err(WarmStartError::WrongFunction { expected, found }) => {
            assert_eq!(
                (expected.as_str(), found.as_str()),
                ("app::other", "app::sig")
            );
        }
        other => panic!("expected a wrong-function error, got {other:?}"),
    }
    assert!(other_function.is_empty());
}

#[test]
fn memoized_function_round_trip() {
    for name in ["x", "y"] {
        welcome(name);
    }
    let mut file = Vec::new();
    let n = welcome_cache().export(&mut file).unwrap();
    assert_eq!(n, 2);
    welcome_cache().clear();
    assert_eq!(welcome_cache().import(&file[..]).unwrap(), n);
    assert_eq!(welcome_cache().get("x").as_deref(), Some("hello x"));
}
