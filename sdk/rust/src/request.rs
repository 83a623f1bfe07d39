//! The request envelope the host writes to stdin, and read-only access to it.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{Error, query};

/// Header names to all their values, as the envelope carries them.
pub type Headers = BTreeMap<String, Vec<String>>;

/// One HTTP request (or job payload) handed to the function.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Envelope")]
pub struct Request {
    method: String,
    uri: String,
    headers: Headers,
    body: Vec<u8>,
    tenant: String,
    function: String,
    trace_id: String,
    job_id: Option<String>,
    /// The decoded query pairs, parsed once.
    query: Vec<(String, String)>,
}

/// The request envelope as it travels: the body is text in `body`, or base64 in `body_b64`
/// when the bytes are not UTF-8.
#[derive(Deserialize)]
struct Envelope {
    method: String,
    uri: String,
    #[serde(default)]
    headers: Headers,
    #[serde(default)]
    body: String,
    #[serde(default)]
    body_b64: Option<String>,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    function: String,
    #[serde(default)]
    trace_id: String,
    #[serde(default)]
    job_id: Option<String>,
}

impl TryFrom<Envelope> for Request {
    type Error = base64::DecodeError;

    fn try_from(envelope: Envelope) -> Result<Self, Self::Error> {
        let body = match envelope.body_b64 {
            Some(encoded) => BASE64.decode(encoded)?,
            None => envelope.body.into_bytes(),
        };
        let query =
            envelope.uri.split_once('?').map(|(_, raw)| query::pairs(raw).collect()).unwrap_or_default();
        Ok(Self {
            query,
            method: envelope.method,
            uri: envelope.uri,
            headers: envelope.headers,
            body,
            tenant: envelope.tenant,
            function: envelope.function,
            trace_id: envelope.trace_id,
            job_id: envelope.job_id,
        })
    }
}

impl Request {
    /// The HTTP method, e.g. `GET`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The original request target: path and query, e.g. `/acme/hello/greet?name=Ada`.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The URI without its query string.
    pub fn path(&self) -> &str {
        self.uri.split_once('?').map_or(&self.uri, |(path, _)| path)
    }

    /// The query's `name=value` pairs in order, percent-decoded (`+` as space).
    pub fn query_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.query.iter().map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// The first value of the query parameter `name`, percent-decoded.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query_pairs().find(|(key, _)| *key == name).map(|(_, value)| value)
    }

    /// The first value of header `name`, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, values)| values.first())
            .map(String::as_str)
    }

    /// All headers as the host sent them.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The body bytes, already decoded when they travelled as base64.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as UTF-8 text; a `BadRequest` error when it is not.
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body).map_err(|e| Error::BadRequest(format!("body is not UTF-8: {e}")))
    }

    /// The body parsed as JSON into `T`; a `BadRequest` error when it does not fit.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")))
    }

    /// The tenant that owns the function.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The function's name.
    pub fn function(&self) -> &str {
        &self.function
    }

    /// The trace id of this call, for correlating logs.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The job id when the function runs as an async job.
    pub fn job_id(&self) -> Option<&str> {
        self.job_id.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Request {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn full_envelope_is_readable_through_accessors() {
        let request = parse(
            r#"{"method":"POST","uri":"/acme/hello/greet?name=Ada%20L&x=1+2",
                "headers":{"Content-Type":["application/json"],"x-many":["a","b"]},
                "body":"{\"n\":1}","tenant":"acme","function":"hello",
                "trace_id":"t-1","job_id":"j-9","future_field":true}"#,
        );
        assert_eq!(request.method(), "POST");
        assert_eq!(request.path(), "/acme/hello/greet");
        assert_eq!(request.query("name"), Some("Ada L"));
        assert_eq!(request.query("x"), Some("1 2"));
        assert_eq!(request.query("missing"), None);
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("X-MANY"), Some("a"));
        assert_eq!(request.headers()["x-many"], ["a", "b"]);
        assert_eq!(request.text().unwrap(), r#"{"n":1}"#);
        assert_eq!(request.json::<serde_json::Value>().unwrap()["n"], 1);
        assert_eq!((request.tenant(), request.function(), request.trace_id()), ("acme", "hello", "t-1"));
        assert_eq!(request.job_id(), Some("j-9"));
    }

    #[test]
    fn minimal_envelope_defaults_the_rest() {
        let request = parse(r#"{"method":"GET","uri":"/a/b"}"#);
        assert_eq!(request.path(), "/a/b");
        assert_eq!(request.query_pairs().count(), 0);
        assert!(request.body().is_empty());
        assert_eq!(request.header("host"), None);
        assert_eq!(request.job_id(), None);
    }

    #[test]
    fn binary_body_is_decoded_from_body_b64() {
        let request = parse(r#"{"method":"PUT","uri":"/","body":"","body_b64":"AP+A"}"#);
        assert_eq!(request.body(), [0x00, 0xff, 0x80]);
        assert!(matches!(request.text(), Err(Error::BadRequest(_))));
    }

    #[test]
    fn invalid_base64_rejects_the_envelope() {
        let result = serde_json::from_str::<Request>(r#"{"method":"GET","uri":"/","body_b64":"*"}"#);
        assert!(result.is_err());
    }

    #[test]
    fn json_body_that_does_not_fit_is_a_bad_request() {
        let request = parse(r#"{"method":"POST","uri":"/","body":"[1,2]"}"#);
        let error = request.json::<BTreeMap<String, u8>>().unwrap_err();
        assert_eq!(error.code(), "bad_request");
    }
}
