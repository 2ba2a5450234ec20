//! Thread records: the ids under which threads own one slot in every collector.

use super::*;

/// A thread's claim on an id, under which it owns one [`Slot`] in every collector.
///
/// # Invariants
///
/// - `state` is [`FREE`], [`OWNED`], [`ORPHAN`] or [`ADOPTING`]. The thread whose
///   `compare_exchange` took it from `FREE` to `OWNED`, or from `ORPHAN` to `ADOPTING`
///   (acquire), owns the record, and with it the slot of id `id` in every collector, until it
///   stores `FREE` or `ORPHAN` (release). A thread owns the record while it lives (a
///   thread-local gives it back at exit), or a collector's pass owns it for a moment to adopt
///   what an exited thread left (see [`Collector::adopt_orphans`]); other passes wait for that
///   moment to end rather than skip the record.
/// - `bags` counts the slots of this id, over all collectors, whose bag is not empty. A
///   record given back with `bags > 0` is `ORPHAN`: no new thread takes it (its slots hold
///   the previous owner's retired objects, which only passes free) until the collectors'
///   passes have adopted them all.
/// - Records are never freed (they are reachable from `REGISTRY` forever); `next` is written
///   before the record is published and never changes afterwards.
pub(super) struct Record {
    pub(super) state: AtomicU8,
    pub(super) bags: AtomicUsize,
    pub(super) id: usize,
    pub(super) next: AtomicPtr<Record>,
}

/// [`Record::state`]: no thread owns the record.
pub(super) const FREE: u8 = 0;
/// [`Record::state`]: a thread owns the record.
pub(super) const OWNED: u8 = 1;
/// [`Record::state`]: no thread owns the record, and some collector holds a bag of it.
pub(super) const ORPHAN: u8 = 2;
/// [`Record::state`]: a collector's pass owns an orphan record for a moment, to adopt its bag.
pub(super) const ADOPTING: u8 = 3;

/// The head of the list of all records ever created.
pub(super) static REGISTRY: AtomicPtr<Record> = AtomicPtr::new(ptr::null_mut());
/// The id of the next record created.
pub(super) static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
/// How many times a thread gave its record back at exit (after the release store): a
/// collector that sees it change adopts the bags of the exited threads.
pub(super) static EXITS: AtomicU64 = AtomicU64::new(0);

impl Record {
    /// Claims a free record, or creates one.
    pub(super) fn claim() -> &'static Record {
        for record in records() {
            if record.try_take(FREE, OWNED) {
                return record;
            }
        }
        let record: &'static Record = Box::leak(Box::new(Record {
            state: AtomicU8::new(OWNED),
            bags: AtomicUsize::new(0),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            next: AtomicPtr::new(ptr::null_mut()),
        }));
        let mut head = REGISTRY.load(Ordering::Relaxed);
        loop {
            record.next.store(head, Ordering::Relaxed);
            match REGISTRY.compare_exchange_weak(
                head,
                record as *const Record as *mut Record,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return record,
                Err(actual) => head = actual,
            }
        }
    }

    /// Takes the record if it is in state `from` (`FREE` or `ORPHAN`), moving it to `to`.
    pub(super) fn try_take(&self, from: u8, to: u8) -> bool {
        self.state.load(Ordering::Relaxed) == from
            && self
                .state
                .compare_exchange(from, to, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Takes an orphan record for adoption, waiting for another pass that holds it; false if
    /// it is not an orphan.
    pub(super) fn take_orphan(&self) -> bool {
        loop {
            match self.state.load(Ordering::Relaxed) {
                ORPHAN if self.try_take(ORPHAN, ADOPTING) => return true,
                ORPHAN => {}
                // Another pass seals its bag in some collector: a few memory operations.
                ADOPTING => std::hint::spin_loop(),
                _ => return false,
            }
        }
    }

    /// Gives the record back; everything its owner did happens-before the next claim.
    pub(super) fn release(&self) {
        self.state.store(ORPHAN, Ordering::Release);
        // A bag emptied meanwhile (a collector dropped) leaves it free.
        if self.bags.load(Ordering::Acquire) == 0 {
            let _ = self
                .state
                .compare_exchange(ORPHAN, FREE, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// Counts a bag of this record that became empty other than by its owner.
    pub(super) fn bag_emptied(&self) {
        if self.bags.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = self
                .state
                .compare_exchange(ORPHAN, FREE, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

/// Every record ever created.
pub(super) fn records() -> impl Iterator<Item = &'static Record> {
    let mut p = REGISTRY.load(Ordering::Acquire);
    std::iter::from_fn(move || {
        // SAFETY: records are never freed and were fully initialized before publication
        // (release CAS on the head, acquire loads here).
        let record = unsafe { p.as_ref()? };
        p = record.next.load(Ordering::Acquire);
        Some(record)
    })
}

thread_local! {
    /// Open sections of this thread during which reclamation passes are deferred.
    pub(super) static HOLD: Cell<usize> = const { Cell::new(0) };
    /// Whether a pass was deferred by such a section.
    pub(super) static DEFERRED: Cell<bool> = const { Cell::new(false) };

    /// The current thread's record (no destructor, so no registration check).
    pub(super) static LOCAL: Cell<Option<&'static Record>> = const { Cell::new(None) };
    /// Where the hot path finds the thread's slot: `id * size_of::<Slot>()`, the byte offset of
    /// the slot of `LOCAL`'s record in every collector's `first`, if `LOCAL` holds a record of
    /// id `id < FIRST_SLOTS`; [`FAR`] otherwise (no record yet, or a slot in a bucket). So one
    /// load and one compare find the slot, with no check of `LOCAL` and no multiplication.
    /// Written only by [`set_local`], together with `LOCAL`.
    pub(super) static NEAR: Cell<usize> = const { Cell::new(FAR) };
    /// Releases the current thread's record when the thread exits.
    pub(super) static OWNER: RecordOwner = const { RecordOwner(Cell::new(None)) };
}

/// Owns the current thread's record; its destructor gives it back.
///
/// No guard of the thread is alive then: guards live on the stack of an operation, and the
/// map's operations never store one; an operation run by a later thread-local destructor finds
/// `LOCAL` empty and claims a record for that guard and those nested in it (see `register`).
pub(super) struct RecordOwner(Cell<Option<&'static Record>>);

impl Drop for RecordOwner {
    fn drop(&mut self) {
        set_local(None);
        if let Some(record) = self.0.take() {
            record.release();
            EXITS.fetch_add(1, Ordering::Release);
        }
    }
}

/// Claims a record for the current thread, on its first guard: the thread's own until it exits
/// (then `false`), or, if the thread is exiting, for that guard and the guards opened while it
/// lives (then `true`, "transient": the guard clears `LOCAL` and gives the record back when it
/// is dropped). Either way `LOCAL` holds the record meanwhile, so guards nested in this one
/// share its slots (`SyncMap`'s locked lookup relies on it: it opens a nested guard and hands
/// what it found to the caller's). Returns the record's id by value (not a guard), so that the
/// guard of the hit path stays in registers.
#[cold]
#[inline(never)]
pub(super) fn register() -> (usize, bool) {
    let record = Record::claim();
    let registered = OWNER
        .try_with(|owner| {
            owner.0.set(Some(record));
        })
        .is_ok();
    set_local(Some(record));
    (record.id, !registered)
}

/// [`NEAR`] when no slot is inside the collector.
pub(super) const FAR: usize = usize::MAX;

/// Sets `LOCAL` and, to match it, `NEAR`.
pub(super) fn set_local(record: Option<&'static Record>) {
    let near = match record {
        Some(record) if record.id < FIRST_SLOTS => record.id * mem::size_of::<Slot>(),
        _ => FAR,
    };
    // Thread-locals without destructors: always accessible, even while the thread exits.
    LOCAL.with(|local| local.set(record));
    NEAR.with(|n| n.set(near));
}

/// The current thread's record, while it holds a guard: `register` sets `LOCAL` before the
/// thread's first guard opens, and it is cleared only when no guard of the thread is alive (by
/// `RecordOwner` at thread exit, or at the end of a transient guard, after the guards nested in
/// it). So it is the record that owns the slots of every guard the thread holds, and guards
/// need not carry it (the hit path keeps one register and one store fewer).
#[inline]
pub(super) fn current_record() -> &'static Record {
    match LOCAL.with(Cell::get) {
        Some(record) => record,
        None => unreachable!("a guard is alive, so the thread's record is in LOCAL"),
    }
}
