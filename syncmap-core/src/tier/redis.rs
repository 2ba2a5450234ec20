//! The Redis tier: connection, the cross-process lock, publication and invalidation messages.
//!
//! Install it once at start-up with [`install`] (or [`install_with`] for other timeouts and
//! sizes), or set the environment variable [`ENV_VAR`] (`SYNCMEMO_REDIS_URL`): the first
//! `shared` call then installs it from there. Without a tier, `shared` functions cache locally
//! only (and count [`TierStats::skipped`](super::TierStats::skipped)).
//!
//! ```no_run
//! use std::time::Duration;
//! use syncmap_core::tier::redis;
//!
//! // AUTH and the database come from the URL; `rediss://` needs the `redis-tls` feature.
//! redis::install_with(
//!     redis::Config::new("redis://:secret@127.0.0.1:6379/0")
//!         .namespace("checkout")
//!         .command_timeout(Duration::from_millis(100)),
//! )?;
//! # Ok::<(), redis::Error>(())
//! ```
//!
//! The URL's password is never printed: [`Config`]'s `Debug`, errors and log lines show
//! `redis://:***@127.0.0.1:6379/0`.
//!
//! A synchronous function's calls to Redis run on the calling thread with the blocking client,
//! bounded by the connect and command timeouts; connections are pooled (up to 16 idle). An
//! `async fn`'s calls never block its executor: they run on the tier's own I/O thread
//! (`syncmemo-redis-io`, started on the first one, with a private single-threaded tokio runtime
//! that the `redis` crate's async client needs) over one multiplexed connection, and the
//! calling future awaits their end, whatever executor polls it. One background thread per
//! installed tier listens on the namespace's channel (`{namespace}:__syncmemo`).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis as client;
use arc_swap::ArcSwapOption;
use parking_lot::{Condvar, Mutex};

use super::codec;
use super::{Counters, Event, Listener, TierErrorKind};

mod aio;
mod lookup;
pub(crate) use aio::lookup_async;
use lookup::{LookupLoop, Step};

/// The environment variable read when a `shared` function first runs and no tier is installed.
pub const ENV_VAR: &str = "SYNCMEMO_REDIS_URL";

/// Idle connections kept for reuse.
const POOL: usize = 16;
/// The first back-off after a connection fault; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How to reach Redis and how the tier behaves.
///
/// ```
/// use std::time::Duration;
/// use syncmap_core::tier::redis::Config;
///
/// let config = Config::new("redis://user:hunter2@cache.internal:6379/2")
///     .namespace("web")
///     .lock_timeout(Duration::from_secs(2));
/// assert!(!format!("{config:?}").contains("hunter2"));
/// ```
#[derive(Clone)]
pub struct Config {
    url: String,
    namespace: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    lock_timeout: Duration,
    poll_interval: Duration,
    max_value_bytes: usize,
}

impl Config {
    /// The defaults for `url`: namespace `syncmemo`, connect and command timeouts 250 ms, lock
    /// lifetime 5 s, poll interval 100 ms, values up to 1 MiB.
    ///
    /// ```
    /// let config = syncmap_core::tier::redis::Config::new("redis://127.0.0.1/");
    /// # let _ = config;
    /// ```
    pub fn new(url: impl Into<String>) -> Config {
        Config {
            url: url.into(),
            namespace: "syncmemo".to_string(),
            connect_timeout: Duration::from_millis(250),
            command_timeout: Duration::from_millis(250),
            lock_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(100),
            max_value_bytes: 1 << 20,
        }
    }

    /// The first part of every key and of the channel: letters, digits, `_`, `-` and `.` only
    /// (checked by [`install_with`]). Processes share values only within one namespace; change
    /// it to start cold (for example when a function's body changes but not its signature).
    ///
    /// ```
    /// let config = syncmap_core::tier::redis::Config::new("redis://127.0.0.1/").namespace("v2");
    /// # let _ = config;
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Config {
        self.namespace = namespace.into();
        self
    }

    /// How long to wait for a connection (default 250 ms).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let config = syncmap_core::tier::redis::Config::new("redis://127.0.0.1/")
    ///     .connect_timeout(Duration::from_millis(50));
    /// # let _ = config;
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Config {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for a reply (default 250 ms). A command past it counts a timeout, and
    /// the call computes locally.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let config = syncmap_core::tier::redis::Config::new("redis://127.0.0.1/")
    ///     .command_timeout(Duration::from_millis(50));
    /// # let _ = config;
    /// ```
    pub fn command_timeout(mut self, timeout: Duration) -> Config {
        self.command_timeout = timeout;
        self
    }

    /// The lifetime of a key's lock (default 5 s): other processes wait at most this long for
    /// its owner's value, then compute themselves. Set it above the function's usual running
    /// time (a longer computation is then done twice, never wrong), and as low as a crashed
    /// owner may delay the others.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let config = syncmap_core::tier::redis::Config::new("redis://127.0.0.1/")
    ///     .lock_timeout(Duration::from_secs(30));
    /// # let _ = config;
    /// ```
    pub fn lock_timeout(mut self, timeout: Duration) -> Config {
        self.lock_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How often a waiting process asks Redis again if no announcement came (default 100 ms).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let config = syncmap_core::tier::redis::Config::new("redis://127.0.0.1/")
    ///     .poll_interval(Duration::from_millis(20));
    /// # let _ = config;
    /// ```
    pub fn poll_interval(mut self, interval: Duration) -> Config {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The largest encoded value written to Redis (default 1 MiB); larger ones stay local and
    /// count [`TierStats::oversized`](super::TierStats::oversized).
    ///
    /// ```
    /// let config = syncmap_core::tier::redis::Config::new("redis://127.0.0.1/")
    ///     .max_value_bytes(64 * 1024);
    /// # let _ = config;
    /// ```
    pub fn max_value_bytes(mut self, bytes: usize) -> Config {
        self.max_value_bytes = bytes;
        self
    }
}

impl fmt::Debug for Config {
    /// Every field, the URL without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &redact(&self.url))
            .field("namespace", &self.namespace)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("max_value_bytes", &self.max_value_bytes)
            .finish()
    }
}

/// Why [`install`] refused a URL or configuration. Its text never contains the password.
///
/// ```
/// let error = syncmap_core::tier::redis::install("http://:hunter2@example/").unwrap_err();
/// assert!(!error.to_string().contains("hunter2"));
/// ```
#[derive(Debug, Clone)]
pub struct Error {
    message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The URL with its password replaced by `***`.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return "<not a URL>".to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user_info = &rest[..at];
            let user = user_info.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..scheme_end], user, &rest[at..])
        }
        None => url.to_string(),
    }
}

/// Installs the tier for every `shared` function of the process, replacing any installed
/// before. The URL is checked here (syntax, scheme, TLS support); the connection is made on
/// first use, so a Redis that is down at start-up only makes calls compute locally until it is
/// up.
///
/// # Errors
///
/// A URL the client does not accept (`redis://`, `rediss://` with the `redis-tls` feature,
/// `unix://`), or a namespace with other characters than letters, digits, `_`, `-` and `.`.
///
/// ```no_run
/// syncmap_core::tier::redis::install("redis://127.0.0.1:6379/0")?;
/// # Ok::<(), syncmap_core::tier::redis::Error>(())
/// ```
pub fn install(url: &str) -> Result<(), Error> {
    install_with(Config::new(url))
}

/// [`install`] with a [`Config`].
///
/// # Errors
///
/// As [`install`].
///
/// ```no_run
/// use syncmap_core::tier::redis::{install_with, Config};
/// install_with(Config::new("redis://127.0.0.1/").namespace("search"))?;
/// # Ok::<(), syncmap_core::tier::redis::Error>(())
/// ```
pub fn install_with(config: Config) -> Result<(), Error> {
    let tier = RedisTier::new(config)?;
    if let Some(old) = TIER.swap(Some(tier)) {
        old.stop.store(true, Ordering::Release);
    }
    Ok(())
}

/// Installs the tier from [`ENV_VAR`] if it is set; `Ok(false)` if it is not.
///
/// # Errors
///
/// As [`install`], for the variable's URL.
///
/// ```no_run
/// if !syncmap_core::tier::redis::install_from_env()? {
///     eprintln!("SYNCMEMO_REDIS_URL not set: caching locally only");
/// }
/// # Ok::<(), syncmap_core::tier::redis::Error>(())
/// ```
pub fn install_from_env() -> Result<bool, Error> {
    match std::env::var(ENV_VAR) {
        Ok(url) => install(&url).map(|()| true),
        Err(_) => Ok(false),
    }
}

/// Removes the installed tier: `shared` functions then cache locally only. Its listening
/// thread ends within a second.
///
/// ```
/// syncmap_core::tier::redis::uninstall();
/// ```
pub fn uninstall() {
    ENV_TRIED.store(true, Ordering::Release);
    if let Some(old) = TIER.swap(None) {
        old.stop.store(true, Ordering::Release);
    }
}

static TIER: ArcSwapOption<RedisTier> = ArcSwapOption::const_empty();
static ENV_TRIED: AtomicBool = AtomicBool::new(false);

/// The installed tier, installing it from the environment on first use.
pub(crate) fn current() -> Option<Arc<RedisTier>> {
    if let Some(tier) = TIER.load_full() {
        return Some(tier);
    }
    if !ENV_TRIED.swap(true, Ordering::AcqRel) {
        if let Err(_error) = install_from_env() {
            #[cfg(feature = "tracing")]
            tracing::warn!("syncmemo: {ENV_VAR} was not accepted: {_error}");
        }
    }
    TIER.load_full()
}

/// The local caches that remote invalidations reach, by `{path}:{fingerprint}`.
static LISTENERS: Mutex<Option<HashMap<String, Vec<&'static dyn Listener>>>> = Mutex::new(None);

/// Registers `memo` for invalidation messages (once per cache).
pub(crate) fn listen(function: String, memo: &'static dyn Listener) {
    let mut listeners = LISTENERS.lock();
    let list = listeners
        .get_or_insert_with(HashMap::new)
        .entry(function)
        .or_default();
    let address = memo as *const dyn Listener as *const ();
    if !list
        .iter()
        .any(|known| std::ptr::eq(*known as *const dyn Listener as *const (), address))
    {
        list.push(memo);
    }
}

fn listeners_of(function: &str) -> Vec<&'static dyn Listener> {
    LISTENERS
        .lock()
        .as_ref()
        .and_then(|map| map.get(function).cloned())
        .unwrap_or_default()
}

/// What a lookup found.
pub(crate) enum Found {
    /// The value's bytes and the TTL Redis has left on them.
    Value {
        bytes: Vec<u8>,
        ttl_left: Option<Duration>,
    },
    /// Compute (with the lock, or without after a fault or a wait timeout).
    Compute(Ticket),
}

/// The right to publish a computed value: holds the key's lock if it was taken. Dropping it
/// unpublished (the body panicked or its value is not kept) releases the lock and wakes the
/// waiting processes, one of which then takes it.
pub(crate) struct Ticket {
    tier: Option<Arc<RedisTier>>,
    key: String,
    token: Option<String>,
    /// Taken by an async lookup: released on the I/O thread if dropped (never blocking).
    asynchronous: bool,
    /// Why the tier could not answer, if it could not (the caller computes without it).
    fault: Option<TierErrorKind>,
}

impl Ticket {
    /// Compute without publishing (no tier).
    pub(crate) fn none() -> Ticket {
        Ticket {
            tier: None,
            key: String::new(),
            token: None,
            asynchronous: false,
            fault: None,
        }
    }

    /// Compute, then write without holding the lock.
    pub(crate) fn unlocked(tier: Arc<RedisTier>, key: &str) -> Ticket {
        Ticket {
            tier: Some(tier),
            key: key.to_string(),
            token: None,
            asynchronous: false,
            fault: None,
        }
    }

    /// This ticket, marked as given after a fault of `kind`.
    pub(crate) fn faulted(mut self, kind: TierErrorKind) -> Ticket {
        self.fault = Some(kind);
        self
    }

    /// Why the tier could not answer, if it could not.
    pub(crate) fn fault(&self) -> Option<TierErrorKind> {
        self.fault
    }

    /// Writes the value's bytes with the TTL, releases the lock, announces the key.
    pub(crate) fn publish(mut self, bytes: Vec<u8>, ttl: Option<Duration>, counters: &Counters) {
        let Some(tier) = self.tier.take() else {
            return;
        };
        let token = self.token.take();
        if bytes.len() > tier.config.max_value_bytes {
            counters.bump(Event::Oversized);
            tier.release(&self.key, token.as_deref(), counters);
            return;
        }
        tier.publish(&self.key, &bytes, ttl, token.as_deref(), counters);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let (Some(tier), Some(token)) = (self.tier.take(), self.token.take()) {
            if self.asynchronous {
                aio::spawn_release(tier, std::mem::take(&mut self.key), token);
            } else {
                tier.release(&self.key, Some(&token), &Counters::default());
            }
        }
    }
}

/// A process waiting for a key's value: a blocked thread (the condition variable) or an async
/// lookup on the I/O thread (the event).
#[derive(Default)]
struct Waiter {
    woken: Mutex<bool>,
    condvar: Condvar,
    event: event_listener::Event,
    /// The async caller went away: stop waiting.
    cancelled: AtomicBool,
}

impl Waiter {
    /// Whether it was woken since the last call (and clears it).
    fn take_woken(&self) -> bool {
        std::mem::take(&mut *self.woken.lock())
    }

    fn wake(&self) {
        *self.woken.lock() = true;
        self.condvar.notify_all();
        self.event.notify(usize::MAX);
    }
}

/// The waiters of this process, by hash of the key they wait for.
#[derive(Default)]
struct Waiters {
    map: Mutex<HashMap<u64, Vec<Arc<Waiter>>>>,
}

impl Waiters {
    fn register(&self, hash: u64) -> Arc<Waiter> {
        let waiter = Arc::new(Waiter::default());
        self.register_waiter(hash, &waiter);
        waiter
    }

    fn register_waiter(&self, hash: u64, waiter: &Arc<Waiter>) {
        self.map
            .lock()
            .entry(hash)
            .or_default()
            .push(Arc::clone(waiter));
    }

    fn unregister(&self, hash: u64, waiter: &Arc<Waiter>) {
        let mut map = self.map.lock();
        if let Some(list) = map.get_mut(&hash) {
            list.retain(|w| !Arc::ptr_eq(w, waiter));
            if list.is_empty() {
                map.remove(&hash);
            }
        }
    }

    fn notify(&self, hash: u64) {
        let list = self.map.lock().get(&hash).cloned().unwrap_or_default();
        for waiter in list {
            waiter.wake();
        }
    }
}

/// When the tier may talk to Redis again after a fault.
struct Health {
    down_until: Option<Instant>,
    backoff: Duration,
}

/// The installed tier.
pub(crate) struct RedisTier {
    client: client::Client,
    config: Config,
    /// The URL without its password, for log lines.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    shown_url: String,
    channel: String,
    /// Identifies this tier's own messages.
    sender: u64,
    pool: Mutex<Vec<client::Connection>>,
    /// The async client's connection (made on first use, on the I/O thread).
    multiplexed: tokio::sync::Mutex<Option<client::aio::MultiplexedConnection>>,
    health: Mutex<Health>,
    lookup_script: client::Script,
    publish_script: client::Script,
    release_script: client::Script,
    waiters: Arc<Waiters>,
    /// Whether a burst of faults is under way (logged at its start and end).
    burst: AtomicBool,
    stop: Arc<AtomicBool>,
}

/// The value, or the lock, in one round trip. Replies `{1, value, pttl}`, `{2}` (lock taken),
/// `{3, lock pttl}` (held by another), `{4, error}` (the lock could not be written: `OOM`...).
const LOOKUP: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return {1, v, redis.call('PTTL', KEYS[1])} end
local ok = redis.pcall('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2])
if type(ok) == 'table' and ok.err then return {4, ok.err} end
if ok then return {2} end
return {3, redis.call('PTTL', KEYS[2])}
";

/// Writes the value (with `PX` unless the TTL is `0`), deletes the lock if the token still
/// holds it, announces the key. Replies `{1}`, or `{0, error}` if the value was not written.
const PUBLISH: &str = r"
local r
if ARGV[2] ~= '0' then
  r = redis.pcall('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  r = redis.pcall('SET', KEYS[1], ARGV[1])
end
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
if type(r) == 'table' and r.err then return {0, r.err} end
return {1}
";

/// Deletes the lock if the token still holds it, and announces the key.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
";

/// A fresh random token (unique per lock taken: only its owner deletes the lock).
fn token() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    let high = hasher.finish();
    hasher.write_u64(high);
    format!("{high:016x}{:016x}", hasher.finish())
}

/// The lock of a value key (the encoded key has no `:`, so no value key ends like this).
fn lock_key(key: &str) -> String {
    format!("{key}:lock")
}

/// Messages on the namespace's channel: a tag byte, the sender (8 bytes), then the body.
const READY: u8 = b'R';
const INVALIDATE: u8 = b'D';
const CLEAR: u8 = b'C';

impl RedisTier {
    fn new(config: Config) -> Result<Arc<RedisTier>, Error> {
        let shown_url = redact(&config.url);
        if config.namespace.is_empty()
            || !config
                .namespace
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        {
            return Err(Error {
                message: format!(
                    "syncmemo: namespace {:?} must be letters, digits, '_', '-' or '.'",
                    config.namespace
                ),
            });
        }
        let client = client::Client::open(config.url.as_str()).map_err(|error| Error {
            message: format!(
                "syncmemo: Redis URL {shown_url} not accepted: {}",
                error.kind_text()
            ),
        })?;
        let tier = Arc::new(RedisTier {
            channel: format!("{}:__syncmemo", config.namespace),
            sender: codec::fnv1a(&[token().as_bytes()]),
            client,
            config,
            shown_url,
            pool: Mutex::new(Vec::new()),
            multiplexed: tokio::sync::Mutex::new(None),
            health: Mutex::new(Health {
                down_until: None,
                backoff: MIN_BACKOFF,
            }),
            lookup_script: client::Script::new(LOOKUP),
            publish_script: client::Script::new(PUBLISH),
            release_script: client::Script::new(RELEASE),
            waiters: Arc::default(),
            burst: AtomicBool::new(false),
            stop: Arc::default(),
        });
        tier.spawn_subscriber();
        Ok(tier)
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.config.namespace
    }

    fn message(&self, tag: u8, body: &[u8]) -> Vec<u8> {
        let mut message = Vec::with_capacity(9 + body.len());
        message.push(tag);
        message.extend_from_slice(&self.sender.to_le_bytes());
        message.extend_from_slice(body);
        message
    }

    /// Runs `op` on a pooled connection. `None` (counted, the tier backing off after a
    /// connection fault) if Redis cannot be reached or answers with an error.
    fn with<T>(
        &self,
        counters: &Counters,
        op: impl FnOnce(&mut client::Connection) -> client::RedisResult<T>,
    ) -> Option<T> {
        self.try_with(counters, op).ok()
    }

    /// [`with`](Self::with), saying what went wrong.
    fn try_with<T>(
        &self,
        counters: &Counters,
        op: impl FnOnce(&mut client::Connection) -> client::RedisResult<T>,
    ) -> Result<T, TierErrorKind> {
        if self.backing_off() {
            counters.bump(Event::Skipped);
            return Err(TierErrorKind::Unavailable);
        }
        let pooled = self.pool.lock().pop();
        let mut connection = match pooled {
            Some(connection) => connection,
            None => match self.connect() {
                Ok(connection) => connection,
                Err(error) => return Err(self.fault(counters, &error, true)),
            },
        };
        match op(&mut connection) {
            Ok(value) => {
                let mut pool = self.pool.lock();
                if pool.len() < POOL {
                    pool.push(connection);
                }
                drop(pool);
                self.healthy();
                Ok(value)
            }
            Err(error) => {
                // A reply error (OOM, script error) leaves the connection in sync; anything
                // else (timeouts, I/O) may leave a reply unread: drop the connection.
                let broken =
                    breaks_connection(&error) || !client::ConnectionLike::is_open(&connection);
                if !broken {
                    let mut pool = self.pool.lock();
                    if pool.len() < POOL {
                        pool.push(connection);
                    }
                }
                Err(self.fault(counters, &error, broken))
            }
        }
    }

    /// Whether the tier is backing off after a connection fault.
    fn backing_off(&self) -> bool {
        self.health
            .lock()
            .down_until
            .is_some_and(|until| Instant::now() < until)
    }

    fn connect(&self) -> client::RedisResult<client::Connection> {
        let connection = self
            .client
            .get_connection_with_timeout(self.config.connect_timeout)?;
        connection.set_read_timeout(Some(self.config.command_timeout))?;
        connection.set_write_timeout(Some(self.config.command_timeout))?;
        Ok(connection)
    }

    /// Counts a fault, backs off after a connection fault, logs the start of a burst; returns
    /// what kind of fault it was.
    fn fault(
        &self,
        counters: &Counters,
        error: &client::RedisError,
        connection: bool,
    ) -> TierErrorKind {
        let kind = if error.is_timeout() {
            counters.bump(Event::Timeout);
            TierErrorKind::Timeout
        } else {
            counters.bump(Event::Error);
            if connection {
                TierErrorKind::Unavailable
            } else {
                TierErrorKind::Refused
            }
        };
        if connection {
            let mut health = self.health.lock();
            health.down_until = Some(Instant::now() + health.backoff);
            health.backoff = (health.backoff * 2).min(MAX_BACKOFF);
        }
        self.fault_seen(&error.kind_text());
        kind
    }

    /// Logs the first fault of a burst (with the `tracing` feature).
    pub(crate) fn fault_seen(&self, _what: &str) {
        if !self.burst.swap(true, Ordering::AcqRel) {
            #[cfg(feature = "tracing")]
            tracing::warn!(
                "syncmemo: Redis tier at {}: {_what}; calls compute locally until it recovers",
                self.shown_url
            );
        }
    }

    fn healthy(&self) {
        {
            let mut health = self.health.lock();
            health.down_until = None;
            health.backoff = MIN_BACKOFF;
        }
        if self.burst.swap(false, Ordering::AcqRel) {
            #[cfg(feature = "tracing")]
            tracing::info!("syncmemo: Redis tier at {} recovered", self.shown_url);
        }
    }

    /// The value of `key`, or the right to compute it (see the module docs).
    pub(crate) fn lookup(self: &Arc<Self>, key: &str, counters: &Counters) -> Found {
        let mut lookup = LookupLoop::new(self, key, false);
        let mut waiter: Option<Arc<Waiter>> = None;
        let found = loop {
            let reply = self.try_with(counters, |connection| {
                lookup.invocation().invoke::<client::Value>(connection)
            });
            match lookup.step(reply, counters) {
                Step::Done(found) => break found,
                Step::Register => waiter = Some(self.waiters.register(lookup.hash())),
                Step::Wait(until) => {
                    if let Some(waiter) = &waiter {
                        let mut woken = waiter.woken.lock();
                        if !*woken {
                            waiter.condvar.wait_until(&mut woken, until);
                        }
                        *woken = false;
                    }
                }
            }
        };
        if let Some(waiter) = waiter {
            self.waiters.unregister(lookup.hash(), &waiter);
        }
        found
    }

    /// The [`PUBLISH`] script for `key`: write the value, release the lock, announce.
    fn publish_invocation(
        &self,
        key: &str,
        bytes: &[u8],
        ttl: Option<Duration>,
        token: Option<&str>,
    ) -> client::ScriptInvocation<'_> {
        let ttl_ms = ttl.map_or(0, |ttl| ttl.as_millis().max(1) as u64);
        let hash = codec::fnv1a(&[key.as_bytes()]);
        let mut invocation = self.publish_script.prepare_invoke();
        invocation
            .key(key)
            .key(lock_key(key))
            .arg(bytes)
            .arg(ttl_ms)
            .arg(token.unwrap_or(""))
            .arg(&self.channel)
            .arg(self.message(READY, &hash.to_le_bytes()));
        invocation
    }

    /// Counts what [`PUBLISH`] replied (`None`: the fault is counted already).
    fn published(&self, reply: Option<client::Value>, counters: &Counters) {
        match reply {
            Some(client::Value::Array(items))
                if matches!(items.first(), Some(client::Value::Int(1))) =>
            {
                counters.bump(Event::Write);
            }
            Some(_) => {
                counters.bump(Event::Error);
                self.fault_seen("a value could not be written (OOM?)");
            }
            None => {}
        }
    }

    fn publish(
        &self,
        key: &str,
        bytes: &[u8],
        ttl: Option<Duration>,
        token: Option<&str>,
        counters: &Counters,
    ) {
        let reply = self.with(counters, |connection| {
            self.publish_invocation(key, bytes, ttl, token)
                .invoke::<client::Value>(connection)
        });
        self.published(reply, counters);
    }

    /// The [`RELEASE`] script for `key`'s lock held with `token`.
    fn release_invocation(&self, key: &str, token: &str) -> client::ScriptInvocation<'_> {
        let hash = codec::fnv1a(&[key.as_bytes()]);
        let mut invocation = self.release_script.prepare_invoke();
        invocation
            .key(lock_key(key))
            .arg(token)
            .arg(&self.channel)
            .arg(self.message(READY, &hash.to_le_bytes()));
        invocation
    }

    fn release(&self, key: &str, token: Option<&str>, counters: &Counters) {
        let Some(token) = token else {
            return;
        };
        self.with(counters, |connection| {
            self.release_invocation(key, token)
                .invoke::<client::Value>(connection)
        });
    }

    /// Deletes `key` and announces it; whether Redis held it.
    pub(crate) fn invalidate(&self, key: &str, counters: &Counters) -> bool {
        let message = self.message(INVALIDATE, key.as_bytes());
        self.with(counters, |connection| {
            let (deleted,): (u64,) = client::pipe()
                .cmd("DEL")
                .arg(key)
                .cmd("PUBLISH")
                .arg(&self.channel)
                .arg(&message)
                .ignore()
                .query(connection)?;
            Ok(deleted > 0)
        })
        .unwrap_or(false)
    }

    /// Deletes the keys of `function` (`{path}:{fingerprint}`) with `SCAN`, announces it;
    /// returns how many keys were deleted.
    pub(crate) fn clear(&self, function: &str, counters: &Counters) -> u64 {
        let pattern = format!(
            "{}*",
            codec::glob_escape(&format!("{}:{}:", self.config.namespace, function))
        );
        let message = self.message(CLEAR, function.as_bytes());
        self.with(counters, |connection| {
            let mut cursor: u64 = 0;
            let mut deleted = 0;
            loop {
                let (next, keys): (u64, Vec<Vec<u8>>) = client::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(connection)?;
                if !keys.is_empty() {
                    deleted += client::cmd("UNLINK").arg(&keys).query::<u64>(connection)?;
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            client::cmd("PUBLISH")
                .arg(&self.channel)
                .arg(&message)
                .query::<u64>(connection)?;
            Ok(deleted)
        })
        .unwrap_or(0)
    }

    /// Starts the thread that listens on the namespace's channel: announcements wake waiters,
    /// invalidations reach the local caches. It reconnects by itself and ends after `stop`.
    fn spawn_subscriber(&self) {
        let client = self.client.clone();
        let channel = self.channel.clone();
        let waiters = Arc::clone(&self.waiters);
        let stop = Arc::clone(&self.stop);
        let namespace = self.config.namespace.clone();
        let sender = self.sender;
        let connect_timeout = self.config.connect_timeout;
        let spawned = std::thread::Builder::new()
            .name("syncmemo-redis".to_string())
            .spawn(move || {
                let mut backoff = MIN_BACKOFF;
                while !stop.load(Ordering::Acquire) {
                    let mut connection = match client.get_connection_with_timeout(connect_timeout) {
                        Ok(connection) => connection,
                        Err(_) => {
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            continue;
                        }
                    };
                    let mut pubsub = connection.as_pubsub();
                    if pubsub.subscribe(&channel).is_err()
                        || pubsub
                            .set_read_timeout(Some(Duration::from_secs(1)))
                            .is_err()
                    {
                        std::thread::sleep(backoff);
                        continue;
                    }
                    backoff = MIN_BACKOFF;
                    while !stop.load(Ordering::Acquire) {
                        match pubsub.get_message() {
                            Ok(message) => {
                                dispatch(message.get_payload_bytes(), sender, &namespace, &waiters)
                            }
                            Err(error) if error.is_timeout() => continue,
                            Err(_) => break,
                        }
                    }
                }
            });
        // Without the thread, waiters fall back to polling and invalidations stay local.
        drop(spawned);
    }
}

/// Acts on one message of the channel.
fn dispatch(payload: &[u8], me: u64, namespace: &str, waiters: &Waiters) {
    if payload.len() < 9 {
        return;
    }
    let (tag, sender, body) = (
        payload[0],
        u64::from_le_bytes(payload[1..9].try_into().expect("8 bytes")),
        &payload[9..],
    );
    match tag {
        READY if body.len() == 8 => {
            waiters.notify(u64::from_le_bytes(body.try_into().expect("8 bytes")));
        }
        INVALIDATE if sender != me => {
            let Ok(key) = std::str::from_utf8(body) else {
                return;
            };
            let Some(rest) = key
                .strip_prefix(namespace)
                .and_then(|r| r.strip_prefix(':'))
            else {
                return;
            };
            let Some((function, encoded)) = rest.rsplit_once(':') else {
                return;
            };
            for listener in listeners_of(function) {
                listener.invalidate_encoded(encoded);
            }
        }
        CLEAR if sender != me => {
            if let Ok(function) = std::str::from_utf8(body) {
                for listener in listeners_of(function) {
                    listener.clear_local();
                }
            }
        }
        _ => {}
    }
}

/// Whether `error` leaves the connection unusable (a timeout or an I/O error, which may leave
/// a reply unread), as opposed to a reply error (`OOM`, a script error).
fn breaks_connection(error: &client::RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
}

/// Short text for an error: its kind and detail, never the URL.
trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for client::RedisError {
    fn kind_text(&self) -> String {
        format!(
            "{:?}: {}",
            self.kind(),
            self.detail().unwrap_or("no detail")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("redis://user:hunter2@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redact("redis://:p%40ss@host/"), "redis://:***@host/");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact("garbage"), "<not a URL>");
        let config = Config::new("rediss://a:secret@h/1");
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[test]
    fn bad_namespaces_and_urls_are_refused() {
        assert!(RedisTier::new(Config::new("redis://127.0.0.1/").namespace("a:b")).is_err());
        assert!(RedisTier::new(Config::new("redis://127.0.0.1/").namespace("")).is_err());
        let error = RedisTier::new(Config::new("ftp://:secret@h/"))
            .err()
            .unwrap();
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
