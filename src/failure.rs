//! What a caller is told when a request fails: [`PublicError`], the trait each module's public
//! error implements (status, stable code, public message), and [`Failure`], any such error on its
//! way to the caller. The edge turns a `Failure` into an HTTP response (`edge::respond`, the only
//! place that does) and MCP tool results carry the same [`body`]. This module imports no other
//! module of the crate: every module can name its errors' answers without knowing the edge.

use axum::routing::MethodRouter;
use http::{HeaderMap, Request, StatusCode};

/// What a busy or briefly unavailable node asks a caller to wait, in seconds.
pub const RETRY_SOON_SECS: u64 = 1;

/// An error a caller may be told about: its HTTP status, its stable code and its message.
pub trait PublicError: std::error::Error + Send + Sync + 'static {
    /// The status a response reporting this error carries.
    fn status(&self) -> StatusCode;

    /// The stable code of this error, the `code` of the JSON body (the README's errors table).
    fn code(&self) -> &'static str;

    /// The detail of an internal error, which is logged and never sent; `None` for the others.
    fn internal_detail(&self) -> Option<&str> {
        None
    }

    /// Seconds the caller should wait before retrying (`Retry-After`); `None` when a retry
    /// will not do better.
    fn retry_after(&self) -> Option<u64> {
        None
    }

    /// Headers the answer needs besides the body (`Allow`, `WWW-Authenticate`).
    fn headers(&self, _headers: &mut HeaderMap) {}
}

/// Any public error, on its way to the caller.
#[derive(Debug)]
pub struct Failure(Box<dyn PublicError>);

impl<E: PublicError> From<E> for Failure {
    fn from(error: E) -> Self {
        Self(Box::new(error))
    }
}

impl Failure {
    /// The error this failure reports.
    pub fn error(&self) -> &dyn PublicError {
        &*self.0
    }

    /// The JSON body that reports it (see [`body`]).
    pub fn body(&self) -> serde_json::Value {
        body(self.error())
    }
}

/// The JSON body that reports `error` to a caller, `{"code", "message"}`; an internal detail is
/// logged here and never part of it. HTTP responses and MCP tool results both carry it.
pub fn body(error: &dyn PublicError) -> serde_json::Value {
    let message = match error.internal_detail() {
        Some(detail) => {
            tracing::error!(error = %detail, "internal error serving a request");
            "internal error".to_owned()
        }
        None => error.to_string(),
    };
    serde_json::to_value(ErrorBody { code: error.code().to_owned(), message })
        .expect("an error body serializes")
}

/// The one JSON body of every error answer, as [`body`] writes it; the OpenAPI document
/// describes every error response with it.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// The stable code of the error (the README's errors table).
    #[schema(example = "no_tenant")]
    pub code: String,
    /// What was wrong and where; "internal error" for an internal one, whose detail is logged.
    pub message: String,
}

/// A request with a method its route does not serve.
#[derive(Debug, thiserror::Error)]
#[error("method {method} is not allowed here")]
pub struct MethodNotAllowed {
    pub method: String,
    /// The methods the route serves, as `Allow` lists them.
    pub allow: String,
}

impl PublicError for MethodNotAllowed {
    fn status(&self) -> StatusCode {
        StatusCode::METHOD_NOT_ALLOWED
    }

    fn code(&self) -> &'static str {
        "method_not_allowed"
    }

    fn headers(&self, headers: &mut HeaderMap) {
        if let Ok(value) = http::HeaderValue::from_str(&self.allow) {
            headers.insert(http::header::ALLOW, value);
        }
    }
}

/// `route`, answering any method it does not serve with [`MethodNotAllowed`] naming `allow`.
pub fn allow_methods<S: Clone + Send + Sync + 'static>(
    route: MethodRouter<S>,
    allow: String,
) -> MethodRouter<S> {
    let allow: std::sync::Arc<str> = allow.into();
    route.fallback(move |request: Request<axum::body::Body>| async move {
        Failure::from(MethodNotAllowed { method: request.method().to_string(), allow: allow.to_string() })
    })
}
