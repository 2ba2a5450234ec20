//! How values and keys become bytes, and how a function's keys are named in Redis.
//!
//! - **Values**: one version byte ([`FORMAT`]), an 8-byte checksum of the payload, then the
//!   payload in [postcard](https://docs.rs/postcard): compact (integers as varints, no field
//!   names), deterministic, with a documented stable wire format. It is not self-describing, so
//!   the key's fingerprint (below) makes sure bytes are only ever decoded as the type that wrote
//!   them; the checksum turns bytes overwritten by anything else into a decode error (counted,
//!   then recomputed) rather than a wrong value; trailing bytes are an error too.
//! - **Keys**: `{namespace}:{function path}:{fingerprint}:{key}`, where `key` is the postcard
//!   encoding of the owned key in base64url without padding (alphabet `A-Z a-z 0-9 - _`): two
//!   different keys never share a name (postcard is injective on a type's values) and no key
//!   contains `:`, `*`, `?`, `[`, `{`, spaces or newlines, so none escapes its function's prefix
//!   or matches another function's `SCAN` pattern.
//! - **Fingerprint**: 64 bits (16 hex digits) of FNV-1a over the format version and
//!   `std::any::type_name` of the key and value types, so that a changed signature reads none of
//!   the old bytes. (`type_name` may change between compiler versions: a fleet then starts cold
//!   on a new compiler, never wrong.)

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The value format's version byte.
pub(crate) const FORMAT: u8 = 1;

/// 64-bit FNV-1a: stable across builds and platforms (unlike the std and foldhash hashers).
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in *part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separate the parts, so ("ab", "c") and ("a", "bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The fingerprint of a cache's key and value types.
pub(crate) fn fingerprint<K, V>() -> String {
    let hash = fnv1a(&[
        &[FORMAT],
        std::any::type_name::<K>().as_bytes(),
        std::any::type_name::<V>().as_bytes(),
    ]);
    format!("{hash:016x}")
}

/// Why bytes did not become a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Shorter than the header, or another format version.
    Header,
    /// The checksum does not match the payload.
    Checksum,
    /// The payload is not a value of the type (or has trailing bytes).
    Payload,
}

/// A value's bytes: version, checksum, payload.
pub(crate) fn encode_value<V: Serialize>(value: &V) -> Result<Vec<u8>, postcard::Error> {
    let header = vec![FORMAT, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut bytes = postcard::to_extend(value, header)?;
    let sum = fnv1a(&[&bytes[9..]]);
    bytes[1..9].copy_from_slice(&sum.to_le_bytes());
    Ok(bytes)
}

/// The value in `bytes`, checked.
pub(crate) fn decode_value<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, DecodeError> {
    if bytes.len() < 9 || bytes[0] != FORMAT {
        return Err(DecodeError::Header);
    }
    let sum = u64::from_le_bytes(bytes[1..9].try_into().expect("8 bytes"));
    let payload = &bytes[9..];
    if fnv1a(&[payload]) != sum {
        return Err(DecodeError::Checksum);
    }
    match postcard::take_from_bytes::<V>(payload) {
        Ok((value, [])) => Ok(value),
        _ => Err(DecodeError::Payload),
    }
}

/// The key part of a Redis key: postcard, then base64url without padding.
pub(crate) fn encode_key<K: Serialize>(key: &K) -> Result<String, postcard::Error> {
    Ok(base64url(&postcard::to_stdvec(key)?))
}

/// The key whose encoding is `text`.
pub(crate) fn decode_key<K: DeserializeOwned>(text: &str) -> Option<K> {
    let bytes = from_base64url(text)?;
    match postcard::take_from_bytes::<K>(&bytes) {
        Ok((key, [])) => Some(key),
        _ => None,
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// RFC 4648 base64url, no padding.
pub(crate) fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let digits = chunk.len() + 1;
        for i in 0..digits {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The bytes of a base64url text without padding; `None` if it is not one.
pub(crate) fn from_base64url(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| ALPHABET.iter().position(|&a| a == c).map(|p| p as u32);
    let text = text.as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    for chunk in text.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    // Reject non-canonical texts (unused low bits set): one text per byte string.
    (base64url(&out).as_bytes() == text).then_some(out)
}

/// Escapes `*`, `?`, `[`, `]` and `\` for a `SCAN ... MATCH` pattern.
pub(crate) fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips_and_is_canonical() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = base64url(&bytes);
            assert!(text
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
            assert_eq!(from_base64url(&text).as_deref(), Some(&bytes[..]));
        }
        assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(from_base64url("Zm9"), None, "non-canonical: low bits set");
        assert_eq!(from_base64url("Z"), None);
        assert_eq!(from_base64url("Zm:v"), None);
    }

    #[test]
    fn values_round_trip_and_garbage_is_rejected() {
        let value = (String::from("a:b*c\n"), 7u64, vec![1u8, 2, 3]);
        let bytes = encode_value(&value).unwrap();
        assert_eq!(bytes[0], FORMAT);
        assert_eq!(decode_value::<(String, u64, Vec<u8>)>(&bytes), Ok(value));
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            decode_value::<(String, u64, Vec<u8>)>(&flipped),
            Err(DecodeError::Checksum)
        );
        assert_eq!(decode_value::<u64>(b"garbage"), Err(DecodeError::Header));
        assert_eq!(decode_value::<u64>(&[]), Err(DecodeError::Header));
        // A valid frame of another type: the payload does not decode (or has trailing bytes).
        let other = encode_value(&(1u64, 2u64)).unwrap();
        assert_eq!(decode_value::<u64>(&other), Err(DecodeError::Payload));
    }

    #[test]
    fn keys_are_injective_and_stay_in_their_alphabet() {
        let keys = [
            (String::from("a"), String::from("bc")),
            (String::from("ab"), String::from("c")),
            (String::from("a:b"), String::new()),
            (String::from("*"), String::from("\n")),
        ];
        let encoded: Vec<String> = keys.iter().map(|k| encode_key(k).unwrap()).collect();
        for (i, a) in encoded.iter().enumerate() {
            assert!(!a.contains([':', '*', '?', '[', '{', '\n', ' ']));
            assert_eq!(decode_key::<(String, String)>(a).as_ref(), Some(&keys[i]));
            for b in &encoded[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn fingerprints_depend_on_both_types() {
        let a = fingerprint::<u64, String>();
        assert_eq!(a.len(), 16);
        assert_eq!(a, fingerprint::<u64, String>());
        assert_ne!(a, fingerprint::<u32, String>());
        assert_ne!(a, fingerprint::<u64, Vec<u8>>());
    }

    #[test]
    fn glob_patterns_are_escaped() {
        assert_eq!(glob_escape("ns:a*b?[c]\\"), "ns:a\\*b\\?\\[c\\]\\\\");
    }
}
