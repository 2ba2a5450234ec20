//! Single flight for tasks: which future computes a key's cell, how the others wait for it
//! without blocking their executor thread, and how a computation abandoned by cancellation or a
//! panic hands over to them.
//!
//! Each [`Slot`](super::slot::Slot) carries a [`Flight`]: a state word. Its waiters listen to
//! one of [`STRIPES`] process-wide [`event_listener::Event`]s, chosen by the slot's address, so
//! that a slot spends no word on an event of its own. The state word's owner field (the
//! *claim*; the word also packs the entry's policy bits, see [`Flight`]) is
//!
//! - `FREE` (0): nobody computes; the first caller to swap in its token computes;
//! - a token: the computation of that id is in flight; others listen to the event, re-check,
//!   then await the notification (the `listen`, re-check, await order of `event-listener` loses
//!   no wakeup: its `notify` is a full fence). The end of any computation of the same stripe
//!   wakes them too: a waiter woken for another slot finds its own still claimed and listens
//!   again, without leaving the slot;
//! - the id of a thread computing the cell synchronously (`Slot::get_or_compute_aged`; ids and
//!   tokens come from one counter): async callers wait for it as for a token, and its end
//!   notifies;
//! - `DEAD`: the computation ended without a value to keep (an `Err` not cached, a panic, the
//!   computing future dropped); the slot was removed from the map, and waiters go back to the
//!   map, where one of them inserts a new slot and computes in turn.
//!
//! No lock is held across an `.await`, and nothing polls or sleeps: waiters are woken by the
//! event when the computation ends, however it ends.
//!
//! Recursion: while a computation's body is polled, its token is on a per-thread stack. A
//! caller that finds a key claimed by a token on that stack is being polled from inside that
//! very computation (the same task, directly or through `join`): waiting would never end, so
//! it panics naming the function instead.
//!
//! Under loom (`--cfg syncmap_loom`) the claim word is a loom atomic and the event a model with
//! `event-listener`'s contract (a listener registered before the re-check is woken by every
//! later `notify`), one per slot (loom objects cannot live in a static): `tests/loom_memo_async.rs`
//! checks the protocol. Striping adds only wakeups that find the slot still claimed.

use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;

#[cfg(syncmap_loom)]
use loom::sync::atomic::{fence, AtomicU64, Ordering};
#[cfg(not(syncmap_loom))]
use std::sync::atomic::{fence, AtomicU64, Ordering};

#[cfg(not(syncmap_loom))]
use event_listener::Event;
#[cfg(syncmap_loom)]
use model::Event;

/// The bits of the state word below the owner: the entry's hits and its `gone` mark.
const OWNER_SHIFT: u32 = 8;
/// The saturating hit counter (bounded caches), bits 0..2 (bits 2..4 are free). Three hits
/// between two looks of the policy tell it enough (its credit stops at 3, and the sketch
/// has seen the entry's earlier hits): with 15, a hot entry's first fifteen hits after each
/// look each wrote its line, which the other cores then read again. 3 ran zipf bounded in
/// 0.97x / 0.985x the time of 15 at 1 / 2 threads, the hit-ratio bench's rows within their
/// run-to-run noise (`docs/performance-notes.md`).
const HITS: u64 = 0x03;
/// Set when the entry left the map other than by the policy.
const GONE: u64 = 0x10;
/// Set while the owner is a thread computing synchronously (not an async claim): cleared with
/// the owner. A synchronous caller blocks its thread for such an owner, but not for an async
/// claim, whose future may be waiting to be polled by that very thread.
const SYNC: u64 = 0x20;
/// Set, once and for good, when the slot's value is stored: the value is read only after this
/// bit is seen (`Acquire`), and written only by the owner, before it sets the bit (`Release`).
const READY: u64 = 0x40;
/// Set at creation, never changed: the slot keeps its value's stamp (its cache has a TTL).
const TIMED: u64 = 0x80;
/// The flags that belong to the owner and leave with it.
const OWNER_FLAGS: u64 = SYNC;
/// The flag bits, which every change of the owner keeps.
const FLAGS: u64 = (1 << OWNER_SHIFT) - 1;
/// No computation in flight (the owner field).
const FREE: u64 = 0;
/// The computation ended without a value; the slot is out of the map (the owner field).
const DEAD: u64 = u64::MAX >> OWNER_SHIFT;

/// The single-flight state of a slot, with the entry's policy bits packed beside it (one word,
/// so that the slot of a small value, with its count, fits a 48-byte glibc chunk).
///
/// The word holds, above [`OWNER_SHIFT`], the *owner*: `FREE`, the token of the computation in
/// flight (an async claim, or the id of the thread computing synchronously: both come from
/// [`next_token`], so they never collide), or `DEAD`; below it the hit counter, the `gone`
/// mark, the flag of a synchronous owner ([`SYNC`]) and the slot's [`READY`] bit. Every change
/// of one part keeps the others (compare-and-swap loops, `fetch_or`, `fetch_and`), except that
/// the owner's flag leaves with it. The owner is the one writer of the slot's value: the word
/// is the slot's once-cell as well as its single flight.
pub(crate) struct Flight {
    state: AtomicU64,
    #[cfg(syncmap_loom)]
    ended: Event,
}

/// The number of events async waiters listen to, shared by every slot of the process (2 KiB).
/// More stripes wake fewer waiters of unrelated slots.
#[cfg(not(syncmap_loom))]
const STRIPES: usize = 256;

/// The events of [`Flight::ended`]: each allocates its state on its first listener.
#[cfg(not(syncmap_loom))]
static ENDED: [Event; STRIPES] = [const { Event::new() }; STRIPES];

/// What [`Flight::try_claim`] found.
pub(crate) enum Claim {
    /// The caller holds the claim and must compute (and then call `settle` or `abandon`).
    Won,
    /// Another computation, of this token, is in flight.
    Busy(u64),
    /// The slot is abandoned: look the key up again.
    Dead,
}

/// What [`Flight::try_claim_sync`] found.
pub(crate) enum SyncClaim {
    /// The thread holds the claim and must compute (and then call `settle` or `release`).
    Won,
    /// Another thread, of this id, computes synchronously: wait for it.
    Thread(u64),
    /// An async computation holds the claim.
    Task,
    /// The slot is abandoned (out of the map).
    Dead,
}

/// The owner field of a state word.
#[inline]
fn owner(state: u64) -> u64 {
    state >> OWNER_SHIFT
}

impl Flight {
    /// The word of a new slot, of the timed kind if `timed`.
    pub(crate) fn new(timed: bool) -> Self {
        Flight {
            state: AtomicU64::new(if timed { TIMED } else { FREE }),
            #[cfg(syncmap_loom)]
            ended: Event::new(),
        }
    }

    /// The event this slot's waiters listen to: its stripe, chosen by the flight word's address
    /// (stable while the slot lives; slots are at least 40 bytes apart, so the low bits say
    /// little and are mixed with higher ones).
    #[cfg(not(syncmap_loom))]
    fn ended(&self) -> &'static Event {
        let address = self as *const Self as usize;
        &ENDED[((address >> 4) ^ (address >> 12)) % STRIPES]
    }

    #[cfg(syncmap_loom)]
    fn ended(&self) -> &Event {
        &self.ended
    }

    /// Sets the owner to `to` if it is `from`, keeping the flags; returns the owner found.
    fn swap_owner(&self, from: u64, to: u64) -> Result<u64, u64> {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            if owner(current) != from {
                return Err(owner(current));
            }
            let new = (current & FLAGS) | (to << OWNER_SHIFT);
            match self.state.compare_exchange_weak(
                current,
                new,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(from),
                Err(actual) => current = actual,
            }
        }
    }

    /// A flight (of the timed kind if `timed`) whose claim thread `thread` (an id of
    /// [`current_thread_id`](super::slot::current_thread_id)) holds from the start, as if it
    /// had won [`try_claim_sync`](Self::try_claim_sync): it alone may settle or release it.
    pub(crate) fn claimed_by_thread(thread: u64, timed: bool) -> Self {
        let timed = if timed { TIMED } else { 0 };
        Flight {
            state: AtomicU64::new(SYNC | timed | (thread << OWNER_SHIFT)),
            #[cfg(syncmap_loom)]
            ended: Event::new(),
        }
    }

    /// Claims the computation for `token`, unless a computation is in flight or has ended.
    pub(crate) fn try_claim(&self, token: u64) -> Claim {
        match self.swap_owner(FREE, token) {
            Ok(_) => Claim::Won,
            Err(DEAD) => Claim::Dead,
            Err(other) => Claim::Busy(other),
        }
    }

    /// Claims the computation for the thread `me` (a [`next_token`] id), computing
    /// synchronously, unless a computation is in flight or has ended.
    pub(crate) fn try_claim_sync(&self, me: u64) -> SyncClaim {
        let claimed = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                (owner(state) == FREE).then_some(state | SYNC | (me << OWNER_SHIFT))
            });
        match claimed {
            Ok(_) => SyncClaim::Won,
            Err(state) if owner(state) == DEAD => SyncClaim::Dead,
            Err(state) if state & SYNC != 0 => SyncClaim::Thread(owner(state)),
            Err(_) => SyncClaim::Task,
        }
    }

    /// Whether the slot's value is stored (and may be read: `Acquire`).
    #[inline]
    pub(crate) fn is_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) & READY != 0
    }

    /// `None` if the slot's value is not stored, else whether the slot is of the timed kind:
    /// one load (`Acquire`: the value may be read).
    #[inline]
    pub(crate) fn ready(&self) -> Option<bool> {
        let state = self.state.load(Ordering::Acquire);
        (state & READY != 0).then_some(state & TIMED != 0)
    }

    /// Whether the slot is of the timed kind (set at creation, so any load sees it).
    #[inline]
    pub(crate) fn is_timed(&self) -> bool {
        self.state.load(Ordering::Relaxed) & TIMED != 0
    }

    /// Waits until the computation of `owner` ends, unless `ended()` (the cell has a value) or
    /// the claim word says it has already: listens to the event (on this future's own state,
    /// no allocation), re-checks, then awaits the notification, so no wakeup is lost between
    /// the check and the wait. Returns at once if the computation ended meanwhile. A wakeup by
    /// the end of another slot's computation of the same stripe is absorbed here: the slot is
    /// checked again and, still claimed by `owner`, waited for again. (Returning instead would
    /// send the caller back to the map, where, if the key was invalidated meanwhile, it would
    /// start a second computation instead of taking the value of the one it waited for.)
    pub(crate) async fn wait(&self, owner: u64, ended: impl Fn() -> bool) {
        loop {
            #[cfg(not(syncmap_loom))]
            event_listener::listener!(self.ended() => listener);
            #[cfg(syncmap_loom)]
            let listener = self.ended().listen();
            // Pairs with the fence of `notify_listeners`, which notifies only if it sees a
            // listener: either it sees this one, or this re-check sees the owner changed.
            fence(Ordering::SeqCst);
            if ended() || !self.still_claimed_by(owner) {
                return;
            }
            listener.await;
        }
    }

    /// [`wait`](Self::wait) for a thread: blocks it until the computation of `owner` ends,
    /// unless `ended()` or the claim word says it has already (same listen, re-check, wait
    /// order).
    pub(crate) fn wait_blocking(&self, owner: u64, ended: impl Fn() -> bool) {
        loop {
            #[cfg(not(syncmap_loom))]
            event_listener::listener!(self.ended() => listener);
            #[cfg(syncmap_loom)]
            let listener = self.ended().listen();
            // As in `wait`.
            fence(Ordering::SeqCst);
            if ended() || !self.still_claimed_by(owner) {
                return;
            }
            #[cfg(not(syncmap_loom))]
            event_listener::Listener::wait(listener);
            #[cfg(syncmap_loom)]
            loom::future::block_on(listener);
        }
    }

    /// Whether the computation of `token` is still in flight.
    fn still_claimed_by(&self, token: u64) -> bool {
        owner(self.state.load(Ordering::Acquire)) == token
    }

    /// The owner stored the slot's value: marks it [`READY`], frees the claim (the value now
    /// answers every caller) and wakes all waiters. Only `Slot::settle` calls it, right after
    /// the write, so that the bit always means a value is there.
    pub(crate) fn settle(&self) {
        self.state
            .fetch_update(Ordering::Release, Ordering::Relaxed, |state| {
                Some((state & FLAGS & !OWNER_FLAGS) | READY)
            })
            .ok();
        self.notify_listeners();
    }

    /// The owner ends its claim without storing a value (a result not kept, a panic, or a
    /// value another owner stored before the claim): frees the claim, so that a waiter
    /// computes in turn if there is no value, and wakes all waiters.
    pub(crate) fn release(&self) {
        self.state
            .fetch_and(FLAGS & !OWNER_FLAGS, Ordering::Release);
        self.notify_listeners();
    }

    /// The computation ended without a value, and the slot is out of the map: marks it dead and
    /// wakes all waiters, who look the key up again (one of them computes).
    pub(crate) fn abandon(&self) {
        self.state.fetch_or(DEAD << OWNER_SHIFT, Ordering::Release);
        self.notify_listeners();
    }

    /// After the owner changed: wakes every listener of the slot's stripe, if there is one.
    /// `notify` would allocate the event's state on first use, which a process where nobody
    /// waits should not pay; and it takes the event's lock. A listener registered after the check
    /// re-checks the owner after a fence of its own (see [`wait`](Self::wait)) and finds it
    /// changed: of two threads that each write then fence then read, one sees the other's write.
    fn notify_listeners(&self) {
        fence(Ordering::SeqCst);
        let ended = self.ended();
        if ended.total_listeners() > 0 {
            ended.notify(usize::MAX);
        }
    }

    /// Records a hit for the eviction policy: a plain load, and an increment only while the
    /// count is below its ceiling, so a hot entry's hits write nothing. A lost race loses the
    /// increment; the policy needs an estimate.
    #[inline]
    pub(crate) fn touch(&self) {
        let state = self.state.load(Ordering::Relaxed);
        if state & HITS < HITS {
            let _ =
                self.state
                    .compare_exchange(state, state + 1, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// The hits since the last call, resetting them (writes only if there were any).
    pub(crate) fn take_hits(&self) -> u32 {
        let state = self.state.load(Ordering::Relaxed);
        if state & HITS == 0 {
            return 0;
        }
        let before = self.state.fetch_and(!HITS, Ordering::Relaxed);
        (before & HITS) as u32
    }

    /// Marks the entry as removed from the map (so the policy forgets it).
    pub(crate) fn mark_gone(&self) {
        self.state.fetch_or(GONE, Ordering::Relaxed);
    }

    /// Whether [`mark_gone`](Self::mark_gone) was called.
    pub(crate) fn is_gone(&self) -> bool {
        self.state.load(Ordering::Relaxed) & GONE != 0
    }
}

/// A new process-unique computation token or thread id (never `FREE` or `DEAD`: the counter
/// would need 2^56 calls to reach `DEAD`).
pub(crate) fn next_token() -> u64 {
    // Not a loom atomic: a static, only ever read by the `fetch_add` that hands out a token.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(not(syncmap_loom))]
thread_local! {
    /// The tokens of the computations whose bodies this thread is polling, innermost last.
    static POLLING: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

// Loom runs its threads on one OS thread: a std thread-local would be shared between them.
#[cfg(syncmap_loom)]
loom::thread_local! {
    static POLLING: RefCell<Vec<u64>> = RefCell::new(Vec::new());
}

/// Whether this thread is polling, right now, the body of the computation `token`: a caller
/// waiting for it would be waiting for itself.
pub(crate) fn inside(token: u64) -> bool {
    POLLING.with(|polling| polling.borrow().contains(&token))
}

/// Pops the token pushed for one poll, by return or by unwinding.
struct Popped;

impl Drop for Popped {
    fn drop(&mut self) {
        POLLING.with(|polling| {
            polling.borrow_mut().pop();
        });
    }
}

/// Awaits `body`, marking each of its polls as being inside the computation `token`.
pub(crate) async fn run_marked<F: Future>(token: u64, body: F) -> F::Output {
    let mut body = pin!(body);
    std::future::poll_fn(move |cx| {
        POLLING.with(|polling| polling.borrow_mut().push(token));
        let _popped = Popped;
        body.as_mut().poll(cx)
    })
    .await
}

/// A model of `event_listener::Event` for loom, with the contract the protocol relies on: a
/// listener created before a `notify` completes once that `notify` has run, and wakes its task.
/// Listeners and wakers are kept under a loom mutex, so loom sees every interleaving.
#[cfg(syncmap_loom)]
mod model {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use loom::sync::Mutex;

    #[derive(Default)]
    struct Listeners {
        next: u64,
        /// Each live listener: its id, whether notified, and the waker of its last poll.
        live: Vec<(u64, bool, Option<Waker>)>,
    }

    pub(crate) struct Event(Mutex<Listeners>);

    impl Event {
        pub(crate) fn new() -> Self {
            Event(Mutex::new(Listeners::default()))
        }

        /// Registers a listener: every `notify` from now on completes it.
        pub(crate) fn listen(&self) -> Listener<'_> {
            let mut listeners = self.0.lock().unwrap();
            let id = listeners.next;
            listeners.next += 1;
            listeners.live.push((id, false, None));
            Listener { event: self, id }
        }

        /// The number of registered listeners.
        pub(crate) fn total_listeners(&self) -> usize {
            self.0.lock().unwrap().live.len()
        }

        /// Completes every registered listener and wakes their tasks (the count is ignored:
        /// the protocol always notifies all).
        pub(crate) fn notify(&self, _count: usize) {
            let wakers: Vec<Waker> = {
                let mut listeners = self.0.lock().unwrap();
                listeners
                    .live
                    .iter_mut()
                    .filter_map(|(_, notified, waker)| {
                        *notified = true;
                        waker.take()
                    })
                    .collect()
            };
            wakers.into_iter().for_each(Waker::wake);
        }
    }

    pub(crate) struct Listener<'a> {
        event: &'a Event,
        id: u64,
    }

    impl Future for Listener<'_> {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let mut listeners = self.event.0.lock().unwrap();
            let entry = listeners
                .live
                .iter_mut()
                .find(|(id, ..)| *id == self.id)
                .expect("a listener stays registered until dropped");
            if entry.1 {
                Poll::Ready(())
            } else {
                entry.2 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    impl Drop for Listener<'_> {
        fn drop(&mut self) {
            let mut listeners = self.event.0.lock().unwrap();
            listeners.live.retain(|(id, ..)| *id != self.id);
        }
    }
}
