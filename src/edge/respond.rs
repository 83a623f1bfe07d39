//! Maps every failure of a request to the edge (function calls, async jobs, the admin API) to
//! its HTTP response; the only place that does. Bodies are JSON `{"code": ..., "message": ...}`
//! with a stable code; internal details are logged, never sent.

use super::admission::Rejected;
use crate::abi::{GuestResponse, InvalidResponse};
use crate::api::ApiError;
use crate::audit::End;
use crate::jobs::JobError;
use crate::runtime::{CallError, CallOutput};
use crate::state::StateError;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use std::collections::BTreeMap;

/// Every way a function request can fail before or after the guest runs.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("no function serves {0}")]
    NoRoute(String),
    #[error("method {method} is not allowed here")]
    MethodNotAllowed { method: String, allow: String },
    #[error("the request body is larger than this function's limit of {0} bytes")]
    BodyTooLarge(u64),
    #[error("cannot read the request body: {0}")]
    BadBody(String),
    #[error("the URL is longer than this node's limit of {0} bytes")]
    UrlTooLong(usize),
    #[error("the function is over capacity: {0}; retry later")]
    OverCapacity(Rejected),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("the function returned an invalid response: {0}")]
    InvalidResponse(#[from] InvalidResponse),
    #[error("{0}")]
    BadIdempotencyKey(String),
    #[error("{0}")]
    InvalidHeader(String),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{0}; retry later")]
    Unavailable(&'static str),
    #[error(
        "the call ran, but its receipt {0} is not in the audit log yet: the state backend is \
         unavailable; it is appended once the backend is back"
    )]
    ReceiptPending(String),
}

/// Seconds a client should wait before retrying after a 429 or 503.
const RETRY_AFTER_SECS: &str = "1";

impl EdgeError {
    /// The status and stable error code of this failure.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            EdgeError::NoRoute(_) => (StatusCode::NOT_FOUND, "no_route"),
            EdgeError::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            EdgeError::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            EdgeError::BadBody(_) => (StatusCode::BAD_REQUEST, "bad_body"),
            EdgeError::UrlTooLong(_) => (StatusCode::URI_TOO_LONG, "url_too_long"),
            EdgeError::OverCapacity(_) => (StatusCode::TOO_MANY_REQUESTS, "over_capacity"),
            EdgeError::Call(call) => call_status_and_code(call),
            EdgeError::InvalidResponse(_) => (StatusCode::BAD_GATEWAY, "invalid_response"),
            EdgeError::BadIdempotencyKey(_) => (StatusCode::BAD_REQUEST, "bad_idempotency_key"),
            EdgeError::InvalidHeader(_) => (StatusCode::BAD_REQUEST, "invalid_header"),
            EdgeError::Unavailable(_) | EdgeError::ReceiptPending(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            EdgeError::Job(job) => match job {
                JobError::NotFound(_) => (StatusCode::NOT_FOUND, "no_job"),
                JobError::NotDead { .. } => (StatusCode::CONFLICT, "not_dead"),
                JobError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
                JobError::State(state) => state_status_and_code(state),
            },
            EdgeError::Api(api) => match api {
                ApiError::Unauthorized | ApiError::WebhookUnauthorized => {
                    (StatusCode::UNAUTHORIZED, "unauthorized")
                }
                ApiError::BadQuery(_) => (StatusCode::BAD_REQUEST, "bad_query"),
                ApiError::NoTenant(_) => (StatusCode::NOT_FOUND, "no_tenant"),
                ApiError::NoReceipt(_) => (StatusCode::NOT_FOUND, "no_receipt"),
                ApiError::ForbiddenOrigin(_) => (StatusCode::FORBIDDEN, "forbidden_origin"),
                ApiError::State(state) => state_status_and_code(state),
            },
        }
    }

    /// The detail of an internal error, which is logged and never sent.
    fn internal_detail(&self) -> Option<&str> {
        match self {
            EdgeError::Call(CallError::Internal(detail))
            | EdgeError::Job(JobError::State(StateError::Internal(detail)))
            | EdgeError::Api(ApiError::State(StateError::Internal(detail))) => Some(detail),
            _ => None,
        }
    }

    /// The JSON body that reports this failure to a caller, `{"code", "message"}`; an internal
    /// detail is logged here and never part of it. HTTP responses and MCP tool results both
    /// carry it.
    pub fn body(&self) -> serde_json::Value {
        let (_, code) = self.status_and_code();
        let message = match self.internal_detail() {
            Some(detail) => {
                tracing::error!(error = %detail, "internal error serving a request");
                "internal error".to_owned()
            }
            None => self.to_string(),
        };
        serde_json::json!({ "code": code, "message": message })
    }
}

fn call_status_and_code(call: &CallError) -> (StatusCode, &'static str) {
    match call {
        CallError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        CallError::MemoryExhausted(_) => (StatusCode::INTERNAL_SERVER_ERROR, "memory_exhausted"),
        CallError::StackOverflow => (StatusCode::INTERNAL_SERVER_ERROR, "stack_overflow"),
        CallError::Trap(_) => (StatusCode::INTERNAL_SERVER_ERROR, "trap"),
        CallError::Exit(_) => (StatusCode::INTERNAL_SERVER_ERROR, "exit"),
        CallError::OutputTooLarge { .. } => (StatusCode::BAD_GATEWAY, "output_too_large"),
        CallError::NoCapacity => (StatusCode::SERVICE_UNAVAILABLE, "no_capacity"),
        CallError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

fn state_status_and_code(state: &StateError) -> (StatusCode, &'static str) {
    match state {
        StateError::NoTenant(_) => (StatusCode::NOT_FOUND, "no_tenant"),
        StateError::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "invalid_argument"),
        StateError::Quota(_) => (StatusCode::TOO_MANY_REQUESTS, "quota"),
        StateError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        StateError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// How a call that failed with `status_and_code` ends, for its receipt.
pub fn failed_end<'a>(
    (status, code): (StatusCode, &'static str),
    output: &'a [u8],
    host_calls: &BTreeMap<&'static str, u32>,
) -> End<'a> {
    End::failed(code, status.as_u16(), output, host_calls)
}

/// How a call ended, for its receipt: `ok` and the guest's status when it answered with a
/// response envelope, else the stable code and status its failure has here. (The edge, which
/// parses the envelope anyway, builds its end from its response instead.)
pub fn receipt_end(called: &Result<CallOutput, CallError>) -> End<'_> {
    match called {
        Ok(output) => match GuestResponse::parse(&output.stdout) {
            Ok(guest) => End::answered(guest.status.as_u16(), &output.stdout, &output.host_calls),
            Err(invalid) => {
                let invalid = EdgeError::InvalidResponse(invalid).status_and_code();
                failed_end(invalid, &output.stdout, &output.host_calls)
            }
        },
        Err(error) => failed_end(call_status_and_code(error), &[], &Default::default()),
    }
}

impl IntoResponse for EdgeError {
    fn into_response(self) -> Response {
        let (status, _) = self.status_and_code();
        let mut response = (status, axum::Json(self.body())).into_response();
        let headers = response.headers_mut();
        match &self {
            EdgeError::MethodNotAllowed { allow, .. } => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, value);
                }
            }
            EdgeError::OverCapacity(_)
            | EdgeError::Call(CallError::NoCapacity)
            | EdgeError::Unavailable(_)
            | EdgeError::ReceiptPending(_)
            | EdgeError::Job(JobError::State(StateError::Unavailable(_)))
            | EdgeError::Api(ApiError::State(StateError::Unavailable(_))) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
            }
            EdgeError::Api(ApiError::Unauthorized | ApiError::WebhookUnauthorized) => {
                headers
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer realm="gojinn""#));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_failure_has_its_status() {
        let cases = [
            (EdgeError::NoRoute("/x".into()), 404),
            (EdgeError::BodyTooLarge(10), 413),
            (EdgeError::UrlTooLong(10), 414),
            (EdgeError::OverCapacity(Rejected::QueueFull), 429),
            (EdgeError::Call(CallError::Timeout(Duration::from_millis(5))), 504),
            (EdgeError::Call(CallError::MemoryExhausted(1)), 500),
            (EdgeError::Call(CallError::Trap("unreachable".into())), 500),
            (EdgeError::InvalidResponse(InvalidResponse("x".into())), 502),
            (EdgeError::BadIdempotencyKey("x".into()), 400),
            (EdgeError::Job(JobError::NotFound("acme.x".into())), 404),
            (EdgeError::Job(JobError::NotDead { id: "j".into(), status: "running" }), 409),
            (EdgeError::Job(JobError::State(StateError::Unavailable("x".into()))), 503),
            (EdgeError::Unavailable("receipts cannot be recorded now"), 503),
            (EdgeError::ReceiptPending("acme.x".into()), 503),
            (EdgeError::Api(ApiError::Unauthorized), 401),
            (EdgeError::Api(ApiError::BadQuery("x".into())), 400),
            (EdgeError::Api(ApiError::ForbiddenOrigin("https://evil.example".into())), 403),
        ];
        for (error, status) in cases {
            assert_eq!(error.into_response().status().as_u16(), status);
        }
    }

    /// One failure of every kind the edge maps, so every code it can send is named.
    fn every_failure() -> Vec<EdgeError> {
        use crate::runtime::OutputStream;
        let state = || {
            [
                StateError::InvalidArgument("x".into()),
                StateError::Quota("x".into()),
                StateError::NoTenant(crate::spec::Name::new("acme").unwrap()),
                StateError::Unavailable("x".into()),
                StateError::Internal("x".into()),
            ]
        };
        let mut all = vec![
            EdgeError::NoRoute("/x".into()),
            EdgeError::MethodNotAllowed { method: "PUT".into(), allow: "GET".into() },
            EdgeError::BodyTooLarge(1),
            EdgeError::BadBody("x".into()),
            EdgeError::UrlTooLong(1),
            EdgeError::OverCapacity(Rejected::QueueFull),
            EdgeError::InvalidResponse(InvalidResponse("x".into())),
            EdgeError::BadIdempotencyKey("x".into()),
            EdgeError::InvalidHeader("x".into()),
            EdgeError::Unavailable("x"),
            EdgeError::ReceiptPending("x".into()),
            EdgeError::Job(JobError::NotFound("x".into())),
            EdgeError::Job(JobError::NotDead { id: "x".into(), status: "running" }),
            EdgeError::Job(JobError::Conflict { id: "x".into(), reason: "x".into() }),
            EdgeError::Api(ApiError::Unauthorized),
            EdgeError::Api(ApiError::WebhookUnauthorized),
            EdgeError::Api(ApiError::BadQuery("x".into())),
            EdgeError::Api(ApiError::NoTenant("x".into())),
            EdgeError::Api(ApiError::NoReceipt("x".into())),
            EdgeError::Api(ApiError::ForbiddenOrigin("x".into())),
        ];
        all.extend(
            [
                CallError::Timeout(Duration::from_millis(1)),
                CallError::MemoryExhausted(1),
                CallError::StackOverflow,
                CallError::Trap("x".into()),
                CallError::Exit(1),
                CallError::OutputTooLarge { stream: OutputStream::Stdout, cap: 1 },
                CallError::NoCapacity,
                CallError::Internal("x".into()),
            ]
            .map(EdgeError::Call),
        );
        all.extend(state().map(|e| EdgeError::Job(JobError::State(e))));
        all.extend(state().map(|e| EdgeError::Api(ApiError::State(e))));
        all
    }

    #[test]
    fn the_readme_errors_table_lists_every_code_and_no_other() {
        let readme = include_str!("../../README.md");
        let table = readme.split_once("Every failure is JSON").expect("the errors table").1;
        let documented: std::collections::BTreeSet<(u16, &str)> = table
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .filter_map(|line| {
                let mut cells = line.split('|').map(str::trim).skip(1);
                let status = cells.next()?.parse().ok()?;
                let code = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
                Some((status, code))
            })
            .collect();
        let sent: std::collections::BTreeSet<(u16, &str)> = every_failure()
            .iter()
            .map(|error| {
                let (status, code) = error.status_and_code();
                (status.as_u16(), code)
            })
            .collect();
        assert_eq!(sent, documented, "README's errors table (status, code) against what the node sends");
    }

    #[test]
    fn internal_details_are_not_sent() {
        let response = EdgeError::Call(CallError::Internal("secret path /etc/x".into())).into_response();
        assert_eq!(response.status(), 500);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        let state = EdgeError::Job(JobError::State(StateError::Internal("redb at /var/x".into())));
        assert_eq!(state.internal_detail(), Some("redb at /var/x"));
        assert_eq!(state.into_response().status(), 500);
    }

    #[test]
    fn a_refused_admin_request_asks_for_a_bearer_token() {
        let response = EdgeError::Api(ApiError::Unauthorized).into_response();
        assert_eq!(response.status(), 401);
        assert!(response.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Bearer"));
    }
}
