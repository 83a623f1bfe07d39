//! `host_enqueue`: queues a job for a function of the caller's own tenant that the caller's
//! `grants.enqueue` names. The job carries the request envelope the target will run with:
//! `POST /{tenant}/{function}`, the guest's payload as the body (content-type
//! `application/json` when the payload parses as JSON, `application/octet-stream` otherwise),
//! and the trace id of the enqueuing call; its span (`host.enqueue`, when traces are exported) is
//! the job's parent. The target need not be deployed yet: its jobs wait.

use super::work::Work;
use super::{HostError, HostView, Imports, Waits, memory};
use crate::abi::GuestRequest;
use crate::spec::{FunctionId, Name};
use crate::state::NewJob;
use crate::telemetry::spans;
use bytes::Bytes;
use wasmtime::Caller;

/// Largest job payload a guest may enqueue.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// Longest function name read from the guest (valid names are far shorter; longer ones are
/// simply not granted).
const MAX_NAME_BYTES: usize = 1024;

pub(super) fn link<T: HostView>(imports: &mut Imports<'_, T>) -> wasmtime::Result<()> {
    imports.func_async("host_enqueue", Waits::StateBackend, enqueue::<T>)
}

/// Configures a revision's enqueue grant: the functions of its own tenant it may queue jobs for.
pub(super) fn configure(granted: &[Name]) -> Vec<Name> {
    granted.to_vec()
}

fn enqueue<T: HostView>(
    caller: &mut Caller<'_, T>,
    (fn_ptr, fn_len, payload_ptr, payload_len, out_ptr, out_cap): (i32, i32, i32, i32, i32, i32),
) -> Result<Work, HostError> {
    let target = memory::read_str(caller, (fn_ptr, fn_len), MAX_NAME_BYTES, "the function name")?;
    let host = caller.data_mut().host();
    let caps = host.caps.clone();
    let Some(function) = caps.enqueue.iter().find(|name| name.as_str() == target).cloned() else {
        return Err(HostError::denied(format!(
            "enqueue for {target:?} denied: grants.enqueue of {} is {:?} (functions of tenant {} only)",
            caps.function,
            caps.enqueue.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
            caps.function.tenant,
        )));
    };
    let trace_id = trace_id(&host.envelope);
    let payload = memory::read(caller, payload_ptr, payload_len, MAX_PAYLOAD_BYTES)?;
    let id = FunctionId { tenant: caps.function.tenant.clone(), function };
    let job = NewJob {
        tenant: id.tenant.clone(),
        function: id.function.clone(),
        payload: envelope(&id, &payload, trace_id.clone()),
        idempotency_key: None,
        traceparent: spans::traceparent(&tracing::Span::current())
            .or_else(|| spans::child_traceparent(&trace_id)),
    };
    let inputs = vec![Bytes::from(target), Bytes::from(payload)];
    Ok(Work::data((out_ptr, out_cap), inputs, async move {
        let tenant = job.tenant.clone();
        let key = caps.state.jobs.enqueue(job).await?;
        // The public id, which `GET /_gojinn/v1/jobs/{id}` accepts.
        Ok(Bytes::from(crate::jobs::JobId::from_backend(tenant, key)?.to_string()))
    }))
}

/// The request envelope the job runs with.
pub(super) fn envelope(id: &FunctionId, payload: &[u8], trace_id: String) -> Bytes {
    let json = serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok();
    let content_type = if json { "application/json" } else { "application/octet-stream" };
    GuestRequest::post(content_type, payload, id, trace_id).to_json()
}

/// The trace id of the call's request envelope (empty if it has none).
pub(super) fn trace_id(envelope: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Trace {
        #[serde(default)]
        trace_id: String,
    }
    serde_json::from_slice::<Trace>(envelope).map(|t| t.trace_id).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_envelope_is_a_post_to_the_target_with_the_callers_trace() {
        let id = FunctionId { tenant: Name::new("acme").unwrap(), function: Name::new("resize").unwrap() };
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736".to_owned();
        let json: serde_json::Value =
            serde_json::from_slice(&envelope(&id, br#"{"w":1}"#, trace.clone())).unwrap();
        assert_eq!(json["method"], "POST");
        assert_eq!(json["uri"], "/acme/resize");
        assert_eq!(json["body"], r#"{"w":1}"#);
        assert_eq!(json["headers"]["content-type"][0], "application/json");
        assert_eq!(
            (json["tenant"].as_str(), json["trace_id"].as_str()),
            (Some("acme"), Some(trace.as_str()))
        );
        let binary: serde_json::Value =
            serde_json::from_slice(&envelope(&id, &[0xff], trace.clone())).unwrap();
        assert_eq!(binary["headers"]["content-type"][0], "application/octet-stream");
        assert_eq!(binary["body_b64"], "/w==");

        let parent = spans::child_traceparent(&trace).unwrap();
        assert!(parent.starts_with(&format!("00-{trace}-")) && parent.len() == 55, "{parent}");
        assert_eq!(spans::child_traceparent("not-a-trace"), None);
        assert_eq!(trace_id(br#"{"method":"GET","trace_id":"abc","body":"x"}"#), "abc");
    }
}
