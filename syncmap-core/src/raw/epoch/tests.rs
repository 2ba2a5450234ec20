use super::pages::{self, Pages, PAGE};
use super::*;
use std::sync::atomic::{AtomicBool, AtomicIsize};
use std::sync::Arc;

/// Counts live instances; each one checks it is dropped once.
struct Tracked {
    live: Arc<AtomicIsize>,
    dropped: AtomicBool,
    value: u64,
}

impl Tracked {
    fn new(live: &Arc<AtomicIsize>, value: u64) -> *mut Tracked {
        Box::into_raw(Box::new(Tracked::value(live, value)))
    }

    fn value(live: &Arc<AtomicIsize>, value: u64) -> Tracked {
        live.fetch_add(1, Ordering::Relaxed);
        Tracked {
            live: live.clone(),
            dropped: AtomicBool::new(false),
            value,
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        assert!(!self.dropped.swap(true, Ordering::Relaxed), "dropped twice");
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(not(miri))]
const SCALE: usize = 100;
#[cfg(miri)]
const SCALE: usize = 1;

#[test]
fn drop_accounting() {
    let live = Arc::new(AtomicIsize::new(0));
    let collector = Collector::new();
    let n = BATCH * 10 * SCALE;
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for i in 0..n {
                    let guard = collector.enter();
                    let p = Tracked::new(&live, i as u64);
                    // SAFETY: never published, retired once.
                    unsafe { guard.defer_retire(p, boxed::<Tracked>, 0) };
                }
            });
        }
    });
    let remaining = live.load(Ordering::Relaxed);
    assert!(
        remaining >= 0 && (remaining as usize) < 2 * n,
        "nothing freed before drop: {remaining}"
    );
    drop(collector);
    assert_eq!(live.load(Ordering::Relaxed), 0);
}

/// Two writers replace the values of four slots (retiring each old one, or recycling it)
/// while two readers load them: a reader must never see a value dropped, nor its memory
/// reused (every value written is distinct, so reuse shows as a change under the reader);
/// every value is dropped once.
fn swap_under_readers(collector: Collector, recycle: bool) {
    let live = Arc::new(AtomicIsize::new(0));
    let slots: Vec<AtomicPtr<Tracked>> = (0..4)
        .map(|i| {
            AtomicPtr::new(if recycle {
                collector.enter().alloc(Tracked::value(&live, i))
            } else {
                Tracked::new(&live, i)
            })
        })
        .collect();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) || reads < 10 {
                    let guard = collector.enter();
                    for slot in &slots {
                        let p = guard.protect(slot, Ordering::Acquire);
                        // SAFETY: loaded under `guard`; replaced values are retired.
                        let t = unsafe { &*p };
                        let first = t.value;
                        for _ in 0..16 {
                            std::hint::spin_loop();
                        }
                        assert!(!t.dropped.load(Ordering::Relaxed));
                        assert_eq!(t.value, first, "memory reused while protected");
                    }
                    reads += 1;
                }
            });
        }
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let (slots, collector, live) = (&slots, &collector, &live);
                s.spawn(move || {
                    for i in 0..BATCH * 8 * SCALE {
                        let guard = collector.enter();
                        let slot = &slots[(i + w) % slots.len()];
                        let value = Tracked::value(live, (4 + 2 * i + w) as u64);
                        let new = if recycle {
                            guard.alloc(value)
                        } else {
                            Box::into_raw(Box::new(value))
                        };
                        let old = slot.swap(new, Ordering::AcqRel);
                        // SAFETY: `old` was unlinked by the swap; retired once; from
                        // `Box::into_raw` or `alloc`.
                        unsafe {
                            if recycle {
                                guard.defer_recycle(old)
                            } else {
                                guard.defer_retire(old, boxed::<Tracked>, 0)
                            }
                        };
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    for slot in &slots {
        let p = slot.load(Ordering::Relaxed);
        // SAFETY: all threads are done; the current values are owned by the slots: they
        // come from `alloc` when recycling, and are boxes otherwise.
        unsafe {
            if recycle {
                free_allocated(p)
            } else {
                drop(Box::from_raw(p))
            }
        }
    }
    drop(collector);
    assert_eq!(live.load(Ordering::Relaxed), 0);
}

#[test]
fn readers_never_see_freed_values() {
    swap_under_readers(Collector::new(), false);
}

/// With recycling, a value's memory is reused only once no guard can reach it.
#[test]
fn recycled_memory_is_not_reused_while_protected() {
    swap_under_readers(Collector::recycling(&[Layout::new::<Tracked>()]), true);
}

/// The reclaiming thread keeps the memory of what it reclaimed, and hands it out again.
#[test]
fn reclaimed_memory_is_handed_out_again() {
    let live = Arc::new(AtomicIsize::new(0));
    let collector = Collector::recycling(&[Layout::new::<Tracked>()]);
    // Threads of other tests may hold back a pass for a while (the epoch is global).
    let has_spares = |guard: &LocalGuard<'_>| {
        // SAFETY: this thread owns the record; the borrow ends here.
        !unsafe { &*guard.slot.spares[0].get() }.is_empty()
    };
    let mut rounds = 0;
    loop {
        let guard = collector.enter();
        if has_spares(&guard) {
            break;
        }
        assert!(rounds < BATCH * 1000, "no spare after {rounds} retirements");
        let p = guard.alloc(Tracked::value(&live, rounds as u64));
        // SAFETY: never published; retired once.
        unsafe { guard.defer_recycle(p) };
        rounds += 1;
    }
    assert!(rounds >= BATCH, "spares before any reclamation pass");
    let guard = collector.enter();
    let spare = collector
        .take_spare::<Tracked>(guard.slot)
        .expect("the slot has spares");
    // SAFETY: a spare is uninitialized memory for a `Born<Tracked>`, now ours; marked as in a
    // page (this small layout's pool has pages), as `alloc` does, and freed below.
    unsafe {
        spare.as_ptr().write(Born {
            birth: PAGED,
            object: Tracked::value(&live, 0),
        })
    };
    // SAFETY: made as `alloc` makes objects; freed once.
    unsafe { free_allocated(ptr::addr_of_mut!((*spare.as_ptr()).object)) };
    // Types of another layout than the recycled one get no spare.
    assert!(collector.take_spare::<u64>(guard.slot).is_none());
    drop(guard);
    drop(collector);
    assert_eq!(live.load(Ordering::Relaxed), 0);
}

#[test]
fn pools_skip_zero_sized_and_duplicate_layouts() {
    let collector = Collector::recycling(&[
        Layout::new::<()>(),
        Layout::new::<u64>(),
        Layout::new::<i64>(),
        Layout::new::<[u64; 4]>(),
        Layout::new::<u8>(),
    ]);
    let layouts: Vec<Layout> = collector.pools.iter().flatten().map(|p| p.layout).collect();
    // `u8` gives the same header-and-object layout as `u64`: a duplicate.
    assert_eq!(
        layouts,
        [Layout::new::<Born<u64>>(), Layout::new::<Born<[u64; 4]>>()]
    );
    assert_eq!(collector.pool_of::<i64>().map(|(i, _)| i), Some(0));
    assert_eq!(collector.pool_of::<u8>().map(|(i, _)| i), Some(0));
    assert_eq!(collector.pool_of::<[u64; 4]>().map(|(i, _)| i), Some(1));
    assert!(collector.pool_of::<[u64; 2]>().is_none());
}

#[test]
fn nested_guards() {
    let live = Arc::new(AtomicIsize::new(0));
    let collector = Collector::new();
    let other = Collector::new();
    let outer = collector.enter();
    let slot_of_outer = outer.slot;
    let pinned = slot_of_outer.lo.load(Ordering::Relaxed);
    assert_ne!(pinned, INACTIVE);
    let slot = AtomicPtr::new(Tracked::new(&live, 7));
    let seen = outer.protect(&slot, Ordering::Acquire);
    {
        let inner = collector.enter();
        let inner_other = other.enter();
        assert_eq!(inner.thread_id(), outer.thread_id());
        assert_eq!(inner_other.thread_id(), outer.thread_id());
        let old = slot.swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: unlinked by the swap, retired once.
        unsafe { inner.defer_retire(old, boxed::<Tracked>, 0) };
        // Force several passes: the outer pin must keep `seen` alive.
        for i in 0..BATCH * 3 {
            // SAFETY: never published.
            unsafe { inner.defer_retire(Tracked::new(&live, i as u64), boxed::<Tracked>, 0) };
        }
    }
    assert_eq!(
        slot_of_outer.lo.load(Ordering::Relaxed),
        pinned,
        "inner drop unpinned"
    );
    // SAFETY: still protected by `outer`.
    assert_eq!(unsafe { &*seen }.value, 7);
    drop(outer);
    assert_eq!(slot_of_outer.lo.load(Ordering::Relaxed), INACTIVE);
    drop(collector);
    assert_eq!(live.load(Ordering::Relaxed), 0);
}

/// A guard opened by a thread-local destructor that runs after the thread gave its record
/// back gets a record of its own ("transient"); guards opened while it lives must nest in
/// it (same record, same slot, not pinning again), as the map's locked lookup hands what
/// its nested guard found to the enclosing one. The record is given back at the end.
#[test]
fn guards_nest_in_a_transient_guard() {
    use std::sync::Mutex as StdMutex;
    static RESULT: StdMutex<Option<(usize, usize, bool, bool)>> = StdMutex::new(None);
    static COLLECTOR: std::sync::OnceLock<Collector> = std::sync::OnceLock::new();
    struct LateUser;
    impl Drop for LateUser {
        fn drop(&mut self) {
            let collector = COLLECTOR.get().expect("set before the thread starts");
            let outer = collector.enter();
            let inner = collector.enter();
            let result = (
                outer.thread_id(),
                inner.thread_id(),
                outer.state.get() & TRANSIENT != 0,
                inner.state.get() & OUTERMOST != 0,
            );
            drop(inner);
            drop(outer);
            *RESULT.lock().unwrap() = Some(result);
        }
    }
    thread_local! {
        static LATE: LateUser = const { LateUser };
    }
    COLLECTOR.get_or_init(Collector::new);
    std::thread::spawn(|| {
        // Registered before the thread's record owner, so destroyed after it.
        LATE.with(|_| {});
        drop(COLLECTOR.get().unwrap().enter());
    })
    .join()
    .unwrap();
    let (outer, inner, transient, inner_pinned) =
        RESULT.lock().unwrap().take().expect("the destructor ran");
    assert!(transient, "the late guard did not take a transient record");
    assert_eq!(
        outer, inner,
        "a guard nested in a transient one took another record"
    );
    assert!(
        !inner_pinned,
        "a guard nested in a transient one pinned again"
    );
}

#[test]
fn exited_threads_release_their_records() {
    let live = Arc::new(AtomicIsize::new(0));
    let collector = Collector::new();
    let mut ids = Vec::new();
    for round in 0..(8 * SCALE).min(40) {
        let (collector, live) = (&collector, &live);
        let id = std::thread::scope(|s| {
            s.spawn(move || {
                let guard = collector.enter();
                for i in 0..BATCH + 3 {
                    // SAFETY: never published.
                    unsafe {
                        guard.defer_retire(
                            Tracked::new(live, (round + i) as u64),
                            boxed::<Tracked>,
                            0,
                        )
                    };
                }
                guard.thread_id()
            })
            .join()
            .unwrap()
        });
        ids.push(id);
    }
    // Records are reused: far fewer ids than threads (other tests run concurrently).
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert!(distinct.len() < ids.len(), "ids not reused: {ids:?}");
    // Exited threads' records are inactive, so a pass frees the sealed batches.
    let guard = collector.enter();
    drop(guard);
    drop(collector);
    assert_eq!(live.load(Ordering::Relaxed), 0);
}

/// Writes `tag` over the two words of a 16-byte object.
///
/// # Safety
///
/// `object` is 16 bytes of memory handed out by `Pages::alloc`, not freed.
unsafe fn tag(object: *mut u8, tag: u64) {
    // SAFETY: per the caller; slots are 8-aligned.
    unsafe { object.cast::<[u64; 2]>().write([tag, !tag]) };
}

/// Checks that an object still holds `expected`.
///
/// # Safety
///
/// As for [`tag`], and `object` was tagged.
unsafe fn check_tag(object: *mut u8, expected: u64) {
    // SAFETY: per the caller.
    let words = unsafe { object.cast::<[u64; 2]>().read() };
    assert_eq!(
        words,
        [expected, !expected],
        "an object's memory was handed out twice"
    );
}

/// Objects of pages sent to another thread to free.
struct Objects(Vec<(*mut u8, u64)>);

// SAFETY: the objects are plain memory of pages, which any thread may free.
unsafe impl Send for Objects {}

/// Pages hand out distinct slots inside themselves, and go back to the allocator once every
/// object in them is freed (from any thread) and no slot owns them; freed slots are handed out
/// again before a new page is taken.
#[test]
fn pages_hand_out_distinct_slots_and_give_back_empty_pages() {
    let layout = Layout::new::<[u64; 2]>();
    let pages = Pages::new(layout);
    let per_page = PAGE / layout.size() - 16;
    // Stands for a slot's page.
    let mut current = ptr::null_mut();
    let n = per_page * 5 / 2;
    let objects: Vec<(*mut u8, u64)> = (0..n as u64)
        .map(|i| {
            // SAFETY: `current` is ours; the object is ours until freed.
            unsafe {
                let object = pages.alloc(&mut current).as_ptr();
                tag(object, i);
                (object, i)
            }
        })
        .collect();
    let mut addresses: Vec<usize> = objects.iter().map(|(p, _)| p.addr()).collect();
    addresses.sort_unstable();
    assert!(
        addresses.windows(2).all(|w| w[1] - w[0] >= layout.size()),
        "two objects overlap"
    );
    // Two pages given up when they ran out, and the one in use.
    assert_eq!(pages.count(1), 3);
    let free = |objects: &[(*mut u8, u64)]| {
        for &(object, i) in objects {
            // SAFETY: handed out above, tagged, freed once.
            unsafe {
                check_tag(object, i);
                pages::free(object);
            }
        }
    };
    let (ours, theirs) = objects.split_at(n / 2);
    let theirs = Objects(theirs.to_vec());
    std::thread::scope(|s| {
        s.spawn(move || {
            let theirs = theirs;
            free(&theirs.0)
        });
        free(ours);
    });
    // Only the page in use is left.
    assert_eq!(pages.count(1), 1);
    // Its freed slots come back before any new page.
    for i in 0..per_page as u64 / 2 {
        // SAFETY: as above; freed at once.
        unsafe {
            let object = pages.alloc(&mut current).as_ptr();
            tag(object, i);
            check_tag(object, i);
            pages::free(object);
        }
    }
    assert_eq!(pages.count(1), 1);
    // SAFETY: nothing is in use; `current` once.
    unsafe { pages.free_all(std::iter::once(current)) };
}

/// Two threads take objects from their own pages and free half of them on the other thread,
/// keeping some alive across rounds: no object's memory is handed out while it is in use
/// (each keeps its tag), and once all are freed only the two pages the threads own remain.
#[test]
fn pages_under_frees_from_other_threads() {
    let layout = Layout::new::<[u64; 2]>();
    let pages = Pages::new(layout);
    let (rounds, batch) = if cfg!(miri) { (4, 300) } else { (200, 5_000) };
    let (to_first, from_second) = std::sync::mpsc::channel::<Objects>();
    let (to_second, from_first) = std::sync::mpsc::channel::<Objects>();
    let run = |thread: u64,
               send: std::sync::mpsc::Sender<Objects>,
               receive: std::sync::mpsc::Receiver<Objects>| {
        let pages = &pages;
        move || {
            let mut current = ptr::null_mut();
            let mut kept: Vec<(*mut u8, u64)> = Vec::new();
            for round in 0..rounds {
                let mut sent = Vec::new();
                for i in 0..batch {
                    let id = thread << 48 | (round as u64) << 24 | i as u64;
                    // SAFETY: `current` is this thread's; the object is ours until freed.
                    let object = unsafe { pages.alloc(&mut current) }.as_ptr();
                    // SAFETY: ours.
                    unsafe { tag(object, id) };
                    if i % 2 == 0 {
                        sent.push((object, id));
                    } else {
                        kept.push((object, id));
                    }
                }
                send.send(Objects(sent)).expect("the other thread receives");
                let received = receive.recv().expect("the other thread sends");
                // Free what the other thread sent, and the older half of what we kept.
                let older = kept.len() / 2;
                for (object, id) in received.0.into_iter().chain(kept.drain(..older)) {
                    // SAFETY: handed out, tagged, and freed once, here.
                    unsafe {
                        check_tag(object, id);
                        pages::free(object);
                    }
                }
            }
            for (object, id) in kept {
                // SAFETY: as above.
                unsafe {
                    check_tag(object, id);
                    pages::free(object);
                }
            }
            OwnedPage(current)
        }
    };
    let owned: Vec<OwnedPage> = std::thread::scope(|s| {
        let first = s.spawn(run(1, to_second, from_second));
        let second = s.spawn(run(2, to_first, from_first));
        [first, second].map(|t| t.join().expect("no panic")).into()
    });
    assert_eq!(pages.count(2), 2, "pages left unowned with nothing in use");
    // SAFETY: nothing is in use; each thread's page once.
    unsafe { pages.free_all(owned.into_iter().map(|page| page.0)) };
}

/// A thread's page, handed back when the thread ends.
struct OwnedPage(*mut pages::Page);

// SAFETY: the thread that owned it has ended.
unsafe impl Send for OwnedPage {}
