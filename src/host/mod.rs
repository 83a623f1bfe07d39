//! The `gojinn` host import module (guest ABI v1): linking its functions into the Linker,
//! rejecting modules that import anything else from it, and the error convention every host
//! function follows. Each capability lives in its own submodule.
//!
//! A host function either returns a guest-visible error (a negative code, with the message kept
//! for `host_last_error`) or traps; it traps only for a bad pointer or a host bug.

mod log;
mod memory;

use crate::spec::FunctionId;
use std::sync::Arc;
use wasmtime::{Caller, Linker, Module};

/// The import module name guests link against.
pub const MODULE: &str = "gojinn";

/// Every function of the `gojinn` module this host provides.
pub const FUNCTIONS: &[&str] = &["host_log", "host_last_error"];

/// Per-call host state: who is calling, and the last error message.
pub struct HostCtx {
    function: Arc<FunctionId>,
    last_error: Option<String>,
    logs_left: u32,
}

impl HostCtx {
    pub fn new(function: Arc<FunctionId>) -> Self {
        Self { function, last_error: None, logs_left: log::MAX_LOGS_PER_CALL }
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

/// Links every host function into `linker`.
pub fn link<T: HostView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    log::link(linker)
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
