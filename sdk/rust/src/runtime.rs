//! The body of the `main` that `#[handler]` generates: read the request envelope from stdin, call
//! the handler, write the response envelope to stdout. Nothing else may write to stdout.

use std::io::{self, Read, Write};

use crate::{Error, IntoResponse, Request, Response};

/// Runs `handler` once against the request on stdin.
///
/// An unreadable or malformed envelope is answered with a 400 error response. If stdout cannot
/// take the response there is no one left to tell, so the process exits with status 1 (under
/// Gojinn's output cap the host usually traps the write before that).
pub fn run<R: IntoResponse>(handler: impl FnOnce(Request) -> R) {
    let response = match read_request() {
        Ok(request) => handler(request).into_response(),
        Err(error) => error.into_response(),
    };
    if let Err(error) = write_response(&response) {
        eprintln!("gojinn: cannot write the response: {error}");
        std::process::exit(1);
    }
}

fn read_request() -> Result<Request, Error> {
    let mut input = Vec::new();
    io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| Error::BadRequest(format!("cannot read the request envelope: {e}")))?;
    serde_json::from_slice(&input).map_err(|e| Error::BadRequest(format!("invalid request envelope: {e}")))
}

/// Serializes first, then writes once, so a response is never half-written by a JSON error.
fn write_response(response: &Response) -> io::Result<()> {
    let envelope = serde_json::to_vec(response)?;
    let mut stdout = io::stdout().lock();
    stdout.write_all(&envelope)?;
    stdout.flush()
}
