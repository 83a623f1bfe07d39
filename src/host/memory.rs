//! Bounds-checked access to a guest's linear memory through its exported `memory`, and the
//! "full length, write only if it fits" output convention.

use super::{ErrorCode, HostError};
use wasmtime::{Caller, Extern, Memory};

fn memory<T>(caller: &mut Caller<'_, T>) -> Result<Memory, HostError> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => Err(HostError::Trap("module exports no memory named \"memory\"".into())),
    }
}

/// The byte range `ptr..ptr+len` of guest memory, or a trap when it is out of bounds.
pub(super) fn range(memory_len: usize, ptr: i32, len: i32) -> Result<std::ops::Range<usize>, HostError> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as u32 as usize);
    match end {
        Some(end) if end <= memory_len => Ok(start..end),
        _ => Err(HostError::Trap(format!("bad pointer: {start}+{} is outside guest memory", len as u32))),
    }
}

/// Copies `len` bytes at `ptr` out of guest memory; more than `max` is an invalid argument.
pub(super) fn read<T>(
    caller: &mut Caller<'_, T>,
    ptr: i32,
    len: i32,
    max: usize,
) -> Result<Vec<u8>, HostError> {
    let memory = memory(caller)?;
    let data = memory.data(&*caller);
    let range = range(data.len(), ptr, len)?;
    if range.len() > max {
        return Err(HostError::Guest(
            ErrorCode::InvalidArgument,
            format!("argument is {} bytes; the limit is {max}", range.len()),
        ));
    }
    Ok(data[range].to_vec())
}

/// Reads `len` bytes at `ptr` as UTF-8 text; `what` names the argument in errors.
pub(super) fn read_str<T>(
    caller: &mut Caller<'_, T>,
    (ptr, len): (i32, i32),
    max: usize,
    what: &str,
) -> Result<String, HostError> {
    let bytes = read(caller, ptr, len, max)?;
    String::from_utf8(bytes).map_err(|_| HostError::invalid(format!("{what} is not valid UTF-8")))
}

/// Writes `bytes` into the guest buffer `out_ptr..out_ptr+out_cap` if they fit, and returns their
/// full length either way: a length above `out_cap` tells the guest to retry with a bigger buffer.
pub(super) fn write_out<T>(
    caller: &mut Caller<'_, T>,
    out_ptr: i32,
    out_cap: i32,
    bytes: &[u8],
) -> Result<i64, HostError> {
    let memory = memory(caller)?;
    let data = memory.data_mut(&mut *caller);
    let range = range(data.len(), out_ptr, out_cap)?;
    if bytes.len() <= range.len() {
        data[range.start..range.start + bytes.len()].copy_from_slice(bytes);
    }
    Ok(bytes.len() as i64)
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn ranges_outside_memory_trap() {
        assert_eq!(range(100, 10, 20).unwrap(), 10..30);
        assert!(range(100, 90, 20).is_err());
        assert!(range(100, -1, 1).is_err(), "pointers are unsigned");
    }
}
