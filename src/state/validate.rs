//! Argument checks shared by both backends, so they refuse exactly the same KV keys, control
//! record keys, digests, leases and sizes: `embedded` and `nats` call these before touching
//! their store.

use super::StateError;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Largest KV key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest KV value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// Checks a KV key: 1..=1024 bytes of `[A-Za-z0-9_=/.-]`, no empty segment, not starting with
/// `_gojinn` (reserved for the platform).
pub fn validate_key(key: &str) -> Result<(), StateError> {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || b"_=/.-".contains(&b);
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(StateError::InvalidArgument(format!("key must be 1 to {MAX_KEY_BYTES} bytes")));
    }
    if !key.bytes().all(ok_char) || key.starts_with('/') || key.ends_with('/') || key.contains("//") {
        return Err(StateError::InvalidArgument(format!(
            "key {key:?} may hold only letters, digits and _=/.- with no empty segment"
        )));
    }
    if key.starts_with('.') || key.ends_with('.') || key.contains("..") || key.starts_with("_gojinn") {
        return Err(StateError::InvalidArgument(format!("key {key:?} is reserved or malformed")));
    }
    Ok(())
}

/// Longest record key or lease name, in bytes.
pub(crate) const MAX_RECORD_KEY_BYTES: usize = 256;
/// Largest control record value (the same limit as a KV value).
pub(crate) const MAX_RECORD_BYTES: usize = MAX_VALUE_BYTES;
/// Largest module blob.
pub(crate) const MAX_BLOB_BYTES: usize = 128 << 20;
/// Longest lease holder, in bytes.
pub(crate) const MAX_HOLDER_BYTES: usize = 256;
/// Blobs up to this size are hashed on the calling task; larger ones on the blocking pool.
const HASH_INLINE_BYTES: usize = 1 << 20;

fn record_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"/._-".contains(&b)
}

/// Checks a record key or lease name (`what`): 1 to 256 bytes of `[a-z0-9/._-]`, and no empty
/// segment between, before or after the separators `/` and `.` (so `a//b`, `a..b`, `a/.b`,
/// `/a` and `a.` are refused; each is also unusable as a NATS subject or a path).
pub(crate) fn validate_record_key(what: &str, key: &str) -> Result<(), StateError> {
    if key.is_empty() || key.len() > MAX_RECORD_KEY_BYTES {
        return Err(StateError::InvalidArgument(format!(
            "{what} {key:?} must be 1 to {MAX_RECORD_KEY_BYTES} bytes, not {}",
            key.len()
        )));
    }
    if !key.bytes().all(record_char) {
        return Err(StateError::InvalidArgument(format!(
            "{what} {key:?} may hold only a-z, 0-9 and the characters / . _ -"
        )));
    }
    if key.split(['/', '.']).any(str::is_empty) {
        return Err(StateError::InvalidArgument(format!(
            "{what} {key:?} has an empty segment: '/' and '.' must separate non-empty parts"
        )));
    }
    Ok(())
}

/// Checks a `records` prefix: empty, or the start of some valid record key (`a/`, `a.`, `a/b`).
pub(crate) fn validate_record_prefix(prefix: &str) -> Result<(), StateError> {
    let starts_a_key = |p: &str| {
        validate_record_key("prefix", p).is_ok() || validate_record_key("prefix", &format!("{p}x")).is_ok()
    };
    if prefix.is_empty() || starts_a_key(prefix) {
        return Ok(());
    }
    Err(StateError::InvalidArgument(format!(
        "record prefix {prefix:?} is not the start of any valid record key"
    )))
}

pub(crate) fn validate_record_value(key: &str, value: &[u8]) -> Result<(), StateError> {
    if value.len() > MAX_RECORD_BYTES {
        return Err(StateError::InvalidArgument(format!(
            "record {key:?} is {} bytes; the limit is {MAX_RECORD_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

/// Checks a blob name: a sha256 as 64 lowercase hex digits.
pub(crate) fn validate_sha256(sha256: &str) -> Result<(), StateError> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(StateError::InvalidArgument(format!(
            "{sha256:?} is not a sha256: 64 lowercase hex digits expected"
        )));
    }
    Ok(())
}

/// Checks a lease's holder (1 to 256 bytes, no control characters) and ttl (at least 1 ms).
pub(crate) fn validate_lease(name: &str, holder: &str, ttl: Option<Duration>) -> Result<(), StateError> {
    validate_record_key("lease name", name)?;
    if holder.is_empty() || holder.len() > MAX_HOLDER_BYTES || holder.chars().any(char::is_control) {
        return Err(StateError::InvalidArgument(format!(
            "lease holder {holder:?} must be 1 to {MAX_HOLDER_BYTES} bytes with no control characters"
        )));
    }
    if ttl.is_some_and(|ttl| ttl < Duration::from_millis(1)) {
        return Err(StateError::InvalidArgument("lease ttl must be at least 1ms".into()));
    }
    Ok(())
}

/// The sha256 of `bytes`, lowercase hex; large inputs are hashed on the blocking pool, so a
/// 128 MiB module does not stall the async executor.
pub(crate) async fn sha256_hex(bytes: &Bytes) -> Result<String, StateError> {
    let hash = |bytes: &[u8]| hex::encode(Sha256::digest(bytes));
    if bytes.len() <= HASH_INLINE_BYTES {
        return Ok(hash(bytes));
    }
    let bytes = bytes.clone();
    tokio::task::spawn_blocking(move || hash(&bytes))
        .await
        .map_err(|e| StateError::Internal(format!("hashing a module blob did not complete: {e}")))
}

/// Checks a blob about to be stored: a valid name, at most [`MAX_BLOB_BYTES`], and bytes that
/// hash to that name.
pub(crate) async fn check_new_blob(sha256: &str, bytes: &Bytes) -> Result<(), StateError> {
    validate_sha256(sha256)?;
    if bytes.len() > MAX_BLOB_BYTES {
        return Err(StateError::InvalidArgument(format!(
            "module blob is {} bytes; the limit is {MAX_BLOB_BYTES}",
            bytes.len()
        )));
    }
    let actual = sha256_hex(bytes).await?;
    if actual != sha256 {
        return Err(StateError::InvalidArgument(format!(
            "module blob bytes hash to {actual}, not to the sha256 {sha256} they were stored under"
        )));
    }
    Ok(())
}

/// Checks a blob just read against its name: damaged bytes are an `Internal` error, never data.
pub(crate) async fn check_stored_blob(sha256: &str, bytes: &Bytes) -> Result<(), StateError> {
    let actual = sha256_hex(bytes).await?;
    if actual != sha256 {
        return Err(StateError::Internal(format!(
            "module blob {sha256} is damaged: its {} stored bytes hash to {actual}",
            bytes.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_are_checked() {
        for good in ["a", "tenants/acme/functions/hello", "v1.2_x-y", &"k".repeat(256)] {
            validate_record_key("record key", good).unwrap();
        }
        for bad in ["", "A", "a b", "/a", "a/", "a//b", "a..b", ".a", "a.", "a/.b", "ü", &"k".repeat(257)] {
            let err = validate_record_key("record key", bad).unwrap_err();
            assert!(matches!(&err, StateError::InvalidArgument(m) if m.contains("record key")), "{bad:?}");
        }
        for good in ["", "a", "a/", "a.", "tenants/ac"] {
            validate_record_prefix(good).unwrap();
        }
        for bad in ["/", "a//", "A", "a*"] {
            assert!(validate_record_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sha256_names_are_64_lowercase_hex_digits() {
        validate_sha256(&"0a".repeat(32)).unwrap();
        for bad in ["", "0a", &"0A".repeat(32), &"0g".repeat(32), &"0".repeat(65)] {
            assert!(validate_sha256(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn large_blobs_are_hashed_off_the_executor() {
        let big = Bytes::from(vec![7u8; HASH_INLINE_BYTES + 1]);
        let small = Bytes::from(vec![7u8; 16]);
        assert_eq!(sha256_hex(&big).await.unwrap(), hex::encode(Sha256::digest(&big)));
        assert_eq!(sha256_hex(&small).await.unwrap(), hex::encode(Sha256::digest(&small)));
    }
}
