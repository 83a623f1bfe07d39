//! Test guest: a well-behaved function that busy-waits `?ms=N` milliseconds (default 0) on the
//! monotonic clock, then answers `slept N`. For deadline and concurrency tests.

use std::time::{Duration, Instant};

use gojinn::{Error, Request, Response};

#[gojinn::handler]
fn handle(req: Request) -> Result<Response, Error> {
    let ms: u64 = match req.query("ms") {
        Some(ms) => {
            ms.parse().map_err(|_| Error::BadRequest(format!("ms must be a whole number, not {ms:?}")))?
        }
        None => 0,
    };
    let deadline = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
    Ok(Response::text(200, format!("slept {ms}")))
}
