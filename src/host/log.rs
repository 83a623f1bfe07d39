//! `host_log` and `host_last_error`: guest logging into the node's tracing output, with a budget
//! per call, and the message of the last failed host call.

use super::{ErrorCode, HostError, HostView, finish, memory};
use wasmtime::{Caller, Linker};

/// Log lines one call may write; further lines return the quota error.
pub(super) const MAX_LOGS_PER_CALL: u32 = 256;
/// Longest log message accepted.
const MAX_LOG_BYTES: usize = 16 << 10;

pub(super) fn link<T: HostView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.func_wrap(
        super::MODULE,
        "host_log",
        |mut caller: Caller<'_, T>, level: i32, ptr: i32, len: i32| {
            let _span = caller.data_mut().host().span("host_log").entered();
            caller.data_mut().host().count("host_log");
            let result = host_log(&mut caller, level, ptr, len);
            finish(&mut caller, result)
        },
    )?;
    linker.func_wrap(
        super::MODULE,
        "host_last_error",
        |mut caller: Caller<'_, T>, out_ptr: i32, out_cap: i32| {
            let _span = caller.data_mut().host().span("host_last_error").entered();
            caller.data_mut().host().count("host_last_error");
            let message = caller.data_mut().host().last_error.clone().unwrap_or_default();
            let result = memory::write_out(&mut caller, out_ptr, out_cap, message.as_bytes());
            finish(&mut caller, result)
        },
    )?;
    Ok(())
}

fn host_log<T: HostView>(
    caller: &mut Caller<'_, T>,
    level: i32,
    ptr: i32,
    len: i32,
) -> Result<i64, HostError> {
    if !(0..=4).contains(&level) {
        return Err(HostError::Guest(
            ErrorCode::InvalidArgument,
            format!("log level {level} is not 0 (debug) to 4 (error)"),
        ));
    }
    let bytes = memory::read(caller, ptr, len, MAX_LOG_BYTES)?;
    let host = caller.data_mut().host();
    if host.logs_left == 0 {
        return Err(HostError::Guest(
            ErrorCode::Quota,
            format!("more than {MAX_LOGS_PER_CALL} log lines in one call"),
        ));
    }
    host.logs_left -= 1;
    let message = String::from_utf8_lossy(&bytes);
    let function = host.caps.function();
    match level {
        0 => tracing::debug!(target: "gojinn::guest", %function, "{message}"),
        1 => tracing::info!(target: "gojinn::guest", %function, "{message}"),
        2 => tracing::info!(target: "gojinn::guest", %function, notice = true, "{message}"),
        3 => tracing::warn!(target: "gojinn::guest", %function, "{message}"),
        _ => tracing::error!(target: "gojinn::guest", %function, "{message}"),
    }
    Ok(0)
}
