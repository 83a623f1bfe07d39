//! The envelope of an MCP POST, checked before the transport (`rmcp`) sees it, so that every
//! malformed input is answered with a JSON-RPC error object and the HTTP status the
//! specification names. Left to itself, rmcp 3.11 answers a body that is not JSON, JSON that is
//! no JSON-RPC message, a batch, `params` of the wrong shape and a wrong `Content-Type` all with
//! a plain-text 415, and a wrong `Accept` with a plain-text 406. Nothing here runs a tool.
//!
//! The rules, from MCP 2025-11-25 (basic/index, basic/transports "Sending Messages to the
//! Server") and JSON-RPC 2.0 (section 5.1, error codes):
//! - the body must be JSON: else -32700 Parse error, HTTP 400, `id` null;
//! - it must be one JSON-RPC message ("The body of the POST request MUST be a single JSON-RPC
//!   request, notification, or response"; batching was removed in 2025-06-18, changelog item
//!   "Remove support for JSON-RPC batching"): a JSON array is -32600 Invalid Request ("The JSON
//!   sent is not a valid Request object"), HTTP 400, `id` null, as is any other value that is no
//!   JSON-RPC 2.0 message (`jsonrpc` not "2.0", `method` not a string, an `id` that is not a
//!   string or an integer: MCP's "Requests MUST include a string or integer ID");
//! - `params` that the method does not take (not an object; `tools/call` with `arguments` that
//!   are not an object; a field of the wrong type) are -32602 Invalid params: for a request an
//!   answer like any other (HTTP 200, the request's `id`), for a notification HTTP 400 (the
//!   transport: "If the server cannot accept the input, it MUST return an HTTP error status
//!   code") with `id` null;
//! - the client "MUST include an Accept header, listing both application/json and
//!   text/event-stream" (else 406) and the body is `application/json` (else 415), both
//!   answered with -32600 and `id` null.
//!
//! An unknown method reaches the server, which answers -32601 Method not found with the
//! request's `id`; anything the transport still refuses in plain text is wrapped the same way.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use rmcp::model::{
    CallToolRequestParams, ClientJsonRpcMessage, ErrorCode, InitializeRequestParams, PaginatedRequestParams,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// How long a client may take to send a message.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// `application/json`, the only body the endpoint reads and the type of every answer.
const JSON: &str = "application/json";
/// The stream type a client must also accept.
const EVENT_STREAM: &str = "text/event-stream";
/// The largest transport refusal read back to wrap it in a JSON-RPC error.
const MAX_REFUSAL_BYTES: usize = 4096;

/// Why a POST is not passed on: the answer's status and its JSON-RPC error.
#[derive(Debug, PartialEq)]
pub(super) struct Refusal {
    pub status: StatusCode,
    /// The request's `id` when it has a valid one, else `null`.
    pub id: Value,
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    fn invalid_request(id: &Value, message: impl Into<String>) -> Self {
        let (status, code) = (StatusCode::BAD_REQUEST, ErrorCode::INVALID_REQUEST);
        Self { status, id: id.clone(), code, message: message.into() }
    }

    /// Invalid params: the answer to a request (HTTP 200, its `id`), or the refusal of a
    /// notification (HTTP 400).
    fn invalid_params(id: &Value, message: impl Into<String>) -> Self {
        let status = if id.is_null() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
        Self { status, id: id.clone(), code: ErrorCode::INVALID_PARAMS, message: message.into() }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let error = json!({ "code": self.code.0, "message": self.message });
        let body = json!({ "jsonrpc": "2.0", "id": self.id, "error": error });
        let content_type = [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))];
        (self.status, content_type, body.to_string()).into_response()
    }
}

/// The layer in front of the transport: the headers, the whole body (up to `max_bytes`), the
/// message; a POST that passes goes on with its body, and a plain-text refusal of the
/// transport comes back as a JSON-RPC error.
pub(super) async fn screen(request: Request, next: Next, max_bytes: u64) -> Response {
    if request.method() != http::Method::POST {
        return next.run(request).await;
    }
    if let Err(refusal) = check_headers(request.headers()) {
        return refusal.into_response();
    }
    let (parts, body) = request.into_parts();
    let bytes = match read_message(body, parts.headers.get(header::CONTENT_LENGTH), max_bytes).await {
        Ok(bytes) => bytes,
        Err(refusal) => return refusal.into_response(),
    };
    let id = match check_message(&bytes) {
        Ok(id) => id,
        Err(refusal) => return refusal.into_response(),
    };
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    json_rpc_refusal(response, id).await
}

/// The whole body, refused (413) as soon as it is known to exceed `max_bytes`, or (400) when it
/// does not arrive within [`BODY_READ_TIMEOUT`].
async fn read_message(body: Body, declared: Option<&HeaderValue>, max_bytes: u64) -> Result<Bytes, Refusal> {
    let refusal = |status, message: String| Refusal {
        status,
        id: Value::Null,
        code: ErrorCode::INVALID_REQUEST,
        message,
    };
    let too_large = || {
        let message = format!(
            "body_too_large: the request body is larger than this endpoint's limit of {max_bytes} bytes"
        );
        refusal(StatusCode::PAYLOAD_TOO_LARGE, message)
    };
    let declared = declared.and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_bytes) {
        return Err(too_large());
    }
    let limited = Limited::new(body, usize::try_from(max_bytes).unwrap_or(usize::MAX));
    match tokio::time::timeout(BODY_READ_TIMEOUT, limited.collect()).await {
        Err(_) => Err(refusal(
            StatusCode::BAD_REQUEST,
            format!("bad_body: the request body was not received within {BODY_READ_TIMEOUT:?}"),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(error)) => Err(refusal(StatusCode::BAD_REQUEST, format!("bad_body: {error}"))),
    }
}

/// Ok when the client accepts both answer types and sends JSON.
fn check_headers(headers: &HeaderMap) -> Result<(), Refusal> {
    let accepted: Vec<String> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|item| essence(item).to_ascii_lowercase())
        .collect();
    if ![JSON, EVENT_STREAM].iter().all(|wanted| accepted.iter().any(|a| a == wanted)) {
        let message = "the Accept header must list both application/json and text/event-stream";
        return Err(Refusal {
            status: StatusCode::NOT_ACCEPTABLE,
            ..Refusal::invalid_request(&Value::Null, message)
        });
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if !content_type.is_some_and(|value| essence(value).eq_ignore_ascii_case(JSON)) {
        let shown = content_type.map_or_else(|| "none".to_owned(), |value| format!("{value:?}"));
        let message = format!("the Content-Type must be application/json, not {shown}");
        let refusal = Refusal::invalid_request(&Value::Null, message);
        return Err(Refusal { status: StatusCode::UNSUPPORTED_MEDIA_TYPE, ..refusal });
    }
    Ok(())
}

/// A media type without its parameters.
fn essence(media_type: &str) -> &str {
    media_type.split_once(';').map_or(media_type, |(essence, _)| essence).trim()
}

/// Checks that `body` is one JSON-RPC 2.0 message the transport decodes; returns its `id`
/// (`null` when it has none).
pub(super) fn check_message(body: &[u8]) -> Result<Value, Refusal> {
    let message: Value = serde_json::from_slice(body).map_err(|error| Refusal {
        status: StatusCode::BAD_REQUEST,
        id: Value::Null,
        code: ErrorCode::PARSE_ERROR,
        message: format!("parse error: the body is not JSON: {error}"),
    })?;
    let object = match message {
        Value::Object(object) => object,
        Value::Array(_) => {
            return Err(Refusal::invalid_request(
                &Value::Null,
                "a JSON array (a batch) is not accepted: MCP has no JSON-RPC batching since \
                 2025-06-18; send one message per POST",
            ));
        }
        other => {
            let message = format!("a JSON-RPC message is an object, not {}", kind(&other));
            return Err(Refusal::invalid_request(&Value::Null, message));
        }
    };
    let id = match object.get("id") {
        None => Value::Null,
        Some(id @ Value::String(_)) => id.clone(),
        Some(id @ Value::Number(n)) if n.is_i64() || n.is_u64() => id.clone(),
        Some(other) => {
            let message = format!("`id` must be a string or an integer, not {}", kind(other));
            return Err(Refusal::invalid_request(&Value::Null, message));
        }
    };
    if object.get("jsonrpc") != Some(&Value::from("2.0")) {
        return Err(Refusal::invalid_request(&id, "`jsonrpc` must be \"2.0\""));
    }
    match object.get("method") {
        Some(Value::String(method)) => check_params(method, &object, &id)?,
        Some(other) => {
            let message = format!("`method` must be a string, not {}", kind(other));
            return Err(Refusal::invalid_request(&id, message));
        }
        None if object.contains_key("result") || object.contains_key("error") => {}
        None => {
            let message = "the message has no `method` (a request or notification) and no `result` or \
                           `error` (a response)";
            return Err(Refusal::invalid_request(&id, message));
        }
    }
    let has_method = object.contains_key("method");
    match serde_json::from_value::<ClientJsonRpcMessage>(Value::Object(object)) {
        Ok(_) => Ok(id),
        Err(error) if has_method => Err(Refusal::invalid_params(&id, format!("invalid params: {error}"))),
        Err(error) => Err(Refusal::invalid_request(&id, format!("not a JSON-RPC response: {error}"))),
    }
}

/// `params`, when present, is an object; a `tools/call`'s names its tool and has an object of
/// arguments.
fn check_params(method: &str, message: &Map<String, Value>, id: &Value) -> Result<(), Refusal> {
    let params = match message.get("params") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(params)) => params,
        Some(other) => {
            let message = format!("invalid params: `params` must be an object, not {}", kind(other));
            return Err(Refusal::invalid_params(id, message));
        }
    };
    if method != "tools/call" {
        return decode_params(method, message.get("params"), id);
    }
    if !matches!(params.get("name"), Some(Value::String(_))) {
        return Err(Refusal::invalid_params(id, "invalid params: tools/call needs `name`, the tool's name"));
    }
    match params.get("arguments") {
        None | Some(Value::Null | Value::Object(_)) => decode_params(method, message.get("params"), id),
        Some(other) => {
            let message = format!(
                "invalid params: tools/call `arguments` must be an object of named arguments, not {}",
                kind(other)
            );
            Err(Refusal::invalid_params(id, message))
        }
    }
}

/// Decodes the params of a method this server serves as the transport will, naming the field
/// that does not fit. (The transport reads a known method whose params do not decode as an
/// unknown one, and would answer -32601.)
fn decode_params(method: &str, params: Option<&Value>, id: &Value) -> Result<(), Refusal> {
    let params = params.cloned().unwrap_or(Value::Null);
    let decoded = match method {
        "initialize" => decode::<InitializeRequestParams>(params),
        "tools/call" => decode::<CallToolRequestParams>(params),
        "tools/list" if !params.is_null() => decode::<PaginatedRequestParams>(params),
        _ => Ok(()),
    };
    decoded.map_err(|problem| Refusal::invalid_params(id, format!("invalid params for {method}: {problem}")))
}

/// Decodes `params` as `T`: the field that does not fit and why.
fn decode<T: DeserializeOwned>(params: Value) -> Result<(), String> {
    serde_path_to_error::deserialize::<_, T>(params).map(drop).map_err(|error| {
        match error.path().to_string().as_str() {
            "." => error.inner().to_string(),
            path => format!("{path}: {}", error.inner()),
        }
    })
}

/// What kind of JSON value `value` is, with an article.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The transport's answer, or its plain-text refusal (an unsupported `MCP-Protocol-Version`,
/// say) as a JSON-RPC error with the same status.
async fn json_rpc_refusal(response: Response, id: Value) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|value| essence(value).eq_ignore_ascii_case(JSON));
    if response.status().is_success() || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match http_body_util::Limited::new(body, MAX_REFUSAL_BYTES).collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).trim().to_owned(),
        Err(_) => parts.status.canonical_reason().unwrap_or("refused").to_owned(),
    };
    Refusal { status: parts.status, id, code: ErrorCode::INVALID_REQUEST, message: text }.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str) -> (u16, Value, i32, String) {
        let refusal = check_message(body.as_bytes()).expect_err(body);
        (refusal.status.as_u16(), refusal.id, refusal.code.0, refusal.message)
    }

    #[test]
    fn a_single_request_notification_or_response_passes_with_its_id() {
        let ping = r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#;
        assert_eq!(check_message(ping.as_bytes()), Ok(Value::from("a")));
        let call =
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x","arguments":{"a":1}}}"#;
        assert_eq!(check_message(call.as_bytes()), Ok(Value::from(3)));
        let notification = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert_eq!(check_message(notification.as_bytes()), Ok(Value::Null));
        let unknown = r#"{"jsonrpc":"2.0","id":4,"method":"no/such"}"#;
        assert_eq!(check_message(unknown.as_bytes()), Ok(Value::from(4)), "the server says -32601");
        let response = r#"{"jsonrpc":"2.0","id":5,"result":{}}"#;
        assert_eq!(check_message(response.as_bytes()), Ok(Value::from(5)));
    }

    #[test]
    fn a_body_that_is_not_json_is_a_parse_error() {
        for body in ["", "{", "not json", "{\"jsonrpc\":\"2.0\",}"] {
            let (status, id, code, message) = refused(body);
            assert_eq!((status, id, code), (400, Value::Null, -32700), "{body:?}");
            assert!(message.starts_with("parse error: the body is not JSON: "), "{message}");
        }
    }

    #[test]
    fn a_batch_or_a_value_that_is_no_message_is_an_invalid_request() {
        let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#;
        let (status, id, code, message) = refused(batch);
        assert_eq!((status, id, code), (400, Value::Null, -32600));
        assert!(message.contains("batch"), "{message}");
        let cases = [
            ("5", Value::Null, "not a number"),
            (r#""ping""#, Value::Null, "not a string"),
            (r#"{"id":1,"method":"ping"}"#, json!(1), "`jsonrpc` must be \"2.0\""),
            (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, json!(1), "`jsonrpc` must be"),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                Value::Null,
                "`id` must be a string or an integer",
            ),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, Value::Null, "not a number"),
            (r#"{"jsonrpc":"2.0","id":"x","method":7}"#, json!("x"), "`method` must be a string"),
            (r#"{"jsonrpc":"2.0","id":"x"}"#, json!("x"), "no `method`"),
        ];
        for (body, expected_id, expected) in cases {
            let (status, id, code, message) = refused(body);
            assert_eq!((status, &id, code), (400, &expected_id, -32600), "{body}");
            assert!(message.contains(expected), "{body}: {message}");
        }
    }

    #[test]
    fn params_of_the_wrong_shape_are_invalid_params_answered_to_a_request() {
        let call = |arguments: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"a.b","arguments":{arguments}}}}}"#
            )
        };
        for (arguments, kind) in
            [(r#""text""#, "a string"), ("[1]", "an array"), ("5", "a number"), ("true", "a boolean")]
        {
            let (status, id, code, message) = refused(&call(arguments));
            assert_eq!((status, id, code), (200, json!(9), -32602), "{arguments}");
            assert!(
                message.contains(&format!("`arguments` must be an object of named arguments, not {kind}")),
                "{message}"
            );
        }
        let nameless = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"arguments":{}}}"#;
        assert!(refused(nameless).3.contains("needs `name`"));
        let array_params = r#"{"jsonrpc":"2.0","id":"p","method":"tools/list","params":[1]}"#;
        let (status, id, code, message) = refused(array_params);
        assert_eq!((status, id, code), (200, json!("p"), -32602));
        assert!(message.contains("`params` must be an object, not an array"), "{message}");
        let cursor = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":5}}"#;
        let (status, id, code, message) = refused(cursor);
        assert_eq!((status, id, code), (200, json!(1), -32602));
        assert!(
            message.starts_with("invalid params for tools/list: cursor: invalid type: integer"),
            "{message}"
        );
        let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":["x"]}}"#;
        assert!(refused(call).3.contains("needs `name`"));
        let initialize = r#"{"jsonrpc":"2.0","id":3,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":7}}}"#;
        let (status, id, code, message) = refused(initialize);
        assert_eq!((status, id, code), (200, json!(3), -32602));
        assert!(message.starts_with("invalid params for initialize: clientInfo.name: "), "{message}");
        let notification = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":"x"}"#;
        let (status, id, code, _) = refused(notification);
        assert_eq!((status, id, code), (400, Value::Null, -32602), "a notification is not answered: refused");
    }

    #[test]
    fn the_client_must_accept_both_types_and_send_json() {
        let headers = |accept: &str, content_type: Option<&str>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, accept.parse().unwrap());
            if let Some(content_type) = content_type {
                headers.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
            }
            headers
        };
        let both = "application/json, text/event-stream";
        assert_eq!(check_headers(&headers(both, Some("application/json"))), Ok(()));
        assert_eq!(
            check_headers(&headers(
                "text/event-stream;q=0.9, Application/JSON",
                Some("application/json; charset=utf-8")
            )),
            Ok(())
        );
        let refusal = check_headers(&headers("application/json", Some(JSON))).unwrap_err();
        assert_eq!((refusal.status.as_u16(), refusal.code.0), (406, -32600));
        let refusal = check_headers(&headers(both, Some("text/plain"))).unwrap_err();
        assert_eq!((refusal.status.as_u16(), refusal.code.0), (415, -32600));
        assert!(refusal.message.contains("\"text/plain\""), "{}", refusal.message);
        let refusal = check_headers(&headers(both, None)).unwrap_err();
        assert!(refusal.message.ends_with("not none"), "{}", refusal.message);
    }
}
