//! Maps every failure of a function request to its HTTP response; the only place that does.
//! Bodies are JSON `{"code": ..., "message": ...}` with a stable code; internal details are
//! logged, never sent.

use super::admission::Rejected;
use crate::abi::InvalidResponse;
use crate::runtime::CallError;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

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
    #[error("the function is over capacity: {0}; retry later")]
    OverCapacity(Rejected),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("the function returned an invalid response: {0}")]
    InvalidResponse(#[from] InvalidResponse),
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
            EdgeError::OverCapacity(_) => (StatusCode::TOO_MANY_REQUESTS, "over_capacity"),
            EdgeError::Call(call) => match call {
                CallError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
                CallError::MemoryExhausted(_) => (StatusCode::INTERNAL_SERVER_ERROR, "memory_exhausted"),
                CallError::StackOverflow => (StatusCode::INTERNAL_SERVER_ERROR, "stack_overflow"),
                CallError::Trap(_) => (StatusCode::INTERNAL_SERVER_ERROR, "trap"),
                CallError::Exit(_) => (StatusCode::INTERNAL_SERVER_ERROR, "exit"),
                CallError::OutputTooLarge { .. } => (StatusCode::BAD_GATEWAY, "output_too_large"),
                CallError::NoCapacity => (StatusCode::SERVICE_UNAVAILABLE, "no_capacity"),
                CallError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
            EdgeError::InvalidResponse(_) => (StatusCode::BAD_GATEWAY, "invalid_response"),
        }
    }
}

impl IntoResponse for EdgeError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            EdgeError::Call(CallError::Internal(detail)) => {
                tracing::error!(error = %detail, "internal error running a function");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let body = serde_json::json!({ "code": code, "message": message });
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            EdgeError::MethodNotAllowed { allow, .. } => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, value);
                }
            }
            EdgeError::OverCapacity(_) | EdgeError::Call(CallError::NoCapacity) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
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
            (EdgeError::OverCapacity(Rejected::QueueFull), 429),
            (EdgeError::Call(CallError::Timeout(Duration::from_millis(5))), 504),
            (EdgeError::Call(CallError::MemoryExhausted(1)), 500),
            (EdgeError::Call(CallError::Trap("unreachable".into())), 500),
            (EdgeError::InvalidResponse(InvalidResponse("x".into())), 502),
        ];
        for (error, status) in cases {
            assert_eq!(error.into_response().status().as_u16(), status);
        }
    }

    #[test]
    fn internal_details_are_not_sent() {
        let response = EdgeError::Call(CallError::Internal("secret path /etc/x".into())).into_response();
        assert_eq!(response.status(), 500);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }
}
