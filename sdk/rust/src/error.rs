//! The SDK's one error type: a failed host call (by ABI error code) or a bad request body.

/// What went wrong. Host-call variants carry the message from `host_last_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// ABI code -1: the thing asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// ABI code -2: the function has no grant for this call.
    #[error("denied: {0}")]
    Denied(String),
    /// ABI code -3: a quota or size limit was reached.
    #[error("quota exceeded: {0}")]
    Quota(String),
    /// ABI code -4: the host rejected an argument.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// ABI code -5: the capability is not available here (always so outside wasm).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// ABI code -6 (and any unknown code): the host failed; also usable by handlers.
    #[error("internal error: {0}")]
    Internal(String),
    /// ABI code -7: a concurrent change won.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request body is not what the handler asked for (not UTF-8, not the expected JSON).
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl Error {
    /// Maps a negative ABI return value and the host's message to a variant.
    pub(crate) fn from_code(code: i64, message: String) -> Self {
        let message = if message.is_empty() { format!("host call failed with code {code}") } else { message };
        match code {
            -1 => Self::NotFound(message),
            -2 => Self::Denied(message),
            -3 => Self::Quota(message),
            -4 => Self::InvalidArgument(message),
            -5 => Self::Unavailable(message),
            -7 => Self::Conflict(message),
            _ => Self::Internal(message),
        }
    }

    /// Stable machine-readable code, used as `"code"` in error responses.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::Denied(_) => "denied",
            Self::Quota(_) => "quota",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
            Self::Conflict(_) => "conflict",
            Self::BadRequest(_) => "bad_request",
        }
    }

    /// HTTP status of the error response: 400 for a bad request body, 500 for everything else
    /// (a failed host call is the function's problem, not the client's).
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            _ => 500,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_codes_map_to_variants_and_unknown_codes_are_internal() {
        let cases = [
            (-1, "not_found"),
            (-2, "denied"),
            (-3, "quota"),
            (-4, "invalid_argument"),
            (-5, "unavailable"),
            (-6, "internal"),
            (-7, "conflict"),
            (-99, "internal"),
        ];
        for (code, name) in cases {
            assert_eq!(Error::from_code(code, "m".into()).code(), name, "code {code}");
        }
    }

    #[test]
    fn empty_host_message_is_replaced_by_the_code() {
        let error = Error::from_code(-3, String::new());
        assert_eq!(error.to_string(), "quota exceeded: host call failed with code -3");
    }
}
