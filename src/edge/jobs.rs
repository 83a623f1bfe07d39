//! Asynchronous invocation at the edge: a call asked for with `X-Gojinn-Async: true` or
//! `Prefer: respond-async` is routed, body-capped and admitted like a synchronous one, then its
//! request envelope is queued as a job and answered `202 Accepted` with the job's id and a
//! `Location` to poll (`GET /_gojinn/v1/jobs/{id}`, readable by whoever holds the id).
//!
//! `Idempotency-Key` (1 to 255 printable ASCII characters) makes a retried request the same job:
//! the same tenant and key always give the same id. A sync call ignores the header. The job stores
//! a W3C `traceparent`: the request span's when traces are exported, else the request's own; without
//! a valid one, one on the trace id its envelope carries. It never stores the request's credential
//! headers (`spec::CREDENTIAL_HEADERS`) unless the function's `jobs.keepHeaders` names them.

use super::Edge;
use super::respond::EdgeError;
use crate::abi::GuestRequest;
use crate::failure::Failure;
use crate::jobs::{self, JobId};
use crate::registry::Deployed;
use crate::state::State as StateBackend;
use crate::telemetry::spans;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use std::sync::Arc;

/// Where a job's status is read; `{id}` is the public job id.
pub const STATUS_PATH: &str = "/_gojinn/v1/jobs/{id}";
/// The longest idempotency key.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// How a client asked for an asynchronous call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AsyncAsk {
    /// `X-Gojinn-Async: true`.
    Header,
    /// `Prefer: respond-async` (RFC 7240), acknowledged with `Preference-Applied`.
    Prefer,
}

/// What an asynchronous call carries besides its envelope.
pub struct AsyncCall {
    ask: AsyncAsk,
    idempotency_key: Option<String>,
}

impl AsyncCall {
    /// The asynchronous call the headers ask for, if any; a malformed idempotency key, or an
    /// `X-Gojinn-Async` other than `true` or `false`, is refused.
    pub fn requested(headers: &HeaderMap) -> Result<Option<Self>, EdgeError> {
        let header = headers.get("x-gojinn-async").map(async_header).transpose()?;
        let ask = if prefers_async(headers) {
            AsyncAsk::Prefer
        } else if header == Some(true) {
            AsyncAsk::Header
        } else {
            return Ok(None);
        };
        let idempotency_key = headers.get("idempotency-key").map(idempotency_key).transpose()?;
        Ok(Some(Self { ask, idempotency_key }))
    }

    /// Queues the call and answers 202 with the job's id.
    pub async fn enqueue(
        self,
        state: &StateBackend,
        function: &Deployed,
        headers: &HeaderMap,
        envelope: GuestRequest,
    ) -> Result<Response, Failure> {
        // Traced, the job's parent is this request's span; otherwise the caller's.
        let traced = spans::traceparent(&tracing::Span::current());
        let traceparent = traced.or_else(|| traceparent(headers, &envelope.trace_id));
        let keep = function.spec.jobs.as_ref().map_or(&[][..], |jobs| &jobs.keep_headers);
        let stored = envelope.without_credentials(keep).to_json();
        let id = jobs::enqueue(state, &function.id, stored, self.idempotency_key, traceparent).await?;
        let mut response =
            (StatusCode::ACCEPTED, axum::Json(serde_json::json!({ "job_id": id.to_string() })))
                .into_response();
        let headers = response.headers_mut();
        if let Ok(location) = HeaderValue::from_str(&status_path(&id)) {
            headers.insert(header::LOCATION, location);
        }
        if self.ask == AsyncAsk::Prefer {
            headers.insert("preference-applied", HeaderValue::from_static("respond-async"));
        }
        Ok(response)
    }
}

/// The path of a job's status.
fn status_path(id: &JobId) -> String {
    STATUS_PATH.replace("{id}", &id.to_string())
}

/// `GET /_gojinn/v1/jobs/{id}`: the job's status, attempts, result or error, and timestamps.
#[utoipa::path(
    get,
    path = STATUS_PATH,
    operation_id = "job_status",
    tag = "jobs",
    summary = "A job's status (capability URL)",
    description = "The job's status, attempts, result or error, and timestamps, for whoever holds its id: the \
        Location of an asynchronous call's 202. No credential; Cache-Control: no-store.",
    params(("id" = String, Path, description = "The job's id, `{tenant}.{key}`")),
    security(),
    responses(
        (status = 200, description = "`{id, tenant, function, status, attempts, result, error, created_ms, updated_ms}`", body = inline(serde_json::Value)),
        (status = 404, description = "`no_job`: no job of that id", body = crate::failure::ErrorBody),
        (status = 503, description = "`unavailable`: the state backend cannot be read now (Retry-After)", body = crate::failure::ErrorBody),
        (status = 500, description = "`internal`: the state backend failed (the detail is logged)", body = crate::failure::ErrorBody),
    ),
)]
pub async fn status(State(edge): State<Arc<Edge>>, Path(id): Path<String>) -> Result<Response, Failure> {
    let job = jobs::status(&edge.state, &JobId::parse(&id)?).await?;
    let mut response = axum::Json(job).into_response();
    // A capability URL's answer must not be kept by shared caches.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Whether any `Prefer` header holds the `respond-async` preference.
fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|preference| preference.split([';', '=']).next().unwrap_or_default().trim())
        .any(|name| name.eq_ignore_ascii_case("respond-async"))
}

/// `X-Gojinn-Async`: `true` or `false`, in any case; anything else is refused rather than
/// taken for a synchronous call.
fn async_header(value: &HeaderValue) -> Result<bool, EdgeError> {
    match value.as_bytes().trim_ascii() {
        v if v.eq_ignore_ascii_case(b"true") => Ok(true),
        v if v.eq_ignore_ascii_case(b"false") => Ok(false),
        _ => Err(EdgeError::InvalidHeader(format!(
            "X-Gojinn-Async must be true or false, not {:?}",
            String::from_utf8_lossy(value.as_bytes())
        ))),
    }
}

fn idempotency_key(value: &HeaderValue) -> Result<String, EdgeError> {
    let bytes = value.as_bytes();
    let printable = bytes.iter().all(|b| (b' '..=b'~').contains(b));
    if bytes.is_empty() || bytes.len() > MAX_IDEMPOTENCY_KEY || !printable {
        return Err(EdgeError::BadIdempotencyKey(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        )));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// The request's `traceparent` when it is a valid W3C one; otherwise a new one with the
/// envelope's trace id and a fresh parent id.
fn traceparent(headers: &HeaderMap, trace_id: &str) -> Option<String> {
    spans::request_traceparent(headers).or_else(|| spans::child_traceparent(trace_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (header::HeaderName::from_static(name), HeaderValue::from_static(value)))
            .collect()
    }

    fn ask(pairs: &[(&'static str, &'static str)]) -> Option<AsyncAsk> {
        AsyncCall::requested(&headers(pairs)).unwrap().map(|call| call.ask)
    }

    #[test]
    fn async_is_asked_by_header_or_preference() {
        assert_eq!(ask(&[]), None);
        assert_eq!(ask(&[("x-gojinn-async", "true")]), Some(AsyncAsk::Header));
        assert_eq!(ask(&[("x-gojinn-async", " TRUE ")]), Some(AsyncAsk::Header));
        assert_eq!(ask(&[("x-gojinn-async", "false")]), None);
        assert_eq!(ask(&[("prefer", "respond-async")]), Some(AsyncAsk::Prefer));
        assert_eq!(ask(&[("prefer", "return=minimal, Respond-Async; x=1")]), Some(AsyncAsk::Prefer));
        assert_eq!(ask(&[("prefer", "wait=10")]), None);
        assert_eq!(ask(&[("prefer", "respond-asyncx")]), None);
    }

    #[test]
    fn an_async_header_other_than_true_or_false_is_refused() {
        assert_eq!(ask(&[("x-gojinn-async", "False")]), None);
        for bad in ["yes", "1", "", "truee", "no"] {
            let map = headers(&[("x-gojinn-async", bad)]);
            let refused = AsyncCall::requested(&map).err().unwrap_or_else(|| panic!("{bad:?} accepted"));
            use crate::failure::PublicError;
            assert_eq!(
                (refused.status(), refused.code()),
                (http::StatusCode::BAD_REQUEST, "invalid_header"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn idempotency_keys_are_bounded_printable_text() {
        let call =
            AsyncCall::requested(&headers(&[("x-gojinn-async", "true"), ("idempotency-key", "order 42")]));
        assert_eq!(call.unwrap().unwrap().idempotency_key.as_deref(), Some("order 42"));
        let long = HeaderValue::from_str(&"k".repeat(256)).unwrap();
        for bad in [HeaderValue::from_static(""), long, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()] {
            let mut map = headers(&[("x-gojinn-async", "true")]);
            map.insert("idempotency-key", bad);
            assert!(matches!(AsyncCall::requested(&map), Err(EdgeError::BadIdempotencyKey(_))));
        }
    }

    #[test]
    fn a_valid_traceparent_is_kept_and_a_missing_one_made_on_the_envelopes_trace() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(traceparent(&headers(&[("traceparent", parent)]), "ignored").as_deref(), Some(parent));
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            let mut map = HeaderMap::new();
            map.insert("traceparent", HeaderValue::from_str(bad).unwrap());
            let made = traceparent(&map, trace).unwrap();
            assert!(
                made.starts_with(&format!("00-{trace}-")) && !made.contains("00f067aa0ba902b7"),
                "{made}"
            );
            map.insert("traceparent", HeaderValue::from_str(&made).unwrap());
            assert_eq!(spans::request_traceparent(&map), Some(made), "a valid traceparent is made");
        }
    }
}
