//! The local cache's side of the shared tier (feature `redis`): the miss path of a `shared`
//! cache asks the tier between local single flight and computing, and publishes after; and the
//! methods that act on both tiers. See [`crate::tier`].

use std::cell::Cell;
use std::hash::Hash;
use std::time::Duration;

use super::call::RemoveOnUnwind;
use super::slot::SlotRef;
use super::stats::Counter;
use super::{__private::SharedFactory, Memo};
use crate::tier::redis::Ticket;
use crate::tier::{Hook, HookBox, Lookup, TierError, TierStats};
use crate::Equivalent;

impl<K, V> Memo<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(super) fn attach_shared(mut self, factory: SharedFactory) -> Self {
        let erased = factory(self.name, self.config);
        let hook = erased
            .downcast::<HookBox<K, V>>()
            .expect("generated code makes the hook of the cache's own key and value types");
        self.shared = Some(hook.0);
        self
    }

    /// Subscribes a registered cache to the other processes' invalidations.
    pub(super) fn attach_to_tier(&'static self) {
        if let Some(hook) = &self.shared {
            hook.attach(self);
        }
    }

    pub(crate) fn shared_hook(&self) -> Option<&dyn Hook<K, V>> {
        self.shared.as_deref()
    }

    /// The hook and the Redis key of `key`, for a `shared` cache with a tier installed.
    pub(super) fn shared_key(&self, key: &K) -> Option<(&dyn Hook<K, V>, String)> {
        let hook = self.shared.as_deref()?;
        Some((hook, hook.key(key)?))
    }

    /// The rest of [`miss`](Memo::miss) for a `shared` cache: in the local cell (one caller per
    /// key in this process), ask the tier, compute only if it says so, then publish.
    #[track_caller]
    pub(super) fn miss_shared<Q>(
        &self,
        key: &Q,
        slot: SlotRef<V>,
        policy_key: Option<K>,
        (hook, shared_key): (&dyn Hook<K, V>, String),
        compute: impl FnOnce() -> V,
        keep: impl FnOnce(&V) -> bool,
    ) -> V
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let counters = &self.counters;
        let started = Cell::new(false);
        let cleanup = RemoveOnUnwind {
            memo: self,
            key,
            slot: &slot,
            started: &started,
        };
        // Whether the value is to be kept, decided once (`keep` runs once, in the cell).
        let kept = Cell::new(true);
        let outcome = self.compute_or_wait(
            &slot,
            || {
                started.set(true);
                match hook.lookup(&shared_key) {
                    Lookup::Found { value, age } => (value, age),
                    Lookup::Compute(ticket) if self.returns_fault(&ticket) => {
                        kept.set(false);
                        (self.fault_value(ticket), Duration::ZERO)
                    }
                    Lookup::Compute(ticket) => {
                        counters.bump(Counter::Computation);
                        let value = compute();
                        if keep(&value) {
                            hook.publish(ticket, &value);
                        } else {
                            kept.set(false);
                            drop(ticket);
                        }
                        (value, Duration::ZERO)
                    }
                }
            },
            |_| kept.get(),
        );
        std::mem::forget(cleanup);
        self.settle(key, slot, outcome, started.get(), policy_key)
    }

    /// [`compute_async`](Memo::compute_async) for a `shared` cache: ask the tier (awaiting
    /// another process's computation without blocking), compute only if it says so, publish.
    /// If this future is dropped while computing, the ticket's drop releases the Redis lock.
    pub(super) async fn compute_shared_async<F>(
        &'static self,
        (hook, shared_key): (&'static dyn Hook<K, V>, String),
        token: u64,
        compute: F,
        keep: impl FnOnce(&V) -> bool,
    ) -> (V, Duration, bool)
    where
        F: std::future::Future<Output = V>,
    {
        // Counted as in the synchronous form: a miss if the body runs, else a wait.
        match hook.lookup_async(shared_key).await {
            Lookup::Found { value, age } => {
                self.counters.bump(Counter::Wait);
                (value, age, true)
            }
            Lookup::Compute(ticket) if self.returns_fault(&ticket) => {
                self.counters.bump(Counter::Wait);
                (self.fault_value(ticket), Duration::ZERO, false)
            }
            Lookup::Compute(ticket) => {
                self.counters.bump(Counter::Miss);
                self.counters.bump(Counter::Computation);
                let value = super::flight::run_marked(token, compute).await;
                if keep(&value) {
                    hook.publish_async(ticket, &value).await;
                    (value, Duration::ZERO, true)
                } else {
                    drop(ticket);
                    (value, Duration::ZERO, false)
                }
            }
        }
    }

    /// Whether the tier could not answer and this function returns its faults
    /// (`tier_errors = "return"`) instead of computing.
    fn returns_fault(&self, ticket: &Ticket) -> bool {
        ticket.fault().is_some() && self.debug.tier_error.is_some()
    }

    /// The value that reports the fault of `ticket` (`Err(E::from(TierError))`), which is not
    /// cached.
    fn fault_value(&self, ticket: Ticket) -> V {
        let (Some(kind), Some(make)) = (ticket.fault(), self.debug.tier_error) else {
            unreachable!("returns_fault checked both");
        };
        make(TierError::new(kind))
    }

    /// On a `shared` cache, removes `key` here, in Redis, and (by a message on the namespace's
    /// channel) in the other processes' local caches; returns whether this process or Redis
    /// held a value. On other caches it is [`invalidate`](Self::invalidate). The same as
    /// `f_cache().invalidate(&key)` (a [`SharedMemo`](crate::tier::SharedMemo)), for code that
    /// holds a `&Memo` and an owned key.
    ///
    /// The other processes drop their copies when the message reaches them (eventual
    /// consistency: a process disconnected from Redis at that moment keeps its copy until its
    /// TTL). If Redis cannot be reached, only the local copy is removed (the fault is counted).
    ///
    /// ```no_run
    /// # let render_cache = || -> &'static syncmap_core::Memo<(String, String), String> { unimplemented!() };
    /// // #[memoize(shared, ttl = "10m")] fn render(page: &str, lang: &str) -> String { .. }
    /// render_cache().invalidate_shared(&("home".to_string(), "en".to_string()));
    /// ```
    pub fn invalidate_shared(&self, key: &K) -> bool {
        let local = self.invalidate(key);
        match &self.shared {
            Some(hook) => hook.invalidate(key) || local,
            None => local,
        }
    }

    /// On a `shared` cache, removes every value here, the function's keys in Redis (`SCAN` on
    /// its prefix and `UNLINK`; never `FLUSHDB`), and tells the other processes to clear theirs
    /// (eventually consistent, as [`invalidate_shared`](Self::invalidate_shared)); returns the
    /// number of Redis keys deleted. On other caches it is [`clear`](Self::clear) and returns 0.
    /// The same as [`clear`](Self::clear), with the count.
    ///
    /// ```no_run
    /// # let render_cache = || -> &'static syncmap_core::Memo<String, String> { unimplemented!() };
    /// render_cache().clear_shared();
    /// ```
    pub fn clear_shared(&self) -> u64 {
        self.clear_here();
        match &self.shared {
            Some(hook) => hook.clear(),
            None => 0,
        }
    }

    /// What the shared tier did for this function (`None` if it is not `shared`): Redis hits,
    /// misses, writes, waits for other processes, and the faults absorbed by computing locally.
    ///
    /// ```no_run
    /// # let render_cache = || -> &'static syncmap_core::Memo<String, String> { unimplemented!() };
    /// if let Some(tier) = render_cache().shared_stats() {
    ///     println!("{} Redis hits, {} faults", tier.hits, tier.faults());
    /// }
    /// ```
    pub fn shared_stats(&self) -> Option<TierStats> {
        self.shared.as_ref().map(|hook| hook.stats())
    }
}
