//! The `gojinn` host import module (guest ABI v1): linking its functions into the Linker,
//! rejecting modules that import anything else from it, and the error convention every host
//! function follows. Each capability lives in its own submodule, in three phases: `link` (once
//! per node), `configure` (once per function revision: [`Capabilities`]) and the per-call state
//! in [`HostCtx`].
//!
//! A host function either returns a guest-visible error (a negative code, with the message kept
//! for `host_last_error`) or traps; it traps only for a bad pointer or a host bug. Grants are
//! checked on every call; the tenant always comes from the function's spec, never from the guest.

mod capabilities;
mod db;
mod http;
mod jobs;
mod kv;
mod log;
mod memory;
mod mutex;
mod work;

pub use capabilities::{Backends, Capabilities};

use crate::state::StateError;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::{Caller, Linker, Module};

/// The import module name guests link against.
pub const MODULE: &str = "gojinn";

/// Every function of the `gojinn` module this host provides.
pub const FUNCTIONS: &[&str] = &[
    "host_log",
    "host_last_error",
    "host_kv_get",
    "host_kv_set",
    "host_kv_delete",
    "host_kv_list",
    "host_kv_cas",
    "host_mutex_lock",
    "host_mutex_unlock",
    "host_db_query",
    "host_db_exec",
    "host_enqueue",
    "host_http_fetch",
];

/// Per-call host state: who is calling with which grants, the request envelope, the last error
/// message, and what the guest has used so far.
pub struct HostCtx {
    caps: Arc<Capabilities>,
    /// The request envelope the call was started with (stdin), for the trace id of jobs.
    envelope: Bytes,
    last_error: Option<String>,
    logs_left: u32,
    /// Owner of the locks this call takes, made on first use.
    lock_owner: Option<String>,
    /// An answer that did not fit the guest's buffer, kept for the retry.
    held: Option<work::Held>,
    /// Calls of each host function.
    calls: BTreeMap<&'static str, u32>,
    /// Whether the call is part of a sampled trace, so that each host call gets its span.
    traced: bool,
}

impl HostCtx {
    pub fn new(caps: Arc<Capabilities>, envelope: Bytes, traced: bool) -> Self {
        Self {
            traced,
            caps,
            envelope,
            last_error: None,
            logs_left: log::MAX_LOGS_PER_CALL,
            lock_owner: None,
            held: None,
            calls: BTreeMap::new(),
        }
    }

    /// The span of one call of the host function `name` (none when the call is not traced).
    pub(crate) fn span(&self, name: &'static str) -> tracing::Span {
        crate::telemetry::spans::host_call(name, self.traced)
    }

    /// How many times the guest called each host function (denied and retried calls included),
    /// for the call's receipt.
    pub fn calls(&self) -> &BTreeMap<&'static str, u32> {
        &self.calls
    }

    fn count(&mut self, function: &'static str) {
        *self.calls.entry(function).or_default() += 1;
    }
}

/// Gives host functions access to their state inside the Store's data.
pub trait HostView: Send + 'static {
    fn host(&mut self) -> &mut HostCtx;
}

/// Guest-visible error codes (DESIGN section 4). Frozen: values never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    NotFound = -1,
    Denied = -2,
    Quota = -3,
    InvalidArgument = -4,
    Unavailable = -5,
    Internal = -6,
    Conflict = -7,
}

/// Why a host call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// An expected failure the guest can handle: returned as a negative code.
    #[error("{1}")]
    Guest(ErrorCode, String),
    /// A bad pointer or a host bug: the instance traps.
    #[error("host call trapped: {0}")]
    Trap(String),
}

impl HostError {
    fn denied(message: String) -> Self {
        Self::Guest(ErrorCode::Denied, message)
    }

    fn invalid(message: String) -> Self {
        Self::Guest(ErrorCode::InvalidArgument, message)
    }

    /// An internal failure: logged in full, reported to the guest without host details.
    fn internal(what: &str, detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "{what} failed");
        Self::Guest(ErrorCode::Internal, format!("{what} failed on the host"))
    }
}

impl From<StateError> for HostError {
    fn from(error: StateError) -> Self {
        match error {
            StateError::InvalidArgument(m) => Self::invalid(m),
            StateError::Quota(m) => Self::Guest(ErrorCode::Quota, m),
            StateError::NoTenant(_) | StateError::Unavailable(_) => {
                Self::Guest(ErrorCode::Unavailable, error.to_string())
            }
            StateError::Internal(detail) => Self::internal("the state backend", detail),
        }
    }
}

/// Links every host function into `linker`.
pub fn link<T: HostView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    log::link(linker)?;
    kv::link(linker)?;
    mutex::link(linker)?;
    db::link(linker)?;
    jobs::link(linker)?;
    http::link(linker)
}

/// Checks that a module imports from `gojinn` only functions this host provides, naming every
/// unknown import at once.
pub fn check_imports(module: &Module) -> Result<(), String> {
    let unknown: Vec<String> = module
        .imports()
        .filter(|i| i.module() == MODULE && !FUNCTIONS.contains(&i.name()))
        .map(|i| format!("{MODULE}::{}", i.name()))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!("module imports unknown host function(s): {}", unknown.join(", ")))
    }
}

/// Applies the return convention to a host call's result: the value, or a negative code with
/// the message saved for `host_last_error`, or a trap.
fn finish<T: HostView>(caller: &mut Caller<'_, T>, result: Result<i64, HostError>) -> wasmtime::Result<i64> {
    match result {
        Ok(value) => Ok(value),
        Err(HostError::Guest(code, message)) => {
            caller.data_mut().host().last_error = Some(message);
            Ok(code as i64)
        }
        Err(trap @ HostError::Trap(_)) => Err(wasmtime::Error::new(trap)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Linked;

    impl HostView for Linked {
        fn host(&mut self) -> &mut HostCtx {
            unreachable!("no host function runs in this test")
        }
    }

    #[test]
    fn the_import_allow_list_is_exactly_what_is_linked() {
        let engine = wasmtime::Engine::default();
        let mut linker = Linker::<Linked>::new(&engine);
        link(&mut linker).unwrap();
        let mut store = wasmtime::Store::new(&engine, Linked);
        let mut linked: Vec<String> = linker
            .iter(&mut store)
            .filter(|(m, _, _)| *m == MODULE)
            .map(|(_, name, _)| name.to_owned())
            .collect();
        let mut allowed: Vec<String> = FUNCTIONS.iter().map(|s| s.to_string()).collect();
        linked.sort();
        allowed.sort();
        assert_eq!(linked, allowed);
    }
}
