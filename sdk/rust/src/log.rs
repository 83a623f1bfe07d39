//! Structured-by-the-host logging: each message goes to `host_log` with its level, and the host
//! attaches tenant, function and trace id. Logging never fails the function: a message the host
//! refuses (or, outside wasm, cannot take) is dropped.

use crate::abi::{addr, host_log, len};

/// Levels as the ABI numbers them.
#[derive(Clone, Copy)]
enum Level {
    Debug = 0,
    Info = 1,
    Warn = 3,
    Error = 4,
}

fn log(level: Level, message: &str) {
    // SAFETY: the host only reads `len` bytes at `ptr`, which `message` owns for the call.
    unsafe { host_log(level as i32, addr(message.as_ptr()), len(message.len())) };
}

/// Logs at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Logs at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Logs at warning level.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Logs at error level.
pub fn error(message: &str) {
    log(Level::Error, message);
}
