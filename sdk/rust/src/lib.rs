//! Gojinn's Rust SDK: write a function as `fn(Request) -> Response` and mark it with
//! `#[gojinn::handler]`; the SDK speaks the guest ABI (JSON envelopes on stdin/stdout and the
//! `gojinn` host module) so the function never has to.
//!
//! ```no_run
//! # extern crate gojinn_sdk as gojinn;
//! use gojinn::{Request, Response};
//!
//! #[gojinn::handler]
//! fn handle(req: Request) -> Response {
//!     Response::text(200, format!("{} {}", req.method(), req.path()))
//! }
//! ```
//!
//! A handler may also return `Result<Response, gojinn::Error>`: an error becomes a JSON error
//! response `{"error": "...", "code": "..."}` (status 400 for a bad request body, else 500).
//!
//! Host capabilities, each allowed by the function's `grants`: [`kv`] (key-value store),
//! [`mutex`] (locks), [`db`] (SQL), [`jobs`] (asynchronous calls of other functions) and
//! [`http`] (outbound requests); [`log`] is always available.

mod abi;
pub mod db;
mod error;
pub mod http;
pub mod jobs;
pub mod kv;
pub mod log;
pub mod mutex;
mod query;
mod request;
mod response;
mod runtime;

pub use error::Error;
pub use gojinn_sdk_macros::handler;
pub use request::{Headers, Request};
pub use response::{IntoResponse, Response};

/// Used by the code `#[handler]` generates; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::run;
}
