//! Maps every failure of a request to the edge (function calls, async jobs, the admin API, MCP's
//! transport) to its HTTP response; the only place that does. It reads each error through
//! [`PublicError`], the trait every module's public error implements, and never enumerates
//! another module's types. Bodies are JSON `{"code": ..., "message": ...}` with a stable code
//! ([`failure::body`]); internal details are logged, never sent.

use crate::failure::{self, Failure, PublicError};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// The edge's own ways a request can fail before it becomes an invocation.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("no function serves {0}")]
    NoRoute(String),
    #[error("cannot read the request body: {0}")]
    BadBody(String),
    #[error("the URL is longer than this node's limit of {0} bytes")]
    UrlTooLong(usize),
    #[error("{0}")]
    BadIdempotencyKey(String),
    #[error("{0}")]
    InvalidHeader(String),
}

impl PublicError for EdgeError {
    fn status(&self) -> StatusCode {
        match self {
            EdgeError::NoRoute(_) => StatusCode::NOT_FOUND,
            EdgeError::BadBody(_) | EdgeError::BadIdempotencyKey(_) | EdgeError::InvalidHeader(_) => {
                StatusCode::BAD_REQUEST
            }
            EdgeError::UrlTooLong(_) => StatusCode::URI_TOO_LONG,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            EdgeError::NoRoute(_) => "no_route",
            EdgeError::BadBody(_) => "bad_body",
            EdgeError::UrlTooLong(_) => "url_too_long",
            EdgeError::BadIdempotencyKey(_) => "bad_idempotency_key",
            EdgeError::InvalidHeader(_) => "invalid_header",
        }
    }
}

/// The response reporting `error`: its status, its JSON body, and the headers it asks for.
pub fn response(error: &dyn PublicError) -> Response {
    let mut response = (error.status(), axum::Json(failure::body(error))).into_response();
    let headers = response.headers_mut();
    if let Some(secs) = error.retry_after() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    error.headers(headers);
    response
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        response(self.error())
    }
}

impl IntoResponse for EdgeError {
    fn into_response(self) -> Response {
        response(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::InvalidResponse;
    use crate::api::ApiError;
    use crate::api::keys::AccessError;
    use crate::gate::Rejected;
    use crate::invoke::InvokeError;
    use crate::jobs::JobError;
    use crate::runtime::CallError;
    use crate::state::StateError;
    use std::time::Duration;

    #[test]
    fn each_failure_has_its_status() {
        let cases: [(Failure, u16); 18] = [
            (EdgeError::NoRoute("/x".into()).into(), 404),
            (InvokeError::BodyTooLarge(10).into(), 413),
            (EdgeError::UrlTooLong(10).into(), 414),
            (InvokeError::OverCapacity(Rejected::QueueFull).into(), 429),
            (InvokeError::Call(CallError::Timeout(Duration::from_millis(5))).into(), 504),
            (InvokeError::Call(CallError::MemoryExhausted(1)).into(), 500),
            (InvokeError::Call(CallError::Trap("unreachable".into())).into(), 500),
            (InvokeError::InvalidResponse(InvalidResponse("x".into())).into(), 502),
            (EdgeError::BadIdempotencyKey("x".into()).into(), 400),
            (JobError::NotFound("acme.x".into()).into(), 404),
            (JobError::NotDead { id: "j".into(), status: "running" }.into(), 409),
            (JobError::State(StateError::Unavailable("x".into())).into(), 503),
            (InvokeError::Unavailable("receipts cannot be recorded now").into(), 503),
            (InvokeError::ReceiptPending("acme.x".into()).into(), 503),
            (AccessError::Missing.into(), 401),
            (AccessError::AdminOnly.into(), 403),
            (ApiError::BadQuery("x".into()).into(), 400),
            (ApiError::ForbiddenOrigin("https://evil.example".into()).into(), 403),
        ];
        for (error, status) in cases {
            assert_eq!(error.into_response().status().as_u16(), status);
        }
    }

    fn rate_limited(retry_after_secs: u64) -> InvokeError {
        let limited = crate::gate::rate::Limited { per_second: 5, retry_after_secs };
        InvokeError::RateLimited { scope: crate::invoke::LimitScope::Tenant, limited }
    }

    /// One failure of every kind a node answers with, so every code it can send is named.
    fn every_failure() -> Vec<Failure> {
        use crate::failure::MethodNotAllowed;
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
        let mut all: Vec<Failure> = vec![
            EdgeError::NoRoute("/x".into()).into(),
            MethodNotAllowed { method: "PUT".into(), allow: "GET".into() }.into(),
            EdgeError::BadBody("x".into()).into(),
            EdgeError::UrlTooLong(1).into(),
            EdgeError::BadIdempotencyKey("x".into()).into(),
            EdgeError::InvalidHeader("x".into()).into(),
            InvokeError::BodyTooLarge(1).into(),
            InvokeError::OverCapacity(Rejected::QueueFull).into(),
            rate_limited(1).into(),
            InvokeError::InvalidResponse(InvalidResponse("x".into())).into(),
            InvokeError::Unavailable("x").into(),
            InvokeError::ReceiptPending("x".into()).into(),
            JobError::NotFound("x".into()).into(),
            JobError::NotDead { id: "x".into(), status: "running" }.into(),
            JobError::Conflict { id: "x".into(), reason: "x".into() }.into(),
            AccessError::Missing.into(),
            AccessError::Unknown.into(),
            AccessError::NoAdminToken.into(),
            AccessError::OtherTenant(crate::spec::Name::new("acme").unwrap()).into(),
            AccessError::AdminOnly.into(),
            ApiError::WebhookUnauthorized.into(),
            ApiError::BadQuery("x".into()).into(),
            ApiError::BodyTooLarge(1).into(),
            ApiError::BadBody("x".into()).into(),
            ApiError::NoTenant("x".into()).into(),
            ApiError::NoReceipt("x".into()).into(),
            ApiError::NoFunction("x".into()).into(),
            ApiError::ForbiddenOrigin("x".into()).into(),
        ];
        all.extend(
            [
                CallError::Timeout(Duration::from_millis(1)),
                CallError::CpuLimitExceeded(Duration::from_millis(1)),
                CallError::MemoryExhausted(1),
                CallError::StackOverflow,
                CallError::Trap("x".into()),
                CallError::Exit(1),
                CallError::OutputTooLarge { stream: OutputStream::Stdout, cap: 1 },
                CallError::NoCapacity,
                CallError::Internal("x".into()),
            ]
            .map(|call| Failure::from(InvokeError::Call(call))),
        );
        all.extend(state().map(|e| Failure::from(JobError::State(e))));
        all.extend(state().map(|e| Failure::from(ApiError::State(e))));
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
            .map(|failure| (failure.error().status().as_u16(), failure.error().code()))
            .collect();
        assert_eq!(sent, documented, "README's errors table (status, code) against what the node sends");
    }

    #[test]
    fn internal_details_are_not_sent() {
        let response = Failure::from(InvokeError::Call(CallError::Internal("secret path /etc/x".into())))
            .into_response();
        assert_eq!(response.status(), 500);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        let state = JobError::State(StateError::Internal("redb at /var/x".into()));
        assert_eq!(state.internal_detail(), Some("redb at /var/x"));
        assert_eq!(Failure::from(state).into_response().status(), 500);
    }

    #[test]
    fn a_refused_admin_request_asks_for_a_bearer_token() {
        let response = Failure::from(AccessError::Missing).into_response();
        assert_eq!(response.status(), 401);
        assert!(response.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("Bearer"));
    }

    #[test]
    fn busy_and_unavailable_answers_say_when_to_retry() {
        let retried: [Failure; 4] = [
            InvokeError::OverCapacity(Rejected::QueueTimeout).into(),
            InvokeError::Call(CallError::NoCapacity).into(),
            ApiError::State(StateError::Unavailable("x".into())).into(),
            InvokeError::ReceiptPending("acme.x".into()).into(),
        ];
        for failure in retried {
            assert_eq!(failure.into_response().headers()[header::RETRY_AFTER], "1");
        }
        let limited = Failure::from(rate_limited(3)).into_response();
        assert_eq!(
            (limited.status().as_u16(), limited.headers()[header::RETRY_AFTER].as_bytes()),
            (429, &b"3"[..])
        );
        assert_eq!(limited.headers().get_all(header::RETRY_AFTER).iter().count(), 1);
        let quota = Failure::from(StateError::Quota("x".into())).into_response();
        assert!(quota.headers().get(header::RETRY_AFTER).is_none());
    }
}
