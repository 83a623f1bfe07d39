//! The job tables inside one write transaction: a job's record, payload, place in its tenant's
//! list, queue entry and dead letter change together, so they never disagree.
//!
//! The queue is ordered by the time each job becomes visible. Leasing a job moves its entry to the
//! lease deadline and a failure moves it to the end of the backoff, so a job whose worker died
//! becomes visible again by itself, with no sweeper: that is how a crashed node loses nothing.

use super::deadline_ms;
use super::error::{decode, encode};
use super::tables::{DEAD_LETTERS, JOB_ORDER, JOB_PAYLOADS, JOB_QUEUE, JOBS, after};
use crate::spec::Name;
use crate::state::{Delivery, DeliveryHandle, JobPolicy, JobRecord, JobStatus, NewJob, Outcome, StateError};
use bytes::Bytes;
use redb::{ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A job as stored: its public record and what delivering it needs.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoredJob {
    pub record: JobRecord,
    /// Position in the tenant's job list; later jobs have larger ones.
    pub order: u64,
    pub traceparent: Option<String>,
    /// The key time of its queue entry; `None` once it left the queue (succeeded or dead).
    pub visible_at: Option<u64>,
}

/// The embedded backend's [`DeliveryHandle`]: which attempt of which job a worker holds.
#[derive(Clone, Debug)]
pub(super) struct Lease {
    pub tenant: Name,
    pub id: String,
    pub attempt: u32,
    /// What `in_progress` extends the lease by: the policy's `ack_wait` at fetch time.
    pub ack_wait: Duration,
}

/// Reads a job from the `JOBS` table of a read or a write transaction.
pub(super) fn load(
    jobs: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    tenant: &Name,
    id: &str,
) -> Result<Option<StoredJob>, StateError> {
    jobs.get((tenant.as_str(), id))?.map(|job| decode("job", job.value())).transpose()
}

/// Which wait follows failed attempt `attempt` (from 1): `backoff[attempt - 1]`, the last entry
/// repeating, none if the list is empty.
pub(super) fn backoff(policy: &JobPolicy, attempt: u32) -> Duration {
    let index = attempt.saturating_sub(1) as usize;
    policy.backoff.get(index).or(policy.backoff.last()).copied().unwrap_or_default()
}

fn stale(lease: &Lease) -> StateError {
    StateError::InvalidArgument(format!(
        "job {}: delivery attempt {} is no longer current (it finished, or its lease expired and the \
         job was delivered again)",
        lease.id, lease.attempt
    ))
}

/// The job tables, open in one write transaction.
pub(super) struct JobTables<'txn> {
    jobs: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    payloads: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    order: Table<'txn, (&'static str, u64), &'static str>,
    queue: Table<'txn, (&'static str, &'static str, u64, &'static str), ()>,
    dead: Table<'txn, (&'static str, &'static str), u64>,
}

impl<'txn> JobTables<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, StateError> {
        Ok(Self {
            jobs: txn.open_table(JOBS)?,
            payloads: txn.open_table(JOB_PAYLOADS)?,
            order: txn.open_table(JOB_ORDER)?,
            queue: txn.open_table(JOB_QUEUE)?,
            dead: txn.open_table(DEAD_LETTERS)?,
        })
    }

    /// Stores a new queued job under `id`, visible now; returns false (and changes nothing) if a
    /// job with that id exists, which is how an idempotency key deduplicates.
    pub fn enqueue(&mut self, job: NewJob, id: &str, now: u64) -> Result<bool, StateError> {
        let tenant = job.tenant.as_str();
        if self.jobs.get((tenant, id))?.is_some() {
            return Ok(false);
        }
        let last = self.order.range((tenant, 0)..=(tenant, u64::MAX))?.next_back().transpose()?;
        let order = last.map_or(0, |(key, _)| key.value().1) + 1;
        self.order.insert((tenant, order), id)?;
        self.payloads.insert((tenant, id), job.payload.as_ref())?;
        let record = JobRecord {
            id: id.to_owned(),
            tenant: job.tenant.clone(),
            function: job.function,
            status: JobStatus::Queued,
            attempts: 0,
            result: None,
            error: None,
            created_ms: now,
            updated_ms: now,
        };
        let mut stored = StoredJob { record, order, traceparent: job.traceparent, visible_at: None };
        self.schedule(&mut stored, Some(now))?;
        self.save(&stored)?;
        Ok(true)
    }

    /// Leases up to `max` visible jobs of `function` for `policy.ack_wait`. A visible job already
    /// delivered `max_deliver` times (its last worker died) is dead-lettered instead. Returns the
    /// deliveries and whether anything was written (a job leased or dead-lettered).
    pub fn claim(
        &mut self,
        tenant: &Name,
        function: &Name,
        policy: &JobPolicy,
        max: usize,
        now: u64,
    ) -> Result<(Vec<Delivery>, bool), StateError> {
        let mut deliveries = Vec::new();
        let mut wrote = false;
        while deliveries.len() < max {
            let Some(id) = self.first_visible(tenant, function, now)? else { break };
            wrote = true;
            let mut job = load(&self.jobs, tenant, &id)?
                .ok_or_else(|| StateError::Internal(format!("queued job {id} has no record")))?;
            if job.record.attempts >= policy.max_deliver {
                job.record.error = Some(format!(
                    "attempt {} was not finished within its ack wait, and it was the last allowed",
                    job.record.attempts
                ));
                self.bury(&mut job, now)?;
                continue;
            }
            job.record.attempts += 1;
            job.record.status = JobStatus::Running;
            job.record.updated_ms = now;
            // At least 1ms ahead, so the entry leaves the visible range and the loop ends.
            self.schedule(&mut job, Some(deadline_ms(now, policy.ack_wait).max(now + 1)))?;
            self.save(&job)?;
            let payload = self.payloads.get((tenant.as_str(), id.as_str()))?;
            let payload = payload.map_or_else(Bytes::new, |p| Bytes::copy_from_slice(p.value()));
            let lease =
                Lease { tenant: tenant.clone(), id, attempt: job.record.attempts, ack_wait: policy.ack_wait };
            deliveries.push(Delivery {
                job_id: lease.id.clone(),
                tenant: tenant.clone(),
                function: function.clone(),
                payload,
                traceparent: job.traceparent,
                attempt: lease.attempt,
                handle: DeliveryHandle(Arc::new(lease)),
            });
        }
        Ok((deliveries, wrote))
    }

    /// When the next of `function`'s queued jobs becomes visible, if any is queued.
    pub fn next_visible(&self, tenant: &Name, function: &Name) -> Result<Option<u64>, StateError> {
        let (tenant, function) = (tenant.as_str(), function.as_str());
        let end = after(function);
        let mut range = self.queue.range((tenant, function, 0, "")..(tenant, end.as_str(), 0, ""))?;
        Ok(range.next().transpose()?.map(|(key, _)| key.value().2))
    }

    /// Extends a current lease by its `ack_wait` from now.
    pub fn extend(&mut self, lease: &Lease, now: u64) -> Result<(), StateError> {
        let mut job = self.leased(lease)?;
        job.record.updated_ms = now;
        self.schedule(&mut job, Some(deadline_ms(now, lease.ack_wait).max(now + 1)))?;
        self.save(&job)
    }

    /// Records how a current delivery ended: success leaves the queue; a failure is retried after
    /// the backoff, or dead-lettered after the last allowed attempt. Returns the new status.
    pub fn settle(
        &mut self,
        lease: &Lease,
        policy: &JobPolicy,
        outcome: Outcome,
        now: u64,
    ) -> Result<JobStatus, StateError> {
        let mut job = self.leased(lease)?;
        job.record.updated_ms = now;
        match outcome {
            Outcome::Succeeded { result } => self.succeed(&mut job, lease, result, None)?,
            Outcome::Truncated { result, error } => self.succeed(&mut job, lease, result, Some(error))?,
            Outcome::Failed { error } => {
                job.record.error = Some(error);
                if job.record.attempts < policy.max_deliver {
                    job.record.status = JobStatus::Failed;
                    let retry_at = deadline_ms(now, backoff(policy, job.record.attempts));
                    self.schedule(&mut job, Some(retry_at))?;
                    self.save(&job)?;
                } else {
                    self.bury(&mut job, now)?;
                }
            }
        }
        Ok(job.record.status)
    }

    /// Queues a current delivery's job again, visible now, with `error` recorded.
    pub fn release(&mut self, lease: &Lease, error: String, now: u64) -> Result<(), StateError> {
        let mut job = self.leased(lease)?;
        (job.record.status, job.record.error, job.record.updated_ms) = (JobStatus::Queued, Some(error), now);
        self.schedule(&mut job, Some(now))?;
        self.save(&job)
    }

    /// Records a success: the result (and the error of a truncated one), out of the queue.
    fn succeed(
        &mut self,
        job: &mut StoredJob,
        lease: &Lease,
        result: serde_json::Value,
        error: Option<String>,
    ) -> Result<(), StateError> {
        job.record.status = JobStatus::Succeeded;
        job.record.result = Some(result);
        job.record.error = error;
        self.schedule(job, None)?;
        self.payloads.remove((lease.tenant.as_str(), lease.id.as_str()))?;
        self.save(job)
    }

    /// Puts a dead job back in its queue, visible now, with a fresh attempt count.
    pub fn redrive(&mut self, tenant: &Name, id: &str, now: u64) -> Result<(), StateError> {
        let mut job = load(&self.jobs, tenant, id)?
            .ok_or_else(|| StateError::InvalidArgument(format!("tenant {tenant} has no job {id}")))?;
        if job.record.status != JobStatus::Dead {
            return Err(StateError::InvalidArgument(format!(
                "job {id} is {:?}; only a dead job can be redriven",
                job.record.status
            )));
        }
        self.dead.remove((tenant.as_str(), id))?;
        job.record.status = JobStatus::Queued;
        job.record.attempts = 0;
        job.record.updated_ms = now;
        self.schedule(&mut job, Some(now))?;
        self.save(&job)
    }

    /// The first job id of `function` visible at `now`.
    fn first_visible(&self, tenant: &Name, function: &Name, now: u64) -> Result<Option<String>, StateError> {
        let (tenant, function) = (tenant.as_str(), function.as_str());
        let mut range =
            self.queue.range((tenant, function, 0, "")..(tenant, function, now.saturating_add(1), ""))?;
        Ok(range.next().transpose()?.map(|(key, _)| key.value().3.to_owned()))
    }

    /// The job `lease` delivered, if that delivery is still the current one.
    fn leased(&self, lease: &Lease) -> Result<StoredJob, StateError> {
        let job = load(&self.jobs, &lease.tenant, &lease.id)?.ok_or_else(|| stale(lease))?;
        if job.record.status != JobStatus::Running || job.record.attempts != lease.attempt {
            return Err(stale(lease));
        }
        Ok(job)
    }

    /// Moves the job's queue entry to `at`, or out of the queue.
    fn schedule(&mut self, job: &mut StoredJob, at: Option<u64>) -> Result<(), StateError> {
        let record = &job.record;
        let (tenant, function, id) = (record.tenant.as_str(), record.function.as_str(), record.id.as_str());
        if let Some(old) = job.visible_at {
            self.queue.remove((tenant, function, old, id))?;
        }
        if let Some(at) = at {
            self.queue.insert((tenant, function, at, id), ())?;
        }
        job.visible_at = at;
        Ok(())
    }

    /// Dead-letters the job: out of the queue, into the dead-letter table, payload kept for a redrive.
    fn bury(&mut self, job: &mut StoredJob, now: u64) -> Result<(), StateError> {
        job.record.status = JobStatus::Dead;
        job.record.updated_ms = now;
        self.schedule(job, None)?;
        self.dead.insert((job.record.tenant.as_str(), job.record.id.as_str()), now)?;
        self.save(job)
    }

    fn save(&mut self, job: &StoredJob) -> Result<(), StateError> {
        let key = (job.record.tenant.as_str(), job.record.id.as_str());
        self.jobs.insert(key, encode("job", job)?.as_slice())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_repeats_its_last_wait() {
        let ms = Duration::from_millis;
        let policy = JobPolicy { max_deliver: 5, backoff: vec![ms(10), ms(20)], ack_wait: ms(100) };
        assert_eq!([1, 2, 3, 4].map(|attempt| backoff(&policy, attempt)), [ms(10), ms(20), ms(20), ms(20)]);
        let immediate = JobPolicy { backoff: vec![], ..policy };
        assert_eq!(backoff(&immediate, 3), Duration::ZERO);
    }
}
