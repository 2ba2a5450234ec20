//! The async client, for `#[memoize(shared)] async fn`: the same script, lock, waiting, timeouts
//! and fault counting as the blocking path, through the `redis` crate's async API.
//!
//! That API needs a tokio (or smol) runtime to drive its connections; a library must not assume
//! its caller's. So every async call to Redis runs as a task on the tier's own I/O thread
//! (`syncmemo-redis-io`: a single-threaded tokio runtime, started on first use and kept for the
//! process's lifetime), over one multiplexed connection per tier, and the caller's future
//! awaits the task's `JoinHandle`, which any executor can poll. No executor thread blocks.
//!
//! Cancellation: if the caller's future is dropped while a lookup waits for another process,
//! the waiting task is told to stop ([`Cancel`]); a lock it took is released by its
//! [`Ticket`]'s drop, which sends the release to the I/O thread (never blocking). A publication
//! already sent to the I/O thread completes even if its caller is gone.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::redis as client;

use super::{
    breaks_connection, Counters, Event, Found, LookupLoop, RedisTier, Step, Ticket, TierErrorKind,
    Waiter,
};

/// The I/O thread's runtime, started on first use; `None` if it could not be started (the
/// calls then compute locally).
fn io() -> Option<&'static tokio::runtime::Handle> {
    static IO: OnceLock<Option<tokio::runtime::Handle>> = OnceLock::new();
    IO.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("syncmemo-redis-io".to_string())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .ok()?;
        Some(handle)
    })
    .as_ref()
}

/// Tells a waiting lookup task that its caller is gone (on drop).
struct Cancel(Arc<Waiter>);

impl Drop for Cancel {
    fn drop(&mut self) {
        self.0.cancelled.store(true, Ordering::Release);
        self.0.event.notify(usize::MAX);
    }
}

/// [`RedisTier::lookup`] for an async caller: the value of `key`, or the right to compute it.
/// Never blocks the calling thread.
pub(crate) async fn lookup_async(
    tier: Arc<RedisTier>,
    key: String,
    counters: Arc<Counters>,
) -> Found {
    let Some(io) = io() else {
        counters.bump(Event::Error);
        return Found::Compute(Ticket::none().faulted(TierErrorKind::Unavailable));
    };
    let waiter = Arc::new(Waiter::default());
    let _cancel = Cancel(Arc::clone(&waiter));
    let task = io.spawn(Arc::clone(&tier).lookup_task(key.clone(), counters, waiter));
    match task.await {
        Ok(found) => found,
        // The task panicked (a bug): compute without the lock.
        Err(_) => Found::Compute(Ticket::unlocked(tier, &key).faulted(TierErrorKind::Refused)),
    }
}

/// Releases a lock taken by an async lookup whose computation ended without a value to publish
/// (or whose future was dropped), on the I/O thread.
pub(super) fn spawn_release(tier: Arc<RedisTier>, key: String, token: String) {
    if let Some(io) = io() {
        io.spawn(async move {
            tier.release_async(&key, &token, &Counters::default()).await;
        });
    }
}

impl Ticket {
    /// [`publish`](Ticket::publish) for an async caller: the write runs on the I/O thread, and
    /// completes even if the caller's future is dropped meanwhile.
    pub(crate) async fn publish_async(
        mut self,
        bytes: Vec<u8>,
        ttl: Option<Duration>,
        counters: Arc<Counters>,
    ) {
        let Some(tier) = self.tier.take() else {
            return;
        };
        let token = self.token.take();
        let key = std::mem::take(&mut self.key);
        let Some(io) = io() else {
            return;
        };
        if bytes.len() > tier.config.max_value_bytes {
            counters.bump(Event::Oversized);
            if let Some(token) = token {
                spawn_release(tier, key, token);
            }
            return;
        }
        let task = io.spawn(async move {
            tier.publish_async(&key, &bytes, ttl, token.as_deref(), &counters)
                .await;
        });
        let _ = task.await;
    }
}

impl RedisTier {
    /// Runs `op` on the multiplexed connection (made on first use), as
    /// [`with`](RedisTier::with) does on a pooled one: `None` (counted, the tier backing off
    /// after a connection fault) if Redis cannot be reached or answers with an error. Runs on
    /// the I/O thread.
    async fn with_async<T, F, Fut>(&self, counters: &Counters, op: F) -> Option<T>
    where
        F: FnOnce(client::aio::MultiplexedConnection) -> Fut,
        Fut: Future<Output = client::RedisResult<T>>,
    {
        self.try_with_async(counters, op).await.ok()
    }

    /// [`with_async`](Self::with_async), saying what went wrong.
    async fn try_with_async<T, F, Fut>(
        &self,
        counters: &Counters,
        op: F,
    ) -> Result<T, TierErrorKind>
    where
        F: FnOnce(client::aio::MultiplexedConnection) -> Fut,
        Fut: Future<Output = client::RedisResult<T>>,
    {
        if self.backing_off() {
            counters.bump(Event::Skipped);
            return Err(TierErrorKind::Unavailable);
        }
        let connection = {
            let mut slot = self.multiplexed.lock().await;
            match &*slot {
                Some(connection) => connection.clone(),
                None => {
                    let config = client::AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(self.config.connect_timeout))
                        .set_response_timeout(Some(self.config.command_timeout));
                    match self
                        .client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                    {
                        Ok(connection) => slot.insert(connection).clone(),
                        Err(error) => {
                            drop(slot);
                            return Err(self.fault(counters, &error, true));
                        }
                    }
                }
            }
        };
        match op(connection).await {
            Ok(value) => {
                self.healthy();
                Ok(value)
            }
            Err(error) => {
                // As the blocking path: a reply error (OOM, script error) keeps the connection;
                // a timeout or an I/O error drops it (the next call reconnects) and backs off.
                let broken = breaks_connection(&error);
                if broken {
                    *self.multiplexed.lock().await = None;
                }
                Err(self.fault(counters, &error, broken))
            }
        }
    }

    /// The lookup loop of [`lookup`](RedisTier::lookup), on the I/O thread: waits for another
    /// process's value with the event of `waiter` and a bounded poll, and stops early if the
    /// caller is gone.
    async fn lookup_task(
        self: Arc<Self>,
        key: String,
        counters: Arc<Counters>,
        waiter: Arc<Waiter>,
    ) -> Found {
        let mut lookup = LookupLoop::new(&self, &key, true);
        let found = loop {
            if waiter.cancelled.load(Ordering::Acquire) {
                break Found::Compute(Ticket::none());
            }
            let reply = self
                .try_with_async(&counters, |mut connection| {
                    let invocation = lookup.invocation();
                    async move {
                        invocation
                            .invoke_async::<client::Value>(&mut connection)
                            .await
                    }
                })
                .await;
            match lookup.step(reply, &counters) {
                Step::Done(found) => break found,
                Step::Register => self.waiters.register_waiter(lookup.hash(), &waiter),
                Step::Wait(until) => {
                    // Listen, then check: a wake-up between the two is not lost.
                    let listener = waiter.event.listen();
                    if !waiter.take_woken() && !waiter.cancelled.load(Ordering::Acquire) {
                        let _ = tokio::time::timeout_at(until.into(), listener).await;
                        waiter.take_woken();
                    }
                }
            }
        };
        if lookup.registered() {
            self.waiters.unregister(lookup.hash(), &waiter);
        }
        found
    }

    /// [`publish`](RedisTier::publish) on the async connection.
    async fn publish_async(
        &self,
        key: &str,
        bytes: &[u8],
        ttl: Option<Duration>,
        token: Option<&str>,
        counters: &Counters,
    ) {
        let invocation = self.publish_invocation(key, bytes, ttl, token);
        let reply = self
            .with_async(counters, |mut connection| async move {
                invocation
                    .invoke_async::<client::Value>(&mut connection)
                    .await
            })
            .await;
        self.published(reply, counters);
    }

    /// [`release`](RedisTier::release) on the async connection.
    async fn release_async(&self, key: &str, token: &str, counters: &Counters) {
        let invocation = self.release_invocation(key, token);
        self.with_async(counters, |mut connection| async move {
            invocation
                .invoke_async::<client::Value>(&mut connection)
                .await
        })
        .await;
    }
}
