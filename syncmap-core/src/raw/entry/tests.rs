//! The entry's layout and its holds.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

use super::counted::{HOLD, HOLDS_BITS, HOLDS_COUNT, HOLDS_SHIFT, MAX_HOLDS};
use super::{Entry, EntryPtr};
use crate::raw::epoch::Collector;
use crate::raw::sync;

/// A counted entry is four words: its holds share the hash's word (a `u64` key and an
/// `Arc` value take a 48-byte glibc chunk with the collector's header, not a 64-byte one).
#[test]
fn a_counted_entry_keeps_its_holds_in_the_hash_word() {
    const { assert!(Entry::<u64, Arc<u64>>::COUNTED) };
    assert_eq!(EntryPtr::<u64, Arc<u64>>::LAYOUT.size(), 32);
    assert_eq!(EntryPtr::<u64, u64>::LAYOUT.size(), 32);
}

/// Every bit of the hash outside the holds' field comes back, whatever the holds.
#[test]
fn the_stored_hash_keeps_every_bit_a_table_reads() {
    let collector = Collector::new();
    let guard = sync::enter(&collector);
    for hash in [u64::MAX, 0, 0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210] {
        let counted = EntryPtr::new(1u64, hash, Arc::new(1u64), &guard);
        let plain = EntryPtr::new(1u64, hash, 1u64, &guard);
        assert_eq!(counted.hash(), hash & !HOLDS_BITS);
        assert_eq!(plain.hash(), hash & !HOLDS_BITS);
        let first = counted.value.load(SeqCst);
        let held = counted
            .hold_first(first)
            .expect("the first value is counted");
        assert_eq!(counted.hash(), hash & !HOLDS_BITS);
        Entry::unhold(held);
        // SAFETY: never published; freed once.
        unsafe {
            counted.free();
            plain.free();
        }
    }
}

/// An exchange past the holds' field waits for another to end instead of carrying into
/// the mark and the hash.
#[test]
fn holds_never_overflow_into_the_hash() {
    let collector = Collector::new();
    let guard = sync::enter(&collector);
    let hash = 0x0123_4567_89ab_cdef;
    let entry = EntryPtr::new(7u64, hash, Arc::new(7u64), &guard);
    let first = entry.value.load(SeqCst);
    // The entry's own hold is the first.
    let held: Vec<_> = (1..MAX_HOLDS)
        .map(|_| entry.hold_first(first).expect("counted"))
        .collect();
    let count = |e: &Entry<u64, Arc<u64>>| (e.hash_word.load(SeqCst) & HOLDS_COUNT) >> HOLDS_SHIFT;
    assert_eq!(count(&entry), MAX_HOLDS);
    let taken = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            let held = entry.hold_first(entry.value.load(SeqCst)).expect("counted");
            taken.store(true, SeqCst);
            let full = count(&entry);
            Entry::unhold(held);
            full
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !taken.load(SeqCst),
            "a hold past the field's capacity was taken"
        );
        Entry::unhold(held[0]);
        assert_eq!(waiter.join().expect("the waiter returns"), MAX_HOLDS);
        assert_eq!(entry.hash(), hash & !HOLDS_BITS);
    });
    for counted in held.into_iter().skip(1) {
        Entry::unhold(counted);
    }
    assert_eq!(entry.hash_word.load(SeqCst) & HOLDS_BITS, HOLD);
    // SAFETY: never published; freed once.
    unsafe { entry.free() };
}
