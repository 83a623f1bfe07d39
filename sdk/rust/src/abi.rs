//! The `gojinn` host module: raw imports and the buffer convention every host call shares.
//!
//! A host function that returns data writes it into a guest buffer `(out_ptr, out_cap)` and
//! returns the full length; a length larger than the buffer means nothing was written and the
//! call must be repeated with a buffer of that size. Negative returns are error codes whose
//! message `host_last_error` supplies. Outside wasm the imports are stand-ins that answer
//! "unavailable", so the SDK's unit tests link and run on the build machine.

use crate::Error;

/// Size of the first buffer offered to the host; most answers fit.
const INITIAL_CAPACITY: usize = 4096;

/// ABI error code -6, reported for answers that break the convention.
const INTERNAL: i64 = -6;

/// Declares the `gojinn` imports: the real ones on wasm, and elsewhere stand-ins with the same
/// signatures that fail with code -5 (unavailable).
macro_rules! imports {
    ($(fn $name:ident($($arg:ident: $ty:ty),*);)*) => {
        #[cfg(target_arch = "wasm32")]
        mod imports {
            #[link(wasm_import_module = "gojinn")]
            unsafe extern "C" {
                $(pub(crate) fn $name($($arg: $ty),*) -> i64;)*
            }
        }

        #[cfg(not(target_arch = "wasm32"))]
        mod imports {
            //! Stand-ins with the imports' signatures: every call fails with code -5 (unavailable).
            const UNAVAILABLE: i64 = -5;

            $(pub(crate) unsafe fn $name($(_: $ty),*) -> i64 {
                UNAVAILABLE
            })*
        }
    };
}

imports! {
    fn host_log(level: i32, ptr: i32, len: i32);
    fn host_last_error(out_ptr: i32, out_cap: i32);
    fn host_kv_get(key_ptr: i32, key_len: i32, out_ptr: i32, out_cap: i32);
    fn host_kv_set(key_ptr: i32, key_len: i32, val_ptr: i32, val_len: i32);
    fn host_kv_delete(key_ptr: i32, key_len: i32);
    fn host_kv_list(prefix_ptr: i32, prefix_len: i32, out_ptr: i32, out_cap: i32);
    fn host_kv_cas(
        key_ptr: i32,
        key_len: i32,
        expected_ptr: i32,
        expected_len: i32,
        new_ptr: i32,
        new_len: i32
    );
    fn host_mutex_lock(key_ptr: i32, key_len: i32, ttl_ms: i64);
    fn host_mutex_unlock(key_ptr: i32, key_len: i32);
    fn host_db_query(sql_ptr: i32, sql_len: i32, params_ptr: i32, params_len: i32, out_ptr: i32, out_cap: i32);
    fn host_db_exec(sql_ptr: i32, sql_len: i32, params_ptr: i32, params_len: i32);
    fn host_enqueue(fn_ptr: i32, fn_len: i32, payload_ptr: i32, payload_len: i32, out_ptr: i32, out_cap: i32);
    fn host_http_fetch(req_ptr: i32, req_len: i32, out_ptr: i32, out_cap: i32);
}

pub(crate) use imports::*;

/// A guest address as the ABI passes it: the 32-bit linear-memory offset.
pub(crate) fn addr(ptr: *const u8) -> i32 {
    ptr as usize as i32
}

/// A byte count as the ABI passes it (the host reads it back as unsigned).
pub(crate) fn len(n: usize) -> i32 {
    n as i32
}

/// A byte string as the ABI passes it: `(ptr, len)`.
pub(crate) fn arg(bytes: &[u8]) -> (i32, i32) {
    (addr(bytes.as_ptr()), len(bytes.len()))
}

/// The value of a host call that returns a number, or its error.
pub(crate) fn checked(answer: i64) -> Result<i64, Error> {
    if answer < 0 { Err(Error::from_code(answer, last_error())) } else { Ok(answer) }
}

/// Calls a data-returning host function until its answer fits, then returns exactly that answer.
///
/// `call` gets the buffer's address and capacity and returns the host's `i64`.
pub(crate) fn call_with_buffer(call: impl FnMut(*mut u8, usize) -> i64) -> Result<Vec<u8>, Error> {
    fill(call).map_err(|code| Error::from_code(code, last_error()))
}

/// The retry loop of [`call_with_buffer`], returning the raw error code.
fn fill(mut call: impl FnMut(*mut u8, usize) -> i64) -> Result<Vec<u8>, i64> {
    let mut buffer = Vec::<u8>::with_capacity(INITIAL_CAPACITY);
    loop {
        let capacity = buffer.capacity();
        let answer = call(buffer.as_mut_ptr(), capacity);
        if answer < 0 {
            return Err(answer);
        }
        let Ok(length) = usize::try_from(answer) else {
            return Err(INTERNAL); // a length no 32-bit memory can hold: a host bug
        };
        if length <= capacity {
            // SAFETY: the host wrote `length` bytes into the buffer, which has room for them.
            unsafe { buffer.set_len(length) };
            return Ok(buffer);
        }
        buffer = Vec::with_capacity(length);
    }
}

/// The message of the last failed host call; empty when the host has none to give.
fn last_error() -> String {
    // SAFETY: `host_last_error` writes at most `cap` bytes at `ptr`, a buffer `fill` owns.
    fill(|ptr, cap| unsafe { host_last_error(addr(ptr), len(cap)) })
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake host function that answers `answer` by the ABI convention and counts its calls.
    fn host_answering(answer: &[u8], caps: &mut Vec<usize>) -> impl FnMut(*mut u8, usize) -> i64 {
        move |ptr, cap| {
            caps.push(cap);
            if answer.len() <= cap {
                // SAFETY: the caller's buffer has `cap >= answer.len()` bytes of room.
                unsafe { ptr.copy_from_nonoverlapping(answer.as_ptr(), answer.len()) };
            }
            answer.len() as i64
        }
    }

    #[test]
    fn small_answer_fits_the_first_buffer() {
        let mut caps = Vec::new();
        let out = call_with_buffer(host_answering(b"hello", &mut caps)).unwrap();
        assert_eq!(out, b"hello");
        assert_eq!(caps, [INITIAL_CAPACITY]);
    }

    #[test]
    fn large_answer_is_fetched_again_with_a_buffer_of_its_size() {
        let answer: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut caps = Vec::new();
        let out = call_with_buffer(host_answering(&answer, &mut caps)).unwrap();
        assert_eq!(out, answer);
        assert_eq!(caps.len(), 2);
        assert!(caps[1] >= answer.len());
    }

    #[test]
    fn negative_answer_is_a_typed_error() {
        let error = call_with_buffer(|_, _| -7).unwrap_err();
        assert!(matches!(error, Error::Conflict(_)), "{error:?}");
    }

    #[test]
    fn stand_in_imports_answer_unavailable() {
        // SAFETY: the stand-ins never touch memory.
        assert_eq!(unsafe { host_log(2, 0, 0) }, -5);
        assert_eq!(last_error(), "");
    }
}
