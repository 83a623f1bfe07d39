//! The JSON envelopes of guest ABI v1 (DESIGN section 4): the request a guest reads from stdin
//! and the response it writes to stdout. Bodies that are not UTF-8 travel as `body_b64`.

use crate::spec::CREDENTIAL_HEADERS;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Header names (lower case) mapped to their values in order.
pub type Headers = BTreeMap<String, Vec<String>>;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct GuestRequest {
    pub method: String,
    pub uri: String,
    pub headers: Headers,
    /// The body when it is valid UTF-8; empty otherwise.
    pub body: String,
    /// The body, base64, when it is not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub body_b64: Option<String>,
    pub tenant: String,
    pub function: String,
    pub trace_id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub job_id: Option<String>,
}

impl GuestRequest {
    /// The envelope for a call of `function`; `body` goes into `body` or `body_b64`.
    fn new(
        method: &str,
        uri: String,
        headers: Headers,
        body: &[u8],
        function: &crate::spec::FunctionId,
        trace_id: String,
    ) -> Self {
        let mut request = Self {
            method: method.to_owned(),
            uri,
            headers,
            body: String::new(),
            body_b64: None,
            tenant: function.tenant.to_string(),
            function: function.function.to_string(),
            trace_id,
            job_id: None,
        };
        request.set_body(body);
        request
    }

    /// The envelope of an HTTP request (`parts` and its whole `body`) for a call of `function`.
    pub fn from_http(
        parts: &http::request::Parts,
        body: &[u8],
        function: &crate::spec::FunctionId,
        trace_id: String,
    ) -> Self {
        let mut headers = Headers::new();
        for (name, value) in &parts.headers {
            headers
                .entry(name.as_str().to_owned())
                .or_default()
                .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
        let uri = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
        Self::new(parts.method.as_str(), uri, headers, body, function, trace_id)
    }

    /// The envelope of `POST /{tenant}/{function}` with `body` of `content_type`: how a call
    /// that did not come over HTTP (an MCP tool call, a job a guest queued) reaches its guest.
    pub fn post(
        content_type: &str,
        body: &[u8],
        function: &crate::spec::FunctionId,
        trace_id: String,
    ) -> Self {
        let headers = Headers::from([("content-type".to_owned(), vec![content_type.to_owned()])]);
        let uri = format!("/{}/{}", function.tenant, function.function);
        Self::new("POST", uri, headers, body, function, trace_id)
    }

    /// Puts `body` into `body` or `body_b64`, whichever keeps it intact.
    pub fn set_body(&mut self, body: &[u8]) {
        match std::str::from_utf8(body) {
            Ok(text) => {
                self.body = text.to_owned();
                self.body_b64 = None;
            }
            Err(_) => {
                self.body = String::new();
                self.body_b64 = Some(BASE64.encode(body));
            }
        }
    }

    pub fn to_json(&self) -> Bytes {
        serde_json::to_vec(self).expect("request envelope serializes").into()
    }

    /// The envelope to store with a queued job: without the [`CREDENTIAL_HEADERS`] that `keep`
    /// does not name.
    pub fn without_credentials(mut self, keep: &[crate::spec::CredentialHeader]) -> Self {
        for name in CREDENTIAL_HEADERS {
            if !keep.iter().any(|kept| kept.0 == name) {
                self.headers.remove(name);
            }
        }
        self
    }
}

/// A guest's response as it arrives: every field optional except that `body` and `body_b64`
/// exclude each other. Header values may be one string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResponse {
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, OneOrMany>,
    body: Option<String>,
    body_b64: Option<String>,
}

fn ok() -> u16 {
    200
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A validated guest response.
#[derive(Debug, PartialEq)]
pub struct GuestResponse {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Why a guest's stdout is not a valid response envelope; shown to the caller in the 502 body.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct InvalidResponse(pub String);

/// Hop-by-hop and framing headers are the server's business, never the guest's.
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl GuestResponse {
    pub fn parse(stdout: &[u8]) -> Result<Self, InvalidResponse> {
        if stdout.iter().all(u8::is_ascii_whitespace) {
            return Err(InvalidResponse("the function wrote no response to stdout".into()));
        }
        let raw: RawResponse = serde_json::from_slice(stdout)
            .map_err(|e| InvalidResponse(format!("stdout is not a response envelope: {e}")))?;
        let status = http::StatusCode::from_u16(raw.status)
            .ok()
            .filter(|s| (200..=599).contains(&s.as_u16()))
            .ok_or_else(|| InvalidResponse(format!("status {} is not between 200 and 599", raw.status)))?;
        let body = match (raw.body, raw.body_b64) {
            (Some(_), Some(_)) => return Err(InvalidResponse("both body and body_b64 are set".into())),
            (Some(text), None) => Bytes::from(text),
            (None, Some(b64)) => BASE64
                .decode(b64.as_bytes())
                .map(Bytes::from)
                .map_err(|e| InvalidResponse(format!("body_b64 is not valid base64: {e}")))?,
            (None, None) => Bytes::new(),
        };
        let mut headers = http::HeaderMap::new();
        for (name, values) in raw.headers {
            let header = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| InvalidResponse(format!("invalid header name {name:?}")))?;
            if RESERVED_HEADERS.contains(&header.as_str()) {
                continue;
            }
            let values = match values {
                OneOrMany::One(v) => vec![v],
                OneOrMany::Many(vs) => vs,
            };
            for value in values {
                let value = http::HeaderValue::from_str(&value)
                    .map_err(|_| InvalidResponse(format!("invalid value for header {name:?}")))?;
                headers.append(header.clone(), value);
            }
        }
        Ok(Self { status, headers, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_bodies_travel_as_base64() {
        let mut request = GuestRequest {
            method: "POST".into(),
            uri: "/a/b".into(),
            headers: Headers::new(),
            body: String::new(),
            body_b64: None,
            tenant: "a".into(),
            function: "b".into(),
            trace_id: "t".into(),
            job_id: None,
        };
        request.set_body(&[0xff, 0x00, 0x80]);
        assert_eq!(request.body_b64.as_deref(), Some("/wCA"));
        let json: serde_json::Value = serde_json::from_slice(&request.to_json()).unwrap();
        assert!(json.get("job_id").is_none());
        let response = GuestResponse::parse(
            br#"{"status":201,"headers":{"x-a":"1","x-b":["2","3"]},"body_b64":"/wCA"}"#,
        )
        .unwrap();
        assert_eq!(response.status, 201);
        assert_eq!(&response.body[..], &[0xff, 0x00, 0x80]);
        assert_eq!(response.headers.get_all("x-b").iter().count(), 2);
    }

    #[test]
    fn invalid_envelopes_say_what_is_wrong() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "no response"),
            (b"hello", "not a response envelope"),
            (br#"{"status":99}"#, "between 200 and 599"),
            (br#"{"body":"a","body_b64":"YQ=="}"#, "both body and body_b64"),
            (br#"{"body_b64":"***"}"#, "not valid base64"),
            (br#"{"headers":{"bad name":"x"}}"#, "invalid header name"),
            (br#"{"statuz":200}"#, "unknown field"),
        ];
        for (stdout, expected) in cases {
            let error = GuestResponse::parse(stdout).unwrap_err().0;
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
        }
    }

    #[test]
    fn framing_headers_from_guests_are_dropped() {
        let response = GuestResponse::parse(br#"{"headers":{"content-length":"999","x-ok":"1"}}"#).unwrap();
        assert!(response.headers.get("content-length").is_none());
        assert_eq!(response.headers.get("x-ok").unwrap(), "1");
    }
}
