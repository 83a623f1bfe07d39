//! `host_http_fetch`: outbound HTTP to the `host:port`s of the function's `grants.http.allow`,
//! through the node's SSRF-safe client ([`crate::state::egress`]).
//!
//! Request JSON: `{"method": "GET", "url": "https://...", "headers": {name: [values]},
//! "body_b64": "..."}` (method defaults to GET; headers and body are optional). Answer JSON:
//! `{"status": 200, "headers": {name: [values]}, "body_b64": "..."}`, header names lower case.
//! Refusals (scheme, allow-list, non-public address) are -2, a body past the node's
//! `egress.maxResponse` is -3, an unreachable remote or the node's deadline is -5.

use super::work::Work;
use super::{ErrorCode, HostError, HostView, Imports, Waits, memory};
use crate::spec::HttpGrant;
use crate::state::egress::{AllowList, Egress, EgressError, Inbound, Outbound};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::Caller;

/// Largest request document (JSON, body included as base64).
const MAX_REQUEST_BYTES: usize = 10 << 20;

pub(super) fn link<T: HostView>(imports: &mut Imports<'_, T>) -> wasmtime::Result<()> {
    imports.func_async("host_http_fetch", Waits::Network, fetch::<T>)
}

/// Configures a revision's outbound HTTP: the node's egress client (made by `client` on first
/// use) and the allow-list, with a non-empty `grants.http.allow`.
pub(super) fn configure(
    grant: Option<&HttpGrant>,
    client: impl FnOnce() -> Result<Arc<Egress>, String>,
) -> Result<Option<(Arc<Egress>, AllowList)>, Vec<String>> {
    let allow = grant.map(|http| http.allow.as_slice()).unwrap_or_default();
    if allow.is_empty() {
        return Ok(None);
    }
    let list = AllowList::parse(allow)
        .map_err(|errors| errors.into_iter().map(|e| format!("http.allow: {e}")).collect::<Vec<_>>())?;
    let client = client().map_err(|e| vec![format!("http: {e}")])?;
    Ok(Some((client, list)))
}

impl From<EgressError> for HostError {
    fn from(error: EgressError) -> Self {
        match error {
            EgressError::Denied(m) => Self::denied(m),
            EgressError::Invalid(m) => Self::invalid(m),
            EgressError::TooLarge(m) => Self::Guest(ErrorCode::Quota, m),
            EgressError::Unavailable(m) => Self::Guest(ErrorCode::Unavailable, m),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    #[serde(default)]
    method: Option<String>,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    body_b64: Option<String>,
}

#[derive(Serialize)]
struct Response {
    status: u16,
    headers: BTreeMap<String, Vec<String>>,
    body_b64: String,
}

fn fetch<T: HostView>(
    caller: &mut Caller<'_, T>,
    (req_ptr, req_len, out_ptr, out_cap): (i32, i32, i32, i32),
) -> Result<Work, HostError> {
    let caps = caller.data_mut().host().caps.clone();
    let Some((egress, allow)) = caps.http.clone() else {
        return Err(HostError::denied(format!(
            "{} may not fetch: its spec has no grants.http.allow",
            caps.function
        )));
    };
    let raw = Bytes::from(memory::read(caller, req_ptr, req_len, MAX_REQUEST_BYTES)?);
    let request = outbound(&raw)?;
    Ok(Work::data((out_ptr, out_cap), vec![raw], async move {
        let response = egress.fetch(&allow, request).await?;
        Ok(Bytes::from(serde_json::to_vec(&answer(response)).expect("response serializes")))
    }))
}

/// Parses and checks the guest's request document.
pub(super) fn outbound(raw: &[u8]) -> Result<Outbound, HostError> {
    let request: Request = serde_json::from_slice(raw).map_err(|e| {
        HostError::invalid(format!("the request is not {{method, url, headers, body_b64}}: {e}"))
    })?;
    let method = request.method.as_deref().unwrap_or("GET");
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| HostError::invalid(format!("invalid method {method:?}")))?;
    let url = request
        .url
        .parse::<reqwest::Url>()
        .map_err(|e| HostError::invalid(format!("invalid url {:?}: {e}", request.url)))?;
    let mut headers = HeaderMap::new();
    for (name, values) in request.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HostError::invalid(format!("invalid header name {name:?}")))?;
        for value in values {
            let value = HeaderValue::from_str(&value)
                .map_err(|_| HostError::invalid(format!("invalid value for header {name:?}")))?;
            headers.append(header.clone(), value);
        }
    }
    let body = match request.body_b64 {
        Some(b64) => {
            BASE64.decode(b64).map_err(|e| HostError::invalid(format!("body_b64 is not base64: {e}")))?
        }
        None => Vec::new(),
    };
    Ok(Outbound::new(method, url, headers, Bytes::from(body))?)
}

fn answer(response: Inbound) -> Response {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &response.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into());
    }
    Response { status: response.status.as_u16(), headers, body_b64: BASE64.encode(&response.body) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_strictly() {
        let request =
            outbound(br#"{"url":"https://a.test/x","headers":{"x-a":["1","2"]},"body_b64":"aGk="}"#).unwrap();
        assert_eq!(request.method, Method::GET);
        assert_eq!(request.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(request.body, "hi");
        for (raw, expected) in [
            (r#"{"url":"https://a.test","body":"hi"}"#, "unknown field"),
            (r#"{"url":"not a url"}"#, "invalid url"),
            (r#"{"url":"https://a.test","method":"GE T"}"#, "invalid method"),
            (r#"{"url":"https://a.test","body_b64":"*"}"#, "not base64"),
            (r#"{"url":"https://a.test","headers":{"host":["b.test"]}}"#, "set by the host"),
        ] {
            let Err(HostError::Guest(code, message)) = outbound(raw.as_bytes()) else {
                panic!("{raw} parsed")
            };
            assert_eq!(code, ErrorCode::InvalidArgument, "{raw}");
            assert!(message.contains(expected), "{raw}: {message}");
        }
    }
}
