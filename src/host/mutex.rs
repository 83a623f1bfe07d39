//! `host_mutex_lock` and `host_mutex_unlock`: the tenant's advisory locks, for keys the
//! function may write (`grants.kv.write`).
//!
//! The owner of a lock is the call that took it: a random id made on the call's first lock. So
//! only that call can unlock it (another call gets 0), relocking from the same call renews it,
//! and a call that ends or crashes without unlocking leaves a lock that simply expires after its
//! `ttl_ms` (1 ms to [`MAX_TTL_MS`]).

use super::kv::{Access, granted_key};
use super::work::Work;
use super::{HostCtx, HostError, HostView, Imports, Waits};
use std::time::Duration;
use wasmtime::Caller;

/// Longest lock a call may take: one hour.
pub const MAX_TTL_MS: i64 = 3_600_000;

pub(super) fn link<T: HostView>(imports: &mut Imports<'_, T>) -> wasmtime::Result<()> {
    imports.func_async("host_mutex_lock", Waits::StateBackend, lock::<T>)?;
    imports.func_async("host_mutex_unlock", Waits::StateBackend, unlock::<T>)
}

/// A call's own mutex state: the owner of the locks it takes, made on first use.
#[derive(Default)]
pub(super) struct PerCall {
    owner: Option<String>,
}

impl HostCtx {
    /// This call's lock owner id.
    fn lock_owner(&mut self) -> String {
        let owner = self.mutex.owner.get_or_insert_with(|| {
            let id: [u8; 16] = rand::random();
            format!("{}:{}", self.caps.function, hex::encode(id))
        });
        owner.clone()
    }
}

fn lock<T: HostView>(
    caller: &mut Caller<'_, T>,
    (key_ptr, key_len, ttl_ms): (i32, i32, i64),
) -> Result<Work, HostError> {
    let (caps, key) = granted_key(caller, (key_ptr, key_len), Access::Write, "mutex lock")?;
    if !(1..=MAX_TTL_MS).contains(&ttl_ms) {
        return Err(HostError::invalid(format!("ttl_ms {ttl_ms} is not between 1 and {MAX_TTL_MS}")));
    }
    let owner = caller.data_mut().host().lock_owner();
    let ttl = Duration::from_millis(ttl_ms as u64);
    Ok(Work::value(async move {
        let acquired = caps.state.locks.lock(&caps.function.tenant, &key, &owner, ttl).await?;
        Ok(i64::from(acquired))
    }))
}

fn unlock<T: HostView>(
    caller: &mut Caller<'_, T>,
    (key_ptr, key_len): (i32, i32),
) -> Result<Work, HostError> {
    let (caps, key) = granted_key(caller, (key_ptr, key_len), Access::Write, "mutex unlock")?;
    let owner = caller.data_mut().host().lock_owner();
    Ok(Work::value(async move {
        let released = caps.state.locks.unlock(&caps.function.tenant, &key, &owner).await?;
        Ok(i64::from(released))
    }))
}
