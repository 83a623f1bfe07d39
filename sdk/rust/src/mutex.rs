//! Advisory locks of the tenant, for keys the function may write (`grants.kv.write`). A lock
//! belongs to the call that took it: only that call can unlock it, taking it again from the same
//! call renews it, and a lock the call never releases expires after its `ttl`.
//!
//! ```no_run
//! # extern crate gojinn_sdk as gojinn;
//! # fn main() -> Result<(), gojinn::Error> {
//! use std::time::Duration;
//! if gojinn::mutex::lock("jobs/report", Duration::from_secs(30))? {
//!     // ... only one call at a time gets here ...
//!     gojinn::mutex::unlock("jobs/report")?;
//! }
//! # Ok(()) }
//! ```

use crate::Error;
use crate::abi::{arg, checked, host_mutex_lock, host_mutex_unlock};
use std::time::Duration;

/// Takes the lock `key` for `ttl` (1 ms to one hour). Returns `false` when another call holds it.
pub fn lock(key: &str, ttl: Duration) -> Result<bool, Error> {
    let (key_ptr, key_len) = arg(key.as_bytes());
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    // SAFETY: the host only reads `key`.
    Ok(checked(unsafe { host_mutex_lock(key_ptr, key_len, ttl_ms) })? == 1)
}

/// Releases the lock `key`. Returns `false` when this call does not hold it (never took it, or
/// it expired).
pub fn unlock(key: &str) -> Result<bool, Error> {
    let (key_ptr, key_len) = arg(key.as_bytes());
    // SAFETY: the host only reads `key`.
    Ok(checked(unsafe { host_mutex_unlock(key_ptr, key_len) })? == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_wasm_every_call_is_unavailable() {
        assert!(matches!(lock("k", Duration::from_secs(1)), Err(Error::Unavailable(_))));
        assert!(matches!(unlock("k"), Err(Error::Unavailable(_))));
    }
}
