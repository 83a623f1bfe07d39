//! Outbound HTTP, to the `host:port`s of the function's `grants.http.allow`. The node refuses
//! other hosts, non-public addresses and redirects that leave the allow-list
//! ([`Error::Denied`]), bodies past its `egress.maxResponse` ([`Error::Quota`]) and slow or
//! unreachable remotes ([`Error::Unavailable`]). Bodies are binary-safe both ways.
//!
//! ```no_run
//! # extern crate gojinn_sdk as gojinn;
//! # fn main() -> Result<(), gojinn::Error> {
//! use gojinn::http::Request;
//! let response = Request::get("https://api.example.com/v1/items").with_header("accept", "application/json").send()?;
//! if response.status() == 200 {
//!     let items: serde_json::Value = serde_json::from_slice(response.body()).unwrap_or_default();
//! }
//! # Ok(()) }
//! ```

use crate::abi::{addr, arg, call_with_buffer, host_http_fetch, len};
use crate::{Error, Headers, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

/// An outgoing request. Header names are stored lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    url: String,
    headers: Headers,
    body: Vec<u8>,
}

impl Request {
    /// A request with `method` (e.g. `"PUT"`) to `url`, no headers and no body.
    pub fn new(method: &str, url: &str) -> Self {
        Self { method: method.to_owned(), url: url.to_owned(), headers: Headers::new(), body: Vec::new() }
    }

    /// A `GET` request.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` request with `body`.
    pub fn post(url: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new("POST", url).with_body(body)
    }

    /// Adds `value` to header `name`, keeping earlier values.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        crate::response::append(&mut self.headers, name, value.into());
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sends the request; see [`fetch`].
    pub fn send(&self) -> Result<Response, Error> {
        fetch(self)
    }

    /// The document `host_http_fetch` reads.
    fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Document<'a> {
            method: &'a str,
            url: &'a str,
            headers: &'a Headers,
            body_b64: String,
        }
        let document = Document {
            method: &self.method,
            url: &self.url,
            headers: &self.headers,
            body_b64: BASE64.encode(&self.body),
        };
        serde_json::to_vec(&document).expect("a request document serializes")
    }
}

/// Reads the document `host_http_fetch` answers into a [`Response`].
fn response_from_json(json: &[u8]) -> Result<Response, Error> {
    #[derive(Deserialize)]
    struct Document {
        status: u16,
        headers: Headers,
        body_b64: String,
    }
    let invalid = |e: &dyn std::fmt::Display| Error::Internal(format!("the host's response is invalid: {e}"));
    let document: Document = serde_json::from_slice(json).map_err(|e| invalid(&e))?;
    let body = BASE64.decode(document.body_b64).map_err(|e| invalid(&e))?;
    let mut response = Response::new(document.status).with_body(body);
    for (name, values) in document.headers {
        for value in values {
            response = response.append_header(&name, value);
        }
    }
    Ok(response)
}

/// Sends `request` through the host and returns the whole response (redirects followed by the
/// host, within the allow-list). It is a [`Response`] like a handler's, so a function can pass
/// it on as it is.
pub fn fetch(request: &Request) -> Result<Response, Error> {
    let document = request.to_json();
    let (req_ptr, req_len) = arg(&document);
    // SAFETY: the host reads the document and writes at most `cap` bytes at `ptr`.
    let json =
        call_with_buffer(|ptr, cap| unsafe { host_http_fetch(req_ptr, req_len, addr(ptr), len(cap)) })?;
    response_from_json(&json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_travel_as_the_host_expects() {
        let request =
            Request::post("https://a.test/x", vec![0u8, 255]).with_header("X-A", "1").with_header("x-a", "2");
        let json: serde_json::Value = serde_json::from_slice(&request.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"method":"POST","url":"https://a.test/x","headers":{"x-a":["1","2"]},"body_b64":"AP8="})
        );
        let response = response_from_json(
            br#"{"status":201,"headers":{"content-type":["text/plain"]},"body_b64":"aGk="}"#,
        )
        .unwrap();
        assert_eq!(
            (response.status(), response.header("Content-Type"), response.body()),
            (201, Some("text/plain"), &b"hi"[..])
        );
        assert!(response_from_json(br#"{"status":200}"#).is_err());
    }

    #[test]
    fn outside_wasm_fetch_is_unavailable() {
        assert!(matches!(Request::get("https://a.test/").send(), Err(Error::Unavailable(_))));
    }
}
