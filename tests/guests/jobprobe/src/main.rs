//! Test guest for async jobs: answers with the HTTP status in its `STATUS` env (default 200), so a
//! spec change flips it between success and failure, and reports what it was called with:
//! `{"job_id": "tenant.hex" | null, "trace_id": "...", "body": "...", "headers": ["name", ...]}`.

use gojinn::{Request, Response};
use serde::Serialize;

#[derive(Serialize)]
struct Seen<'a> {
    job_id: Option<&'a str>,
    trace_id: &'a str,
    body: String,
    /// The names of the request headers it was given.
    headers: Vec<&'a str>,
}

#[gojinn::handler]
fn handle(req: Request) -> Response {
    let status = std::env::var("STATUS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let seen = Seen {
        job_id: req.job_id(),
        trace_id: req.trace_id(),
        body: String::from_utf8_lossy(req.body()).into_owned(),
        headers: req.headers().keys().map(String::as_str).collect(),
    };
    Response::json(status, &seen)
}
