//! Asynchronous jobs: the service functions the edge and the admin API share (enqueue, status,
//! list, redrive), public job ids and each function's delivery policy. The workers that run
//! queued jobs on this node are a trigger of their own (`workers`), above this module.
//!
//! Durability, redelivery, backoff and dead-lettering are the state backend's
//! ([`crate::state::Jobs`]); what a job's attempt means is decided here: a guest response
//! below 500 is a success (the result is the response envelope, a 4xx included: the function
//! answered, and running it again would answer the same), while a 5xx answer, a trap, a timeout,
//! an exhausted resource or an invalid response envelope is a failed attempt, retried after the
//! backoff and dead-lettered after `maxDeliver` attempts. It never runs a job outside its
//! function's admission gates.
//!
//! A job is at most what the backend stores for one ([`crate::state::Jobs::max_job_bytes`]: on
//! NATS the server's `max_payload`): a larger payload is refused at enqueue (413), and a larger
//! result is cut to fit with an error that says so ([`fit`]), never lost.

mod fit;
mod id;
mod policy;

pub use fit::fit;
pub use id::JobId;
pub use policy::{ACK_WAIT_MARGIN, DEFAULT_BACKOFF, DEFAULT_MAX_DELIVER, policy_for};

use crate::failure::PublicError;
use crate::spec::{FunctionId, Name};
use crate::state::{JobRecord, JobStatus, NewJob, State, StateError};
use http::StatusCode;

/// Why a job operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Unknown, malformed, or of a tenant that does not exist: the same answer for all three.
    #[error("no job {0}")]
    NotFound(String),
    #[error("job {id} is {status}; only a dead job can be redriven")]
    NotDead { id: String, status: &'static str },
    #[error("job {id} changed while it was being redriven: {reason}")]
    Conflict { id: String, reason: String },
    #[error(
        "the async call is {size} bytes as a job (its request envelope), more than the {max} bytes the \
         state backend stores for one"
    )]
    TooLarge { size: usize, max: usize },
    #[error(transparent)]
    State(#[from] StateError),
}

impl PublicError for JobError {
    fn status(&self) -> StatusCode {
        match self {
            JobError::NotFound(_) => StatusCode::NOT_FOUND,
            JobError::NotDead { .. } | JobError::Conflict { .. } => StatusCode::CONFLICT,
            JobError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            JobError::State(state) => state.status(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            JobError::NotFound(_) => "no_job",
            JobError::NotDead { .. } => "not_dead",
            JobError::Conflict { .. } => "conflict",
            JobError::TooLarge { .. } => "job_too_large",
            JobError::State(state) => state.code(),
        }
    }

    fn internal_detail(&self) -> Option<&str> {
        match self {
            JobError::State(state) => state.internal_detail(),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            JobError::State(state) => state.retry_after(),
            _ => None,
        }
    }
}

/// The record as the API shows it: the backend's record under the job's public id.
fn public(mut record: JobRecord) -> Result<JobRecord, StateError> {
    record.id = JobId::from_backend(record.tenant.clone(), record.id)?.to_string();
    Ok(record)
}

/// The name of a status as the API writes it (`dead`, `succeeded`, ...).
pub fn status_name(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Queued => "queued",
        JobStatus::Running => "running",
        JobStatus::Succeeded => "succeeded",
        JobStatus::Failed => "failed",
        JobStatus::Dead => "dead",
    }
}

/// Parses a status as the API writes it.
pub fn parse_status(text: &str) -> Result<JobStatus, String> {
    [JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded, JobStatus::Failed, JobStatus::Dead]
        .into_iter()
        .find(|status| status_name(*status) == text)
        .ok_or_else(|| format!("unknown job status {text:?}: use queued, running, succeeded, failed or dead"))
}

/// Queues a call of `function` with `payload` (its request envelope); returns the job's id. The
/// same tenant and idempotency key always give the same job. A payload larger than the backend
/// stores is `TooLarge`, and nothing is queued.
pub async fn enqueue(
    state: &State,
    function: &FunctionId,
    payload: bytes::Bytes,
    idempotency_key: Option<String>,
    traceparent: Option<String>,
) -> Result<JobId, JobError> {
    let max = state.jobs.max_job_bytes();
    if payload.len() > max {
        return Err(JobError::TooLarge { size: payload.len(), max });
    }
    let job = NewJob {
        tenant: function.tenant.clone(),
        function: function.function.clone(),
        payload,
        idempotency_key,
        traceparent,
    };
    let key = state.jobs.enqueue(job).await?;
    Ok(JobId::from_backend(function.tenant.clone(), key)?)
}

/// The job with this id.
pub async fn status(state: &State, id: &JobId) -> Result<JobRecord, JobError> {
    match state.jobs.job(id.tenant(), id.key()).await {
        Ok(Some(record)) => Ok(public(record)?),
        Ok(None) | Err(StateError::NoTenant(_)) => Err(JobError::NotFound(id.to_string())),
        Err(other) => Err(other.into()),
    }
}

/// A tenant's jobs, newest first, at most `limit`, optionally only those with `status`.
pub async fn list(
    state: &State,
    tenant: &Name,
    status: Option<JobStatus>,
    limit: usize,
) -> Result<Vec<JobRecord>, JobError> {
    let records = state.jobs.list(tenant, status, limit).await?;
    Ok(records.into_iter().map(public).collect::<Result<_, _>>()?)
}

/// Puts a dead job back in its queue with a fresh attempt count; returns it as it is then.
pub async fn redrive(state: &State, id: &JobId) -> Result<JobRecord, JobError> {
    let job = status(state, id).await?;
    if job.status != JobStatus::Dead {
        return Err(JobError::NotDead { id: job.id, status: status_name(job.status) });
    }
    match state.jobs.redrive(id.tenant(), id.key()).await {
        Ok(()) => status(state, id).await,
        // It was dead a moment ago: another redrive won, or the record changed under us.
        Err(StateError::InvalidArgument(reason)) => Err(JobError::Conflict { id: id.to_string(), reason }),
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_payload_at_the_backends_bound_is_queued_and_one_byte_more_is_413() {
        use crate::failure::PublicError;
        use crate::state::embedded::EmbeddedBackend;
        use crate::state::{Provisioner, TenantResources};
        let dir = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::open(dir.path()).unwrap().with_max_job_bytes(100);
        let tenant = Name::new("acme").unwrap();
        let resources =
            TenantResources { name: tenant.clone(), replicas: 1, kv_max_bytes: None, kv_max_keys: None };
        backend.ensure_tenant(&resources).await.unwrap();
        let state = State::from_backend(std::sync::Arc::new(backend));
        let function = FunctionId { tenant, function: Name::new("work").unwrap() };
        let payload = |n: usize| bytes::Bytes::from(vec![b'x'; n]);
        let id = enqueue(&state, &function, payload(100), None, None).await.unwrap();
        assert_eq!(status(&state, &id).await.unwrap().status, JobStatus::Queued);
        let refused = enqueue(&state, &function, payload(101), None, None).await.unwrap_err();
        assert_eq!((refused.status(), refused.code()), (StatusCode::PAYLOAD_TOO_LARGE, "job_too_large"));
        assert_eq!(list(&state, &function.tenant, None, 10).await.unwrap().len(), 1, "nothing more queued");
        let new_job = |n| NewJob {
            tenant: function.tenant.clone(),
            function: function.function.clone(),
            payload: payload(n),
            idempotency_key: None,
            traceparent: None,
        };
        assert!(
            matches!(state.jobs.enqueue(new_job(101)).await, Err(StateError::Quota(_))),
            "the backend refuses it too (a guest's host_enqueue gets -3)"
        );
    }

    #[test]
    fn statuses_parse_as_they_are_written() {
        for text in ["queued", "running", "succeeded", "failed", "dead"] {
            let status = parse_status(text).unwrap();
            assert_eq!(status_name(status), text);
            assert_eq!(serde_json::to_value(status).unwrap(), text, "the same names as the JSON");
        }
        assert!(parse_status("Dead").unwrap_err().contains("unknown job status"));
    }
}
