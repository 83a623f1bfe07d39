//! The `gojinn` host import module (guest ABI v1): linking its functions into the Linker,
//! rejecting modules that import anything else from it ([`Linked`]: what was linked, nothing
//! listed by hand), and the error convention every host function follows. Each capability owns
//! its file and, as Spin's factors do, its three phases: `link` (once per node, listed in
//! [`link`]), `configure` (once per function revision, from its grants and the node's backends,
//! gathered in [`Capabilities`]) and its per-call state (a field of [`HostCtx`]). Adding a
//! capability is its file, a line in [`link`] and a line in [`Capabilities::configure`].
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

/// Per-call host state: who is calling with which grants, the request envelope, the last error
/// message, each capability's own per-call state, and what the guest has used so far.
pub struct HostCtx {
    caps: Arc<Capabilities>,
    /// The request envelope the call was started with (stdin), for the trace id of jobs.
    envelope: Bytes,
    last_error: Option<String>,
    log: log::PerCall,
    mutex: mutex::PerCall,
    /// An answer that did not fit the guest's buffer, kept for the retry.
    held: Option<work::Held>,
    /// Calls of each host function.
    calls: BTreeMap<&'static str, u32>,
    /// The host function whose backend work is in flight, and what it waits on.
    awaiting: Option<(&'static str, Waits)>,
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
            log: log::PerCall::default(),
            mutex: mutex::PerCall::default(),
            held: None,
            calls: BTreeMap::new(),
            awaiting: None,
        }
    }

    /// The host function the guest is blocked in, waiting for its backend, and what it waits on
    /// (so a call whose deadline passes there can say why).
    pub fn awaiting(&self) -> Option<(&'static str, Waits)> {
        self.awaiting
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
/// What an asynchronous host function waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waits {
    /// The state backend (KV, locks, the job queue): NATS or the embedded store.
    StateBackend,
    /// The tenant's SQL database.
    Database,
    /// A server on the network (`host_http_fetch`).
    Network,
}

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

/// Links every capability's host functions into `linker`, in this order; returns what was
/// linked. Adding a capability adds its line here.
pub fn link<T: HostView>(linker: &mut Linker<T>) -> wasmtime::Result<Linked> {
    let mut imports = Imports { linker, linked: Vec::new() };
    log::link(&mut imports)?;
    kv::link(&mut imports)?;
    mutex::link(&mut imports)?;
    db::link(&mut imports)?;
    jobs::link(&mut imports)?;
    http::link(&mut imports)?;
    Ok(Linked(imports.linked))
}

/// A Linker that records each host function a capability links into the `gojinn` module.
pub(crate) struct Imports<'a, T: 'static> {
    linker: &'a mut Linker<T>,
    linked: Vec<&'static str>,
}

impl<T: HostView> Imports<'_, T> {
    /// Links the synchronous host function `name`.
    fn func_wrap<Params, Args>(
        &mut self,
        name: &'static str,
        function: impl wasmtime::IntoFunc<T, Params, Args>,
    ) -> wasmtime::Result<()> {
        self.linker.func_wrap(MODULE, name, function)?;
        self.linked.push(name);
        Ok(())
    }

    /// Links the asynchronous host function `name`, made of `read` and the work it returns,
    /// which `waits` on what it names.
    fn func_async<P>(
        &mut self,
        name: &'static str,
        waits: Waits,
        read: work::Read<T, P>,
    ) -> wasmtime::Result<()>
    where
        P: wasmtime::WasmTyList + Send + 'static,
    {
        work::link_async(self.linker, name, waits, read)?;
        self.linked.push(name);
        Ok(())
    }
}

/// The host functions linked into the `gojinn` module: all a guest may import from it.
pub struct Linked(Vec<&'static str>);

impl Linked {
    /// Every linked function, in link order.
    pub fn functions(&self) -> &[&'static str] {
        &self.0
    }

    /// Checks that a module imports from `gojinn` only functions this host linked, naming every
    /// unknown import at once.
    pub fn check_imports(&self, module: &Module) -> Result<(), String> {
        let unknown: Vec<String> = module
            .imports()
            .filter(|i| i.module() == MODULE && !self.0.contains(&i.name()))
            .map(|i| format!("{MODULE}::{}", i.name()))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!("module imports unknown host function(s): {}", unknown.join(", ")))
        }
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

/// Runs the decoders of host-call arguments on arbitrary bytes, as the host functions run them
/// on what they read from guest memory (`fuzz` target `host_arguments`): the first byte picks
/// the decoder, the rest is its input.
#[cfg(any(test, fuzzing))]
pub(crate) fn decode_arguments(data: &[u8]) {
    let Some((&which, input)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(input);
    match which % 6 {
        // host_http_fetch's request document.
        0 => drop(http::outbound(input)),
        // host_db_query/exec's parameters.
        1 => drop(crate::state::sql::params_from_json(input)),
        // A key checked against grant patterns: the first line is the key, the others patterns.
        2 => {
            let mut lines = text.lines();
            let key = lines.next().unwrap_or_default();
            let patterns: Vec<String> = lines.map(str::to_owned).collect();
            let grant = crate::spec::KvGrant { read: patterns.clone(), write: patterns };
            let _ = crate::state::validate_key(key);
            if let Ok(grants) = kv::Grants::configure(Some(&grant)) {
                let _ = grants.check(kv::Access::Write, "set", key);
                let _ = grants.check_list(key);
            }
        }
        // A pointer and a length into a memory of the given size: in bounds or a trap.
        3 => {
            let word = |at: usize| {
                input.get(at..at + 4).map_or(0, |b| i32::from_le_bytes(b.try_into().expect("4 bytes")))
            };
            let memory_len = word(8) as u32 as usize;
            if let Ok(range) = memory::range(memory_len, word(0), word(4)) {
                assert!(range.start <= range.end && range.end <= memory_len);
            }
        }
        // host_enqueue's envelope keeps the caller's trace id, whatever the payload.
        4 => {
            let id = crate::spec::FunctionId {
                tenant: crate::spec::Name::new("acme").expect("a name"),
                function: crate::spec::Name::new("resize").expect("a name"),
            };
            let made = jobs::envelope(&id, input, "0af7651916cd43dd8448eb211c80319c".into());
            assert_eq!(jobs::trace_id(&made), "0af7651916cd43dd8448eb211c80319c");
        }
        // host_log's message: one line, no control characters.
        _ => {
            let escaped = log::escape(&text);
            assert!(!escaped.chars().any(|c| c.is_control()), "{escaped:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Unlinked;

    impl HostView for Unlinked {
        fn host(&mut self) -> &mut HostCtx {
            unreachable!("no host function runs in this test")
        }
    }

    #[test]
    fn the_import_allow_list_is_exactly_what_is_linked() {
        let engine = wasmtime::Engine::default();
        let mut linker = Linker::<Unlinked>::new(&engine);
        let allowed = link(&mut linker).unwrap();
        let mut store = wasmtime::Store::new(&engine, Unlinked);
        let mut linked: Vec<&str> =
            linker.iter(&mut store).filter(|(m, _, _)| *m == MODULE).map(|(_, name, _)| name).collect();
        let mut allowed = allowed.functions().to_vec();
        linked.sort();
        allowed.sort();
        assert_eq!(linked, allowed);
        assert!(allowed.len() >= 13 && allowed.contains(&"host_http_fetch"), "{allowed:?}");
    }
}
