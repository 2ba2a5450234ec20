//! One lookup's progress, shared by the blocking path ([`RedisTier::lookup`]) and the async
//! one (`aio`): the [`LOOKUP`](super::LOOKUP) script's arguments, and what each reply means.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis as client;

use super::{codec, lock_key, token, Counters, Event, Found, RedisTier, Ticket, TierErrorKind};

/// A parsed reply of [`LOOKUP`](super::LOOKUP).
enum LookupReply {
    Value(Vec<u8>, i64),
    Locked,
    Busy(i64),
    Refused,
    Unexpected,
}

fn parse_lookup(reply: client::Value) -> LookupReply {
    use client::Value;
    let Value::Array(items) = reply else {
        return LookupReply::Unexpected;
    };
    let mut items = items.into_iter();
    match (items.next(), items.next(), items.next()) {
        (Some(Value::Int(1)), Some(Value::BulkString(bytes)), Some(Value::Int(pttl))) => {
            LookupReply::Value(bytes, pttl)
        }
        (Some(Value::Int(2)), None, None) => LookupReply::Locked,
        (Some(Value::Int(3)), Some(Value::Int(pttl)), None) => LookupReply::Busy(pttl),
        (Some(Value::Int(4)), _, _) => LookupReply::Refused,
        _ => LookupReply::Unexpected,
    }
}

/// One lookup's progress, shared by the blocking loop ([`RedisTier::lookup`]) and the async
/// one (`aio`): the script's arguments, and what each reply means. Only the waiting differs.
pub(in crate::tier::redis) struct LookupLoop {
    tier: Arc<RedisTier>,
    key: String,
    lock: String,
    /// This lookup's lock token (moved into the ticket if the lock is taken).
    token: String,
    lock_ms: u64,
    /// The key's hash, as announcements name it.
    hash: u64,
    /// Whether the ticket is released on the I/O thread if dropped.
    asynchronous: bool,
    /// When waiting for another process ends (set at the first "busy" reply).
    deadline: Option<Instant>,
}

/// What a lookup does after a reply.
pub(in crate::tier::redis) enum Step {
    /// It has its answer.
    Done(Found),
    /// Another process holds the lock: register as a waiter for the key's announcement, then
    /// ask again at once (an announcement between the two is not lost).
    Register,
    /// Wait for the announcement until then (a bounded poll), then ask again.
    Wait(Instant),
}

impl LookupLoop {
    pub(in crate::tier::redis) fn new(
        tier: &Arc<RedisTier>,
        key: &str,
        asynchronous: bool,
    ) -> LookupLoop {
        LookupLoop {
            tier: Arc::clone(tier),
            key: key.to_string(),
            lock: lock_key(key),
            token: token(),
            lock_ms: tier.config.lock_timeout.as_millis().max(1) as u64,
            hash: codec::fnv1a(&[key.as_bytes()]),
            asynchronous,
            deadline: None,
        }
    }

    /// The [`LOOKUP`](super::LOOKUP) script for this key: the value, or else the lock.
    pub(in crate::tier::redis) fn invocation(&self) -> client::ScriptInvocation<'_> {
        let mut invocation = self.tier.lookup_script.prepare_invoke();
        invocation
            .key(&self.key)
            .key(&self.lock)
            .arg(&self.token)
            .arg(self.lock_ms);
        invocation
    }

    /// Whether this lookup registered as a waiter.
    pub(in crate::tier::redis) fn registered(&self) -> bool {
        self.deadline.is_some()
    }

    /// The key's hash, as the waiters are registered.
    pub(in crate::tier::redis) fn hash(&self) -> u64 {
        self.hash
    }

    /// Computing without the tier's lock (after a fault of `fault`, or a wait timeout).
    fn unlocked(&self, fault: Option<TierErrorKind>) -> Step {
        let ticket = Ticket::unlocked(Arc::clone(&self.tier), &self.key);
        Step::Done(Found::Compute(match fault {
            Some(kind) => ticket.faulted(kind),
            None => ticket,
        }))
    }

    /// What the reply to [`invocation`](Self::invocation) means (faults are counted where
    /// they happen, the other events here).
    pub(in crate::tier::redis) fn step(
        &mut self,
        reply: Result<client::Value, TierErrorKind>,
        counters: &Counters,
    ) -> Step {
        let reply = match reply {
            Ok(reply) => reply,
            Err(kind) => return self.unlocked(Some(kind)),
        };
        match parse_lookup(reply) {
            LookupReply::Value(bytes, pttl) => Step::Done(Found::Value {
                bytes,
                ttl_left: (pttl >= 0).then(|| Duration::from_millis(pttl as u64)),
            }),
            LookupReply::Locked => Step::Done(Found::Compute(Ticket {
                tier: Some(Arc::clone(&self.tier)),
                key: self.key.clone(),
                token: Some(std::mem::take(&mut self.token)),
                asynchronous: self.asynchronous,
                fault: None,
            })),
            LookupReply::Busy(lock_left) => {
                let now = Instant::now();
                match self.deadline {
                    None => {
                        counters.bump(Event::Wait);
                        let left = Duration::from_millis(lock_left.max(0) as u64)
                            .min(self.tier.config.lock_timeout);
                        self.deadline = Some(now + left);
                        Step::Register
                    }
                    Some(deadline) if now >= deadline => {
                        counters.bump(Event::WaitTimeout);
                        self.unlocked(None)
                    }
                    Some(deadline) => {
                        Step::Wait((now + self.tier.config.poll_interval).min(deadline))
                    }
                }
            }
            LookupReply::Refused => {
                counters.bump(Event::Error);
                self.tier.fault_seen("the lock could not be written");
                self.unlocked(Some(TierErrorKind::Refused))
            }
            LookupReply::Unexpected => {
                counters.bump(Event::Error);
                self.unlocked(Some(TierErrorKind::Refused))
            }
        }
    }
}
