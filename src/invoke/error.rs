//! How an invocation fails, and what a caller is told of it.

use crate::abi::InvalidResponse;
use crate::failure::PublicError;
use crate::gate::Rejected;
use crate::runtime::CallError;
use http::StatusCode;

/// Every way an invocation can fail: refused before it ran, or ended without a valid response.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the request body is larger than this function's limit of {0} bytes")]
    BodyTooLarge(u64),
    #[error("the function is over capacity: {0}; retry later")]
    OverCapacity(Rejected),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("the function returned an invalid response: {0}")]
    InvalidResponse(#[from] InvalidResponse),
    #[error("{0}; retry later")]
    Unavailable(&'static str),
    #[error(
        "the call ran, but its receipt {0} is not in the audit log yet: the state backend is \
         unavailable; it is appended once the backend is back"
    )]
    ReceiptPending(String),
}

impl PublicError for InvokeError {
    fn status(&self) -> StatusCode {
        match self {
            InvokeError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            InvokeError::OverCapacity(_) => StatusCode::TOO_MANY_REQUESTS,
            InvokeError::Call(call) => call.status(),
            InvokeError::InvalidResponse(_) => StatusCode::BAD_GATEWAY,
            InvokeError::Unavailable(_) | InvokeError::ReceiptPending(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            InvokeError::BodyTooLarge(_) => "body_too_large",
            InvokeError::OverCapacity(_) => "over_capacity",
            InvokeError::Call(call) => call.code(),
            InvokeError::InvalidResponse(_) => "invalid_response",
            InvokeError::Unavailable(_) | InvokeError::ReceiptPending(_) => "unavailable",
        }
    }

    fn internal_detail(&self) -> Option<&str> {
        match self {
            InvokeError::Call(call) => call.internal_detail(),
            _ => None,
        }
    }

    fn retry_after(&self) -> bool {
        match self {
            InvokeError::Call(call) => call.retry_after(),
            InvokeError::BodyTooLarge(_) | InvokeError::InvalidResponse(_) => false,
            InvokeError::OverCapacity(_) | InvokeError::Unavailable(_) | InvokeError::ReceiptPending(_) => {
                true
            }
        }
    }
}
