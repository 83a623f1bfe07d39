//! The tenant's key-value store. Keys are 1 to 1024 bytes of `[A-Za-z0-9_=/.-]` with no empty
//! segment; values are at most 1 MiB. The function's `grants.kv` decides which keys it may read
//! (`get`, `list`) and write (`set`, `delete`, `cas`); anything else fails with
//! [`Error::Denied`].
//!
//! ```no_run
//! # extern crate gojinn_sdk as gojinn;
//! # fn main() -> Result<(), gojinn::Error> {
//! gojinn::kv::set("greetings/en", b"hello")?;
//! assert_eq!(gojinn::kv::get("greetings/en")?.as_deref(), Some(&b"hello"[..]));
//! # Ok(()) }
//! ```

use crate::Error;
use crate::abi::{
    addr, arg, call_with_buffer, checked, host_kv_cas, host_kv_delete, host_kv_get, host_kv_list,
    host_kv_set, len,
};

/// The value of `key`, or `None` when it does not exist.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    let (key_ptr, key_len) = arg(key.as_bytes());
    // SAFETY: the host reads `key` and writes at most `cap` bytes into the buffer at `ptr`.
    match call_with_buffer(|ptr, cap| unsafe { host_kv_get(key_ptr, key_len, addr(ptr), len(cap)) }) {
        Ok(value) => Ok(Some(value)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Sets `key` to `value`.
pub fn set(key: &str, value: &[u8]) -> Result<(), Error> {
    let ((key_ptr, key_len), (val_ptr, val_len)) = (arg(key.as_bytes()), arg(value));
    // SAFETY: the host only reads the two byte strings, which outlive the call.
    checked(unsafe { host_kv_set(key_ptr, key_len, val_ptr, val_len) }).map(drop)
}

/// Deletes `key`; deleting a key that does not exist succeeds.
pub fn delete(key: &str) -> Result<(), Error> {
    let (key_ptr, key_len) = arg(key.as_bytes());
    // SAFETY: the host only reads `key`.
    checked(unsafe { host_kv_delete(key_ptr, key_len) }).map(drop)
}

/// The keys that start with `prefix`, sorted. The function needs a read grant `p*` covering the
/// whole prefix; more than 10,000 keys is an [`Error::Quota`] (list a longer prefix).
pub fn list(prefix: &str) -> Result<Vec<String>, Error> {
    let (prefix_ptr, prefix_len) = arg(prefix.as_bytes());
    // SAFETY: the host reads `prefix` and writes at most `cap` bytes into the buffer at `ptr`.
    let json =
        call_with_buffer(|ptr, cap| unsafe { host_kv_list(prefix_ptr, prefix_len, addr(ptr), len(cap)) })?;
    serde_json::from_slice(&json)
        .map_err(|e| Error::Internal(format!("the host's key list is not JSON: {e}")))
}

/// Sets `key` to `new` if its value is `expected` (`None`: if it does not exist). Returns
/// whether it swapped; `false` means the current value is another one, so read and try again.
pub fn cas(key: &str, expected: Option<&[u8]>, new: &[u8]) -> Result<bool, Error> {
    let ((key_ptr, key_len), (new_ptr, new_len)) = (arg(key.as_bytes()), arg(new));
    let (expected_ptr, expected_len) = expected.map_or((0, -1), arg);
    // SAFETY: the host only reads the byte strings; length -1 means "no expected value".
    let swapped =
        checked(unsafe { host_kv_cas(key_ptr, key_len, expected_ptr, expected_len, new_ptr, new_len) })?;
    Ok(swapped == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_wasm_every_call_is_unavailable() {
        assert!(matches!(get("k"), Err(Error::Unavailable(_))));
        assert!(matches!(set("k", b"v"), Err(Error::Unavailable(_))));
        assert!(matches!(delete("k"), Err(Error::Unavailable(_))));
        assert!(matches!(list(""), Err(Error::Unavailable(_))));
        assert!(matches!(cas("k", None, b"v"), Err(Error::Unavailable(_))));
    }
}
