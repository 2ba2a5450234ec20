//! Warm starts (feature `serde`): [`Memo::export`] writes a cache's entries to a compact file,
//! [`Memo::import`] loads them back at the next start.
//!
//! # Format (version 1)
//!
//! ```text
//! b"SYNCMEMO"  version: u8 = 1
//! header:  postcard(name: str, key type: str, value type: str, fingerprint: u64)
//! entries: (0x01  postcard((K, V)))*
//! end:     0x00  count: u64 LE  checksum: u64 LE (FNV-1a 64 of every byte before it)
//! ```
//!
//! [postcard](https://docs.rs/postcard) encodes integers as varints and has a documented, stable
//! wire format (1.x). The fingerprint hashes `std::any::type_name` of the key and value types:
//! a changed signature refuses to import instead of decoding garbage. `type_name` is not
//! guaranteed stable across compiler versions, so a toolchain upgrade may also refuse an older
//! file (a cold start, never a wrong value).

use std::any::type_name;
use std::fmt;
use std::hash::Hash;
use std::io::{self, BufWriter, Read, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Memo, Store};

const MAGIC: &[u8; 8] = b"SYNCMEMO";
const VERSION: u8 = 1;
const ENTRY: u8 = 1;
const END: u8 = 0;

/// Why [`Memo::import`] (or [`Memo::export`]) failed. After an import error the cache is as
/// it was: nothing is inserted until the whole input has been read and checked.
#[derive(Debug)]
#[non_exhaustive]
pub enum WarmStartError {
    /// Reading or writing failed.
    Io(io::Error),
    /// The input does not start like a warm-start file.
    NotAWarmStartFile,
    /// The file was written by a newer, unknown version of the format.
    UnsupportedVersion(u8),
    /// The file was written by another function's cache.
    WrongFunction {
        /// This cache's function.
        expected: String,
        /// The file's.
        found: String,
    },
    /// The file's key or value type differs from this cache's (the signature changed).
    TypeMismatch {
        /// This cache's `(key, value)` types.
        expected: (String, String),
        /// The file's.
        found: (String, String),
    },
    /// The input ends before the end marker: the file was cut short.
    Truncated,
    /// The bytes do not decode, or their checksum or count does not match.
    Corrupt(String),
    /// Encoding an entry failed (a `Serialize` impl returned an error).
    Encode(String),
}

impl fmt::Display for WarmStartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WarmStartError::Io(e) => write!(f, "warm start: I/O error: {e}"),
            WarmStartError::NotAWarmStartFile => {
                write!(f, "warm start: not a syncmemo cache file")
            }
            WarmStartError::UnsupportedVersion(v) => {
                write!(f, "warm start: unsupported format version {v}")
            }
            WarmStartError::WrongFunction { expected, found } => write!(
                f,
                "warm start: the file holds the cache of `{found}`, not of `{expected}`"
            ),
            WarmStartError::TypeMismatch { expected, found } => write!(
                f,
                "warm start: the file's key and value types ({}, {}) are not this cache's \
                 ({}, {}): the function's signature changed",
                found.0, found.1, expected.0, expected.1
            ),
            WarmStartError::Truncated => write!(f, "warm start: the file is truncated"),
            WarmStartError::Corrupt(why) => write!(f, "warm start: corrupt file: {why}"),
            WarmStartError::Encode(why) => write!(f, "warm start: cannot encode an entry: {why}"),
        }
    }
}

impl std::error::Error for WarmStartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WarmStartError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for WarmStartError {
    fn from(e: io::Error) -> Self {
        WarmStartError::Io(e)
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    name: String,
    key_type: String,
    value_type: String,
    fingerprint: u64,
}

/// FNV-1a, 64 bits: a stable checksum and fingerprint (std's hashers are not stable).
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    const fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn fingerprint(key_type: &str, value_type: &str) -> u64 {
    let mut h = Fnv::new();
    h.update(key_type.as_bytes());
    h.update(&[0]);
    h.update(value_type.as_bytes());
    h.0
}

/// A writer that hashes what it writes.
struct Hashing<W> {
    inner: W,
    hash: Fnv,
}

impl<W: Write> Hashing<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hash.update(bytes);
        self.inner.write_all(bytes)
    }
}

impl<K, V> Memo<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Writes every cached entry to `writer` (feature `serde`), for [`import`](Self::import) at
    /// the next start; returns how many. The format is compact and versioned (see the module
    /// documentation of the warm-start format): a header with the function's name and a
    /// fingerprint of the key and value types, the entries, a count and a checksum.
    ///
    /// Streams the entries (memory stays constant however large the cache; the writer is
    /// buffered here). Not a snapshot: entries inserted while it runs may be missing, like
    /// [`range`](Self::range). Entries being computed or expired are left out.
    ///
    /// # Errors
    ///
    /// [`WarmStartError::Io`] if a write fails, [`WarmStartError::Encode`] if a key's or
    /// value's `Serialize` fails; what was written is then incomplete (and refused by
    /// `import`).
    ///
    /// ```no_run
    /// #[syncmemo::memoize] // key `String` and value `u64`: both serde types
    /// fn parse(text: &str) -> u64 {
    ///     text.len() as u64
    /// }
    /// let file = std::fs::File::create("parse.cache")?;
    /// let saved = parse_cache().export(file)?;
    /// println!("saved {saved} entries");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn export<W: Write>(&self, writer: W) -> Result<usize, WarmStartError>
    where
        K: Serialize,
        V: Serialize,
    {
        let (key_type, value_type) = (type_name::<K>(), type_name::<V>());
        let header = Header {
            name: self.name.to_string(),
            key_type: key_type.to_string(),
            value_type: value_type.to_string(),
            fingerprint: fingerprint(key_type, value_type),
        };
        let mut out = Hashing {
            inner: BufWriter::new(writer),
            hash: Fnv::new(),
        };
        out.write(MAGIC)?;
        out.write(&[VERSION])?;
        let encoded =
            postcard::to_allocvec(&header).map_err(|e| WarmStartError::Encode(e.to_string()))?;
        out.write(&encoded)?;
        let mut count = 0u64;
        let mut failure = None;
        let mut buf = Vec::new();
        self.range(|key, value| {
            buf.clear();
            buf.push(ENTRY);
            let written = postcard::to_extend(&(key, value), std::mem::take(&mut buf))
                .map_err(|e| WarmStartError::Encode(e.to_string()))
                .and_then(|b| {
                    buf = b;
                    out.write(&buf).map_err(WarmStartError::Io)
                });
            match written {
                Ok(()) => {
                    count += 1;
                    true
                }
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        out.write(&[END])?;
        out.write(&count.to_le_bytes())?;
        let checksum = out.hash.0;
        out.inner.write_all(&checksum.to_le_bytes())?;
        out.inner.flush()?;
        Ok(count as usize)
    }

    /// Loads entries written by [`export`](Self::export) (feature `serde`); returns how many
    /// were inserted.
    ///
    /// The whole input is read, checked (format, version, function name, key and value
    /// types, count, checksum) and decoded **before** anything is inserted: on any error the
    /// cache is left as it was. Keys already cached keep their value (they were computed by
    /// this process); with a capacity, insertions evict as calls do. Imported values count as
    /// neither hits nor computations, and with a TTL they are as fresh as if computed now.
    ///
    /// # Errors
    ///
    /// A [`WarmStartError`] saying what is wrong: an I/O error, not a cache file, an unknown
    /// version, another function's file, changed key or value types, a truncated file, or
    /// corrupt bytes.
    ///
    /// ```no_run
    /// #[syncmemo::memoize]
    /// fn parse(text: &str) -> u64 {
    ///     text.len() as u64
    /// }
    /// // At start-up:
    /// match std::fs::File::open("parse.cache") {
    ///     Ok(file) => match parse_cache().import(file) {
    ///         Ok(n) => println!("warm start: {n} entries"),
    ///         Err(e) => eprintln!("cold start: {e}"),
    ///     },
    ///     Err(_) => println!("cold start: no cache file"),
    /// }
    /// ```
    pub fn import<R: Read>(&self, mut reader: R) -> Result<usize, WarmStartError>
    where
        K: DeserializeOwned + Clone,
        V: DeserializeOwned,
    {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes)?;
        let entries = decode::<K, V>(self.name, &bytes)?;
        drop(bytes);
        let mut inserted = 0;
        let cells = match &self.store {
            Store::Plain(plain) => {
                return Ok(entries
                    .into_iter()
                    .map(|(key, value)| usize::from(plain.insert_if_absent(key, value)))
                    .sum());
            }
            // A bounded cache's values enter its windows, as computed ones do, through the
            // miss path (which hands them to the eviction policy).
            Store::Cells(_) if self.bound.is_some() => {
                let stored = entries
                    .into_iter()
                    .map(|(key, value)| self.insert(key, value));
                return Ok(stored.filter(|&stored| stored).count());
            }
            Store::Cells(cells) => cells,
        };
        let map = &cells.map;
        for (key, value) in entries {
            if map.contains_key(&key) {
                continue;
            }
            let slot = cells.new_slot();
            let mut value = Some(value);
            slot.get_or_compute_aged(
                self.name,
                None,
                || {
                    (
                        value.take().expect("computed once"),
                        std::time::Duration::ZERO,
                    )
                },
                |_| true,
            );
            let policy_key = self.bound.is_some().then(|| key.clone());
            let (slot, existed) = map.load_or_store_with(key, || slot);
            if let (false, Some(key)) = (existed, policy_key) {
                self.admitted(&key, self.weighs_entries().then_some(&key), slot);
            }
            inserted += usize::from(!existed);
        }
        Ok(inserted)
    }
}

/// Checks and decodes a whole file.
fn decode<K: DeserializeOwned, V: DeserializeOwned>(
    name: &str,
    bytes: &[u8],
) -> Result<Vec<(K, V)>, WarmStartError> {
    let corrupt = |e: postcard::Error| match e {
        postcard::Error::DeserializeUnexpectedEnd => WarmStartError::Truncated,
        e => WarmStartError::Corrupt(e.to_string()),
    };
    if bytes.len() < MAGIC.len() + 1 {
        return Err(if MAGIC.starts_with(bytes) {
            WarmStartError::Truncated
        } else {
            WarmStartError::NotAWarmStartFile
        });
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(WarmStartError::NotAWarmStartFile);
    }
    if bytes[MAGIC.len()] != VERSION {
        return Err(WarmStartError::UnsupportedVersion(bytes[MAGIC.len()]));
    }
    let (header, mut rest) =
        postcard::take_from_bytes::<Header>(&bytes[MAGIC.len() + 1..]).map_err(corrupt)?;
    let (key_type, value_type) = (type_name::<K>(), type_name::<V>());
    if header.name != name {
        return Err(WarmStartError::WrongFunction {
            expected: name.to_string(),
            found: header.name,
        });
    }
    if header.fingerprint != fingerprint(key_type, value_type)
        || header.key_type != key_type
        || header.value_type != value_type
    {
        return Err(WarmStartError::TypeMismatch {
            expected: (key_type.to_string(), value_type.to_string()),
            found: (header.key_type, header.value_type),
        });
    }
    let mut entries = Vec::new();
    loop {
        match rest.split_first() {
            None => return Err(WarmStartError::Truncated),
            Some((&ENTRY, tail)) => {
                let (entry, tail) = postcard::take_from_bytes::<(K, V)>(tail).map_err(corrupt)?;
                entries.push(entry);
                rest = tail;
            }
            Some((&END, tail)) => {
                rest = tail;
                break;
            }
            Some((tag, _)) => {
                return Err(WarmStartError::Corrupt(format!(
                    "unexpected tag {tag:#04x} between entries"
                )))
            }
        }
    }
    if rest.len() < 16 {
        return Err(WarmStartError::Truncated);
    }
    if rest.len() > 16 {
        return Err(WarmStartError::Corrupt(
            "bytes after the end marker".to_string(),
        ));
    }
    let count = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
    let checksum = u64::from_le_bytes(rest[8..].try_into().expect("8 bytes"));
    let mut hash = Fnv::new();
    hash.update(&bytes[..bytes.len() - 8]);
    if hash.0 != checksum {
        return Err(WarmStartError::Corrupt("checksum mismatch".to_string()));
    }
    if count != entries.len() as u64 {
        return Err(WarmStartError::Corrupt(format!(
            "{} entries decoded, {count} written",
            entries.len()
        )));
    }
    Ok(entries)
}
