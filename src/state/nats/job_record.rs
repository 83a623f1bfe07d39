//! A job's stored record in the job-state bucket and the rules that decide what a delivery
//! means for it. A record changes only by read-modify-write at the revision read, so two
//! workers (a slow one and the one its job was redelivered to) never overwrite each other.
//!
//! Generations make redelivery safe: the enqueued message is generation 0, the n-th redrive
//! publishes generation n. A delivery older than the record, or of a finished generation, is
//! stale and only acknowledged; a newer one (a redrive whose record update was lost) is adopted.

use super::NatsResult;
use crate::spec::Name;
use crate::state::{JobPolicy, JobRecord, JobStatus, NewJob, now_ms};
use async_nats::HeaderMap;
use async_nats::jetstream::kv::{Operation, Store, UpdateErrorKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Header naming the job a message belongs to.
const JOB_HEADER: &str = "Gojinn-Job";
/// Header holding the message's generation.
const GENERATION_HEADER: &str = "Gojinn-Generation";
const TRACEPARENT_HEADER: &str = "traceparent";
/// Read-modify-write attempts before giving up on a record that keeps changing.
const WRITE_RETRIES: usize = 10;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct StoredJob {
    pub record: JobRecord,
    /// Unix nanoseconds of the enqueue: orders jobs enqueued within one millisecond.
    pub created_ns: u64,
    pub generation: u32,
    /// Stream sequence of the job's message in the dead-letter stream, while it is dead.
    pub dead_letter: Option<u64>,
}

impl StoredJob {
    pub fn queued(id: &str, job: &NewJob) -> Self {
        let created_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let now = created_ns / 1_000_000;
        let record = JobRecord {
            id: id.to_owned(),
            tenant: job.tenant.clone(),
            function: job.function.clone(),
            status: JobStatus::Queued,
            attempts: 0,
            result: None,
            error: None,
            created_ms: now,
            updated_ms: now,
        };
        Self { record, created_ns, generation: 0, dead_letter: None }
    }

    /// Queued and never delivered: its message may not have been published.
    pub fn is_unstarted(&self) -> bool {
        self.record.status == JobStatus::Queued && self.record.attempts == 0
    }

    /// Whether a delivery of `generation` may still change this job: it is the job's current
    /// generation and no worker has finished it yet (a redelivered job can run twice at once).
    pub fn is_open(&self, generation: u32) -> bool {
        generation == self.generation && !matches!(self.record.status, JobStatus::Succeeded | JobStatus::Dead)
    }
}

/// The job id: derived from the idempotency key (so the same key is the same job forever),
/// otherwise random. 32 hex digits either way.
pub(super) fn job_id(tenant: &Name, idempotency_key: Option<&str>) -> String {
    match idempotency_key {
        Some(key) => {
            let digest =
                Sha256::new().chain_update(tenant.as_str()).chain_update([0]).chain_update(key).finalize();
            hex::encode(&digest[..16])
        }
        None => hex::encode(rand::random::<[u8; 16]>()),
    }
}

/// What the headers of a job message say.
#[derive(Debug, PartialEq)]
pub(super) struct JobHeaders {
    pub id: String,
    pub generation: u32,
    pub traceparent: Option<String>,
}

impl JobHeaders {
    /// Headers of a published job message. `Nats-Msg-Id` makes a republish of the same
    /// generation (after a lost ack) a duplicate the stream drops.
    pub fn to_map(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let message_id =
            if self.generation == 0 { self.id.clone() } else { format!("{}.{}", self.id, self.generation) };
        headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id.as_str());
        headers.insert(JOB_HEADER, self.id.as_str());
        headers.insert(GENERATION_HEADER, self.generation.to_string());
        if let Some(traceparent) = &self.traceparent {
            headers.insert(TRACEPARENT_HEADER, traceparent.as_str());
        }
        headers
    }

    pub fn parse(headers: Option<&HeaderMap>) -> Option<Self> {
        let headers = headers?;
        Some(Self {
            id: headers.get(JOB_HEADER)?.as_str().to_owned(),
            generation: headers.get(GENERATION_HEADER)?.as_str().parse().ok()?,
            traceparent: headers.get(TRACEPARENT_HEADER).map(|v| v.as_str().to_owned()),
        })
    }
}

/// What to do with a delivery of `generation`, delivered for the `attempt`-th time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Hand it to a worker.
    Run,
    /// A duplicate or a delivery of an older generation: acknowledge and drop it.
    Stale,
    /// Delivered once more than allowed: the last attempt never finished. Dead-letter it.
    Exhausted,
}

pub(super) fn judge(job: &StoredJob, generation: u32, attempt: u32, policy: &JobPolicy) -> Verdict {
    let live = generation > job.generation || job.is_open(generation);
    if !live {
        Verdict::Stale
    } else if attempt > policy.max_deliver {
        Verdict::Exhausted
    } else {
        Verdict::Run
    }
}

/// The attempt a delivery of `generation` would be: one more than the job's recorded attempts,
/// or the first of a newer generation (a redrive whose record update was lost).
pub(super) fn next_attempt(job: &StoredJob, generation: u32) -> u32 {
    if generation > job.generation { 1 } else { job.record.attempts.saturating_add(1) }
}

/// Wait before the retry that follows failed attempt `attempt` (from 1); the last repeats.
pub(super) fn backoff(policy: &JobPolicy, attempt: u32) -> Duration {
    let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
    policy.backoff.get(index).or(policy.backoff.last()).copied().unwrap_or_default()
}

/// The job's record, `None` if there is none.
pub(super) async fn load(store: &Store, id: &str) -> NatsResult<Option<StoredJob>> {
    match store.entry(id).await? {
        Some(entry) if entry.operation == Operation::Put => Ok(Some(serde_json::from_slice(&entry.value)?)),
        _ => Ok(None),
    }
}

/// Applies `change` to the record at its current revision, again on a concurrent write;
/// `change` returns false to leave the record as it is. Returns the record as it ends up.
pub(super) async fn modify(
    store: &Store,
    id: &str,
    mut change: impl FnMut(&mut StoredJob) -> bool + Send,
) -> NatsResult<Option<StoredJob>> {
    for _ in 0..WRITE_RETRIES {
        let Some(entry) = store.entry(id).await?.filter(|e| e.operation == Operation::Put) else {
            return Ok(None);
        };
        let mut job: StoredJob = serde_json::from_slice(&entry.value)?;
        if !change(&mut job) {
            return Ok(Some(job));
        }
        job.record.updated_ms = now_ms();
        match store.update(id, serde_json::to_vec(&job)?.into(), entry.revision).await {
            Ok(_) => return Ok(Some(job)),
            Err(err) if err.kind() == UpdateErrorKind::WrongLastRevision => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("job {id} kept changing; try again"))
        .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn policy(max_deliver: u32, backoff: &[u64]) -> JobPolicy {
        JobPolicy {
            max_deliver,
            backoff: backoff.iter().map(|s| Duration::from_secs(*s)).collect(),
            ack_wait: Duration::from_secs(30),
        }
    }

    fn stored(status: JobStatus, generation: u32) -> StoredJob {
        let new = NewJob {
            tenant: Name::new("acme").unwrap(),
            function: Name::new("mail").unwrap(),
            payload: Bytes::new(),
            idempotency_key: None,
            traceparent: None,
        };
        let mut job = StoredJob::queued("j1", &new);
        job.record.status = status;
        job.generation = generation;
        job
    }

    #[test]
    fn idempotency_keys_give_stable_ids_per_tenant() {
        let (a, b) = (Name::new("a").unwrap(), Name::new("b").unwrap());
        assert_eq!(job_id(&a, Some("k")), job_id(&a, Some("k")));
        assert_ne!(job_id(&a, Some("k")), job_id(&b, Some("k")));
        assert_ne!(job_id(&a, None), job_id(&a, None));
        assert_eq!(job_id(&a, None).len(), 32);
        assert_eq!(job_id(&a, Some("k")).len(), 32);
    }

    #[test]
    fn headers_round_trip_and_name_each_generation_apart() {
        let first = JobHeaders { id: "j1".into(), generation: 0, traceparent: Some("00-abc-def-01".into()) };
        let map = first.to_map();
        assert_eq!(JobHeaders::parse(Some(&map)), Some(first));
        assert_eq!(map.get(async_nats::header::NATS_MESSAGE_ID).unwrap().as_str(), "j1");
        let redriven = JobHeaders { id: "j1".into(), generation: 2, traceparent: None }.to_map();
        assert_eq!(redriven.get(async_nats::header::NATS_MESSAGE_ID).unwrap().as_str(), "j1.2");
        assert_eq!(JobHeaders::parse(None), None);
        assert_eq!(JobHeaders::parse(Some(&HeaderMap::new())), None);
    }

    #[test]
    fn deliveries_are_judged_by_generation_status_and_attempt() {
        let policy = policy(3, &[]);
        assert_eq!(judge(&stored(JobStatus::Queued, 0), 0, 1, &policy), Verdict::Run);
        assert_eq!(judge(&stored(JobStatus::Failed, 0), 0, 3, &policy), Verdict::Run);
        assert_eq!(judge(&stored(JobStatus::Running, 0), 0, 4, &policy), Verdict::Exhausted);
        assert_eq!(judge(&stored(JobStatus::Succeeded, 0), 0, 2, &policy), Verdict::Stale);
        assert_eq!(judge(&stored(JobStatus::Queued, 1), 0, 1, &policy), Verdict::Stale);
        // A redrive whose record update was lost: the newer message wins over the dead record.
        assert_eq!(judge(&stored(JobStatus::Dead, 0), 1, 1, &policy), Verdict::Run);
        assert_eq!(judge(&stored(JobStatus::Dead, 1), 1, 1, &policy), Verdict::Stale);
    }

    #[test]
    fn attempts_count_from_the_record_and_start_again_with_a_newer_generation() {
        let mut job = stored(JobStatus::Running, 1);
        job.record.attempts = 2;
        assert_eq!(next_attempt(&job, 1), 3);
        assert_eq!(next_attempt(&job, 2), 1);
        assert_eq!(next_attempt(&stored(JobStatus::Queued, 0), 0), 1);
    }

    #[test]
    fn backoff_steps_then_repeats_the_last() {
        let policy = policy(5, &[1, 5]);
        assert_eq!(backoff(&policy, 1), Duration::from_secs(1));
        assert_eq!(backoff(&policy, 2), Duration::from_secs(5));
        assert_eq!(backoff(&policy, 4), Duration::from_secs(5));
        assert_eq!(backoff(&self::policy(5, &[]), 1), Duration::ZERO);
    }
}
