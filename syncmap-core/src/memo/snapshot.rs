//! Serializable views of the caches (feature `serde`): [`MemoSnapshot`] of one cache, one page
//! of its entries at a time, and [`RegistrySnapshot`] of every cache, for JSON endpoints and
//! debugging dumps.

use serde::{Deserialize, Serialize};

use super::{registry, MemoConfig, MemoHandle, MemoStats, MissRatioCurve};

/// Which entries a [`MemoSnapshot`] holds: at most `limit` of those whose key's `Debug` text
/// contains `filter`, after skipping the first `offset` of them (in the map's iteration order,
/// which is stable while the cache does not change).
///
/// ```
/// use syncmap_core::memo::SnapshotPage;
///
/// let page = SnapshotPage { offset: 50, limit: 50, filter: Some("user".into()), ..Default::default() };
/// assert!(!page.hide_values);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotPage {
    /// Matching entries to skip.
    pub offset: usize,
    /// At most this many entries (100 by default). A snapshot's memory is bounded by it,
    /// however large the cache.
    pub limit: usize,
    /// Keep only the entries whose key's `Debug` text contains this (case-sensitive).
    pub filter: Option<String>,
    /// Replace every value's text by `"(hidden)"`, for caches holding sensitive data.
    pub hide_values: bool,
}

impl Default for SnapshotPage {
    fn default() -> Self {
        SnapshotPage {
            offset: 0,
            limit: 100,
            filter: None,
            hide_values: false,
        }
    }
}

impl SnapshotPage {
    /// The first `limit` entries, no filter.
    ///
    /// ```
    /// use syncmap_core::memo::SnapshotPage;
    ///
    /// assert_eq!(SnapshotPage::first(10).limit, 10);
    /// ```
    pub fn first(limit: usize) -> Self {
        SnapshotPage {
            limit,
            ..Self::default()
        }
    }
}

/// One cached entry, as the `Debug` text of its key and value (`<not Debug>` for a type without
/// `Debug`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// `Debug` of the key.
    pub key: String,
    /// `Debug` of the value, or `"(hidden)"`.
    pub value: String,
}

/// A serializable view of one cache: its name, configuration, statistics and one page of its
/// entries (see [`SnapshotPage`]), taken from a [`MemoHandle`].
///
/// Not atomic: while other threads call the function, the entries and the statistics are read
/// at slightly different moments.
///
/// ```
/// use syncmap_core::memo::{registry, MemoSnapshot, SnapshotPage};
///
/// // With `#[memoize] fn double(x: u32) -> u32`, after 250 distinct calls:
/// for cache in registry().iter().filter(|c| c.name().ends_with("::double")) {
///     let first = MemoSnapshot::of(cache, &SnapshotPage::first(100));
///     assert!(first.entries.len() <= 100);
///     if let Some(next) = first.next_offset {
///         let page = SnapshotPage { offset: next, ..SnapshotPage::first(100) };
///         let _second = MemoSnapshot::of(cache, &page);
///     }
///     println!("{}", serde_json::to_string(&first).unwrap());
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MemoSnapshot {
    /// The memoized function's path.
    pub name: String,
    /// Capacity and TTL.
    pub config: MemoConfig,
    /// The counters and the number of entries.
    pub stats: MemoStats,
    /// The page's offset (the `offset` asked for).
    pub offset: usize,
    /// The page's entries.
    pub entries: Vec<SnapshotEntry>,
    /// The offset of the next page, or `None` if no entry matched past this page.
    pub next_offset: Option<usize>,
    /// The estimated miss-ratio curve, if on (absent from the JSON when off; see
    /// [`Memo::enable_miss_ratio_curve`](super::Memo::enable_miss_ratio_curve)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miss_ratio_curve: Option<MissRatioCurve>,
}

impl MemoSnapshot {
    /// The snapshot of `cache` with the entries `page` selects. Visits the entries up to the
    /// page's end (plus one, to know whether another page follows) and keeps at most
    /// `page.limit` of them: memory stays proportional to the page, time to `offset + limit`
    /// matching entries.
    ///
    /// ```
    /// use syncmap_core::memo::{registry, MemoSnapshot, SnapshotPage};
    ///
    /// for cache in registry() {
    ///     let snapshot = MemoSnapshot::of(&cache, &SnapshotPage::first(20));
    ///     println!("{}: {} entries shown", snapshot.name, snapshot.entries.len());
    /// }
    /// ```
    pub fn of(cache: &MemoHandle, page: &SnapshotPage) -> MemoSnapshot {
        let mut entries = Vec::with_capacity(page.limit.min(1024));
        let mut matched = 0usize;
        let mut next_offset = None;
        let end = page.offset.saturating_add(page.limit);
        let visit = |key: &str, value: &str| {
            if let Some(filter) = &page.filter {
                if !key.contains(filter.as_str()) {
                    return true;
                }
            }
            if matched >= end {
                next_offset = Some(end);
                return false;
            }
            if matched >= page.offset {
                entries.push(SnapshotEntry {
                    key: key.to_string(),
                    value: if page.hide_values {
                        "(hidden)".to_string()
                    } else {
                        value.to_string()
                    },
                });
            }
            matched += 1;
            true
        };
        if page.limit > 0 {
            cache.for_each_entry(visit);
        }
        MemoSnapshot {
            name: cache.name().to_string(),
            config: cache.config(),
            stats: cache.stats(),
            offset: page.offset,
            entries,
            next_offset,
            miss_ratio_curve: cache.miss_ratio_curve(),
        }
    }
}

/// Every cache of [`registry()`](fn@registry), each as a [`MemoSnapshot`] with the same page
/// of entries: the whole registry as one document.
///
/// ```
/// use syncmap_core::memo::{RegistrySnapshot, SnapshotPage};
///
/// // Statistics and the first 10 entries of every cache, as one JSON document.
/// let json = serde_json::to_string_pretty(&RegistrySnapshot::take(&SnapshotPage::first(10))).unwrap();
/// assert!(json.starts_with('{'));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RegistrySnapshot {
    /// One snapshot per cache, in the registry's order (first use).
    pub caches: Vec<MemoSnapshot>,
}

impl RegistrySnapshot {
    /// Snapshots every cache of the registry with `page`.
    ///
    /// ```
    /// use syncmap_core::memo::{RegistrySnapshot, SnapshotPage};
    ///
    /// // Statistics only, no entries.
    /// let stats_only = RegistrySnapshot::take(&SnapshotPage::first(0));
    /// assert!(stats_only.caches.iter().all(|c| c.entries.is_empty()));
    /// ```
    pub fn take(page: &SnapshotPage) -> RegistrySnapshot {
        RegistrySnapshot {
            caches: registry()
                .iter()
                .map(|cache| MemoSnapshot::of(cache, page))
                .collect(),
        }
    }
}
