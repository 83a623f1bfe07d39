//! Test guest: a well-behaved function that busy-waits `?ms=N` milliseconds (default 0) on the
//! monotonic clock, then answers `slept N`; with `?sleep=N` it sleeps N milliseconds in the host
//! (WASI `poll_oneoff`) instead. For deadline, concurrency and CPU time tests.

use std::time::{Duration, Instant};

use gojinn::{Error, Request, Response};

#[gojinn::handler]
fn handle(req: Request) -> Result<Response, Error> {
    if let Some(ms) = req.query("sleep") {
        let ms: u64 =
            ms.parse().map_err(|_| Error::BadRequest(format!("sleep must be a whole number, not {ms:?}")))?;
        std::thread::sleep(Duration::from_millis(ms));
        return Ok(Response::text(200, format!("slept {ms}")));
    }
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
