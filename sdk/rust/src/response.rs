//! The response a function returns, and how it becomes the response envelope on stdout.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::{Error, Headers};

/// An HTTP response under construction. Header names are stored lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Headers,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with `status` and no headers.
    pub fn new(status: u16) -> Self {
        Self { status, headers: Headers::new(), body: Vec::new() }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Self::new(status).with_header("content-type", "text/plain; charset=utf-8").with_body(text.into())
    }

    /// An `application/json` response with `value` serialized; if `value` cannot be serialized
    /// (a map with non-string keys, say) the answer is a 500 error response instead.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::new(status).with_header("content-type", "application/json").with_body(body),
            Err(e) => Self::from(Error::Internal(format!("response is not serializable: {e}"))),
        }
    }

    /// An `application/octet-stream` response.
    pub fn bytes(status: u16, body: Vec<u8>) -> Self {
        Self::new(status).with_header("content-type", "application/octet-stream").with_body(body)
    }

    /// A JSON error response `{"error": message, "code": code}`, the shape every Gojinn error uses.
    pub fn error(status: u16, code: &str, message: impl std::fmt::Display) -> Self {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            error: String,
            code: &'a str,
        }
        let body = Body { error: message.to_string(), code };
        Self::json(status, &body)
    }

    /// Sets header `name` to `value`, replacing any values it had.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.insert(name.to_ascii_lowercase(), vec![value.into()]);
        self
    }

    /// Adds `value` to header `name`, keeping earlier values (for `set-cookie` and the like).
    pub fn append_header(mut self, name: &str, value: impl Into<String>) -> Self {
        append(&mut self.headers, name, value.into());
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let values = self.headers.get(&name.to_ascii_lowercase())?;
        values.first().map(String::as_str)
    }

    /// All headers, names lowercase.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// The response envelope: `body` when the bytes are UTF-8, otherwise `body_b64` (standard
/// base64 with padding), so any body survives the trip through JSON.
impl Serialize for Response {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut envelope = serializer.serialize_struct("Response", 3)?;
        envelope.serialize_field("status", &self.status)?;
        envelope.serialize_field("headers", &self.headers)?;
        match std::str::from_utf8(&self.body) {
            Ok(text) => envelope.serialize_field("body", text)?,
            Err(_) => envelope.serialize_field("body_b64", &BASE64.encode(&self.body))?,
        }
        envelope.end()
    }
}

/// What a handler may return: a [`Response`], an [`Error`], or a `Result` of the two.
pub trait IntoResponse {
    /// Converts `self` into the response to send.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        Response::from(self)
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(value) => value.into_response(),
            Err(error) => error.into_response(),
        }
    }
}

/// An error becomes `{"error": "...", "code": "..."}` with the error's status.
impl From<Error> for Response {
    fn from(error: Error) -> Self {
        Self::error(error.status(), error.code(), &error)
    }
}

/// Adds `value` to header `name` (stored lowercase), keeping earlier values.
pub(crate) fn append(headers: &mut Headers, name: &str, value: String) {
    headers.entry(name.to_ascii_lowercase()).or_default().push(value);
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn envelope(response: &Response) -> Value {
        serde_json::to_value(response).unwrap()
    }

    #[test]
    fn text_response_serializes_to_the_envelope() {
        let response = Response::text(200, "hi").append_header("Set-Cookie", "a=1");
        let response = response.append_header("set-cookie", "b=2");
        assert_eq!(
            envelope(&response),
            json!({
                "status": 200,
                "headers": {
                    "content-type": ["text/plain; charset=utf-8"],
                    "set-cookie": ["a=1", "b=2"],
                },
                "body": "hi",
            })
        );
    }

    #[test]
    fn binary_body_travels_as_body_b64() {
        let response = Response::bytes(201, vec![0x00, 0xff, 0x80]);
        let value = envelope(&response);
        assert_eq!(value["body_b64"], "AP+A");
        assert!(value.get("body").is_none());
        assert_eq!(value["headers"]["content-type"][0], "application/octet-stream");
    }

    #[test]
    fn json_response_sets_content_type_and_with_header_replaces() {
        let response =
            Response::json(200, &json!({"ok": true})).with_header("Content-Type", "application/problem+json");
        assert_eq!(response.header("content-type"), Some("application/problem+json"));
        assert_eq!(response.headers()["content-type"].len(), 1);
        assert_eq!(response.body(), br#"{"ok":true}"#);
    }

    #[test]
    fn unserializable_json_becomes_a_500() {
        let map = std::collections::BTreeMap::from([((1, 2), "v")]);
        let response = Response::json(200, &map);
        assert_eq!(response.status(), 500);
    }

    #[test]
    fn errors_become_json_error_responses() {
        let response = Err::<Response, _>(Error::Conflict("row changed".into())).into_response();
        assert_eq!(response.status(), 500);
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body, json!({"error": "conflict: row changed", "code": "conflict"}));
        let bad = Error::BadRequest("no".into()).into_response();
        assert_eq!(bad.status(), 400);
    }
}
