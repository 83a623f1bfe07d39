//! How an invocation fails, and what a caller is told of it.

use crate::abi::InvalidResponse;
use crate::failure::{PublicError, RETRY_SOON_SECS};
use crate::gate::Rejected;
use crate::gate::rate::Limited;
use crate::runtime::CallError;
use http::StatusCode;

/// Every way an invocation can fail: refused before it ran, or ended without a valid response.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the request body is larger than this function's limit of {0} bytes")]
    BodyTooLarge(u64),
    #[error("the function is over capacity: {0}; retry later")]
    OverCapacity(Rejected),
    #[error(
        "{scope} rate limit of {} requests per second is reached; retry in {} s",
        .limited.per_second, .limited.retry_after_secs
    )]
    RateLimited { scope: LimitScope, limited: Limited },
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

/// Whose rate limit refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitScope {
    /// The function's `limits.requestsPerSecond`.
    Function,
    /// Its tenant's `quotas.requestsPerSecond`.
    Tenant,
}

impl LimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::Function => "function",
            LimitScope::Tenant => "tenant",
        }
    }
}

impl std::fmt::Display for LimitScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitScope::Function => "the function's",
            LimitScope::Tenant => "the tenant's",
        })
    }
}

impl PublicError for InvokeError {
    fn status(&self) -> StatusCode {
        match self {
            InvokeError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            InvokeError::OverCapacity(_) | InvokeError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            InvokeError::Call(call) => call.status(),
            InvokeError::InvalidResponse(_) => StatusCode::BAD_GATEWAY,
            InvokeError::Unavailable(_) | InvokeError::ReceiptPending(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            InvokeError::BodyTooLarge(_) => "body_too_large",
            InvokeError::OverCapacity(_) => "over_capacity",
            InvokeError::RateLimited { .. } => "rate_limited",
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

    fn retry_after(&self) -> Option<u64> {
        match self {
            InvokeError::Call(call) => call.retry_after(),
            InvokeError::RateLimited { limited, .. } => Some(limited.retry_after_secs),
            InvokeError::BodyTooLarge(_) | InvokeError::InvalidResponse(_) => None,
            InvokeError::OverCapacity(_) | InvokeError::Unavailable(_) | InvokeError::ReceiptPending(_) => {
                Some(RETRY_SOON_SECS)
            }
        }
    }
}
