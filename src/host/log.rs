//! `host_log` and `host_last_error`: guest logging into the node's tracing output, with a budget
//! per call, and the message of the last failed host call.
//!
//! A guest's message must never pass for the node's own: it is written with its control
//! characters escaped ([`escape`]), so one call is one line of the guest's, whatever it holds.

use super::{ErrorCode, HostError, HostView, Imports, finish, memory};
use std::borrow::Cow;
use wasmtime::Caller;

/// Log lines one call may write; further lines return the quota error.
const MAX_LOGS_PER_CALL: u32 = 256;
/// Longest log message accepted.
const MAX_LOG_BYTES: usize = 16 << 10;

/// A call's own logging state: the lines it may still write.
pub(super) struct PerCall {
    logs_left: u32,
}

impl Default for PerCall {
    fn default() -> Self {
        Self { logs_left: MAX_LOGS_PER_CALL }
    }
}

pub(super) fn link<T: HostView>(imports: &mut Imports<'_, T>) -> wasmtime::Result<()> {
    imports.func_wrap("host_log", |mut caller: Caller<'_, T>, level: i32, ptr: i32, len: i32| {
        let _span = caller.data_mut().host().span("host_log").entered();
        caller.data_mut().host().count("host_log");
        let result = host_log(&mut caller, level, ptr, len);
        finish(&mut caller, result)
    })?;
    imports.func_wrap("host_last_error", |mut caller: Caller<'_, T>, out_ptr: i32, out_cap: i32| {
        let _span = caller.data_mut().host().span("host_last_error").entered();
        caller.data_mut().host().count("host_last_error");
        let message = caller.data_mut().host().last_error.clone().unwrap_or_default();
        let result = memory::write_out(&mut caller, out_ptr, out_cap, message.as_bytes());
        finish(&mut caller, result)
    })?;
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
    if host.log.logs_left == 0 {
        return Err(HostError::Guest(
            ErrorCode::Quota,
            format!("more than {MAX_LOGS_PER_CALL} log lines in one call"),
        ));
    }
    host.log.logs_left -= 1;
    if !enabled(level) {
        return Ok(0);
    }
    let text = String::from_utf8_lossy(&bytes);
    let message = escape(&text);
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

/// Whether a guest line of `level` would be written: a line nobody reads is not escaped.
fn enabled(level: i32) -> bool {
    use tracing::Level;
    match level {
        0 => tracing::enabled!(target: "gojinn::guest", Level::DEBUG),
        1 | 2 => tracing::enabled!(target: "gojinn::guest", Level::INFO),
        3 => tracing::enabled!(target: "gojinn::guest", Level::WARN),
        _ => tracing::enabled!(target: "gojinn::guest", Level::ERROR),
    }
}

/// `text` with the characters that could end a log line, steer a terminal or reorder what a
/// reader sees (control characters, Unicode line and paragraph separators, bidirectional
/// controls) written as Rust escapes (`\n`, `\u{1b}`), and the backslash doubled so that an
/// escape in the log always means one.
pub(super) fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if needs_escape(c) {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{061c}' | '\u{200e}' | '\u{200f}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn a_message_cannot_start_a_line_or_steer_a_terminal() {
        let forged =
            "ok\n2025-01-01T00:00:00Z  INFO gojinn::server: admin token is x\r\x1b[2J\u{2028}\u{202e}";
        assert_eq!(
            escape(forged),
            "ok\\n2025-01-01T00:00:00Z  INFO gojinn::server: admin token is x\\r\\u{1b}[2J\\u{2028}\\u{202e}"
        );
        assert!(!escape(forged).chars().any(char::is_control));
    }

    #[test]
    fn ordinary_text_is_kept_and_backslashes_are_doubled() {
        for text in ["greeting: \"hi\" to Zoë, 東京 and 🦀", ""] {
            assert_eq!(escape(text), text);
        }
        assert_eq!(escape("a\tb"), "a\\tb", "a tab is a control character too");
        assert!(matches!(escape("plain"), std::borrow::Cow::Borrowed("plain")));
        assert_eq!(escape(r"C:\path\n"), r"C:\\path\\n", "a literal backslash-n stays apart from a newline");
    }
}
