//! Asynchronous jobs: run another function of the same tenant later, with a payload as its
//! request body. The target must be listed in the caller's `grants.enqueue`. The target is called
//! with `POST /{tenant}/{function}`, the payload as the body, and `content-type:
//! application/json` when the payload is JSON (`application/octet-stream` otherwise).

use crate::Error;
use crate::abi::{addr, arg, call_with_buffer, host_enqueue, len};

/// Queues a job for `function` with `payload`; returns the job's id.
pub fn enqueue(function: &str, payload: &[u8]) -> Result<String, Error> {
    let ((fn_ptr, fn_len), (payload_ptr, payload_len)) = (arg(function.as_bytes()), arg(payload));
    // SAFETY: the host reads the two byte strings and writes at most `cap` bytes at `ptr`.
    let id = call_with_buffer(|ptr, cap| unsafe {
        host_enqueue(fn_ptr, fn_len, payload_ptr, payload_len, addr(ptr), len(cap))
    })?;
    String::from_utf8(id).map_err(|_| Error::Internal("the host's job id is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_wasm_enqueue_is_unavailable() {
        assert!(matches!(enqueue("worker", b"{}"), Err(Error::Unavailable(_))));
    }
}
