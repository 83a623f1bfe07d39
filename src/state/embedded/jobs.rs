//! Durable job queues (`Jobs`) on the embedded store: at-least-once delivery under leases, retries
//! after backoff, a dead-letter table after `max_deliver`, and status by id (see `queue` for the
//! transactions). A waiting fetch sleeps until a [`Notify`](tokio::sync::Notify) that enqueue,
//! retry and redrive wake, or until the next queued job's visibility time (a backoff ends or a
//! lease expires); it never polls.

use super::EmbeddedBackend;
use super::queue::{JobTables, Lease, load};
use super::tables::{JOB_ORDER, JOBS};
use super::tenants::RequireTenant;
use crate::spec::Name;
use crate::state::{Delivery, JobPolicy, JobRecord, JobStatus, Jobs, NewJob, Outcome, StateError};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::time::Instant;

/// A job's id: 16 random bytes in hex, or with an idempotency key the first 16 bytes of
/// sha256(tenant, NUL, key) in hex, so the same tenant and key always name the same job. Tenant
/// names hold no NUL, so no two (tenant, key) pairs hash the same input.
fn job_id(tenant: &Name, idempotency_key: Option<&str>) -> String {
    let bytes: [u8; 16] = match idempotency_key {
        None => rand::random(),
        Some(key) => {
            let digest =
                Sha256::new().chain_update(tenant.as_str()).chain_update([0]).chain_update(key).finalize();
            let mut bytes = [0; 16];
            bytes.copy_from_slice(&digest[..16]);
            bytes
        }
    };
    hex::encode(bytes)
}

fn validate_policy(policy: &JobPolicy) -> Result<(), StateError> {
    if policy.max_deliver == 0 || policy.ack_wait.is_zero() {
        return Err(StateError::InvalidArgument(
            "a job policy needs max_deliver >= 1 and a non-zero ack_wait".into(),
        ));
    }
    Ok(())
}

/// `instant + duration`, or a year on if that overflows (a caller may wait `Duration::MAX`).
fn later(instant: Instant, duration: Duration) -> Instant {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    instant.checked_add(duration).unwrap_or(instant + YEAR)
}

/// The lease inside a delivery this backend made.
fn lease_of(delivery: &Delivery) -> Result<Lease, StateError> {
    delivery.handle.0.downcast_ref::<Lease>().cloned().ok_or_else(|| {
        StateError::InvalidArgument(format!(
            "delivery of job {} was not made by the embedded backend",
            delivery.job_id
        ))
    })
}

#[async_trait]
impl Jobs for EmbeddedBackend {
    fn max_job_bytes(&self) -> usize {
        self.max_job_bytes
    }

    async fn enqueue(&self, job: NewJob) -> Result<String, StateError> {
        job.check_size(self.max_job_bytes)?;
        let id = job_id(&job.tenant, job.idempotency_key.as_deref());
        let now = self.clock.now_ms();
        let created = self
            .write_if_changed({
                let id = id.clone();
                move |txn| {
                    txn.require_tenant(&job.tenant)?;
                    let created = JobTables::open(txn)?.enqueue(job, &id, now)?;
                    Ok((created, created))
                }
            })
            .await?;
        if created {
            self.jobs_changed.notify_waiters();
        }
        Ok(id)
    }

    async fn job(&self, tenant: &Name, id: &str) -> Result<Option<JobRecord>, StateError> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.read(move |txn| {
            txn.require_tenant(&tenant)?;
            Ok(load(&txn.open_table(JOBS)?, &tenant, &id)?.map(|job| job.record))
        })
        .await
    }

    async fn list(
        &self,
        tenant: &Name,
        status: Option<JobStatus>,
        limit: usize,
    ) -> Result<Vec<JobRecord>, StateError> {
        let tenant = tenant.clone();
        self.read(move |txn| {
            txn.require_tenant(&tenant)?;
            let (order, jobs) = (txn.open_table(JOB_ORDER)?, txn.open_table(JOBS)?);
            let mut records = Vec::new();
            for entry in order.range((tenant.as_str(), 0)..=(tenant.as_str(), u64::MAX))?.rev() {
                if records.len() == limit {
                    break;
                }
                let (_, id) = entry?;
                let job = load(&jobs, &tenant, id.value())?.ok_or_else(|| {
                    StateError::Internal(format!("listed job {} has no record", id.value()))
                })?;
                if status.is_none_or(|wanted| wanted == job.record.status) {
                    records.push(job.record);
                }
            }
            Ok(records)
        })
        .await
    }

    async fn fetch(
        &self,
        tenant: &Name,
        function: &Name,
        policy: &JobPolicy,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, StateError> {
        validate_policy(policy)?;
        let deadline = later(Instant::now(), wait);
        loop {
            // Registered before looking, so an enqueue between the look and the sleep still wakes us.
            let changed = self.jobs_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();

            let now = self.clock.now_ms();
            let (tenant, function, policy) = (tenant.clone(), function.clone(), policy.clone());
            let (deliveries, next_visible) = self
                .write_if_changed(move |txn| {
                    txn.require_tenant(&tenant)?;
                    let mut tables = JobTables::open(txn)?;
                    let (deliveries, wrote) = tables.claim(&tenant, &function, &policy, max, now)?;
                    let next =
                        if deliveries.is_empty() { tables.next_visible(&tenant, &function)? } else { None };
                    Ok(((deliveries, next), wrote))
                })
                .await?;
            let checked = Instant::now();
            if !deliveries.is_empty() || max == 0 || checked >= deadline {
                return Ok(deliveries);
            }
            let wake = next_visible
                .map_or(deadline, |at| later(checked, Duration::from_millis(at.saturating_sub(now))))
                .min(deadline);
            tokio::select! {
                () = &mut changed => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn in_progress(&self, delivery: &Delivery) -> Result<(), StateError> {
        let lease = lease_of(delivery)?;
        let now = self.clock.now_ms();
        self.write(move |txn| {
            txn.require_tenant(&lease.tenant)?;
            JobTables::open(txn)?.extend(&lease, now)
        })
        .await
    }

    async fn finish(
        &self,
        delivery: &Delivery,
        policy: &JobPolicy,
        outcome: Outcome,
    ) -> Result<JobStatus, StateError> {
        let lease = lease_of(delivery)?;
        let now = self.clock.now_ms();
        let policy = policy.clone();
        let status = self
            .write(move |txn| {
                txn.require_tenant(&lease.tenant)?;
                JobTables::open(txn)?.settle(&lease, &policy, outcome, now)
            })
            .await?;
        if status == JobStatus::Failed {
            // The retry may be visible sooner than what a waiting fetch sleeps for.
            self.jobs_changed.notify_waiters();
        }
        Ok(status)
    }

    async fn release(&self, delivery: &Delivery) -> Result<(), StateError> {
        let lease = lease_of(delivery)?;
        let now = self.clock.now_ms();
        let error = crate::state::handed_back(delivery.attempt);
        self.write(move |txn| {
            txn.require_tenant(&lease.tenant)?;
            JobTables::open(txn)?.release(&lease, error, now)
        })
        .await?;
        self.jobs_changed.notify_waiters();
        Ok(())
    }

    async fn redrive(&self, tenant: &Name, id: &str) -> Result<(), StateError> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        let now = self.clock.now_ms();
        self.write(move |txn| {
            txn.require_tenant(&tenant)?;
            JobTables::open(txn)?.redrive(&tenant, &id, now)
        })
        .await?;
        self.jobs_changed.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{backend, name, provision};
    use super::*;
    use crate::state::DeliveryHandle;
    use bytes::Bytes;
    use std::sync::Arc;

    fn new_job(tenant: &Name) -> NewJob {
        NewJob {
            tenant: tenant.clone(),
            function: name("work"),
            payload: Bytes::from_static(b"{}"),
            idempotency_key: None,
            traceparent: None,
        }
    }

    fn policy(max_deliver: u32) -> JobPolicy {
        JobPolicy { max_deliver, backoff: vec![], ack_wait: Duration::from_secs(30) }
    }

    #[test]
    fn idempotent_ids_are_deterministic_and_tenant_scoped() {
        let (a, b) = (name("a"), name("b"));
        assert_eq!(job_id(&a, Some("k")), job_id(&a, Some("k")));
        assert_ne!(job_id(&a, Some("k")), job_id(&b, Some("k")));
        assert_ne!(job_id(&a, Some("k")), job_id(&a, Some("k2")));
        assert_ne!(job_id(&a, None), job_id(&a, None));
        assert_eq!(job_id(&a, None).len(), 32);
        assert_eq!(job_id(&a, Some("k")).len(), 32);
    }

    #[tokio::test]
    async fn a_lease_that_expires_on_the_last_attempt_dead_letters_the_job() {
        let (_dir, backend) = backend();
        let t = provision(&backend, "acme", None).await;
        let id = backend.enqueue(new_job(&t)).await.unwrap();
        let once = policy(1);
        assert_eq!(backend.fetch(&t, &name("work"), &once, 1, Duration::ZERO).await.unwrap().len(), 1);
        // The worker dies; move the clock past its lease instead of waiting.
        backend.clock.observe(crate::state::now_ms() + 60_000);
        assert!(backend.fetch(&t, &name("work"), &once, 1, Duration::ZERO).await.unwrap().is_empty());
        let record = backend.job(&t, &id).await.unwrap().unwrap();
        assert_eq!((record.status, record.attempts), (JobStatus::Dead, 1));
        assert!(record.error.unwrap().contains("ack wait"));
    }

    #[tokio::test]
    async fn a_stale_or_foreign_delivery_is_refused() {
        let (_dir, backend) = backend();
        let t = provision(&backend, "acme", None).await;
        backend.enqueue(new_job(&t)).await.unwrap();
        let retry = policy(3);
        let first = backend.fetch(&t, &name("work"), &retry, 1, Duration::ZERO).await.unwrap().remove(0);
        backend.clock.observe(crate::state::now_ms() + 60_000);
        let second = backend.fetch(&t, &name("work"), &retry, 1, Duration::ZERO).await.unwrap().remove(0);
        assert_eq!(second.attempt, 2);

        let done = Outcome::Succeeded { result: serde_json::json!({}) };
        let err = backend.finish(&first, &retry, done.clone()).await.unwrap_err();
        assert!(matches!(&err, StateError::InvalidArgument(m) if m.contains("no longer current")), "{err:?}");
        assert!(backend.in_progress(&first).await.is_err());

        let foreign = Delivery { handle: DeliveryHandle(Arc::new(7_u32)), ..second.clone() };
        let err = backend.finish(&foreign, &retry, done.clone()).await.unwrap_err();
        assert!(matches!(&err, StateError::InvalidArgument(m) if m.contains("embedded backend")), "{err:?}");

        assert_eq!(backend.finish(&second, &retry, done).await.unwrap(), JobStatus::Succeeded);
    }

    #[tokio::test]
    async fn endless_waits_and_leases_do_not_overflow() {
        let (_dir, backend) = backend();
        let t = provision(&backend, "acme", None).await;
        backend.enqueue(new_job(&t)).await.unwrap();
        let forever = JobPolicy { max_deliver: 1, backoff: vec![Duration::MAX], ack_wait: Duration::MAX };
        let delivery = backend.fetch(&t, &name("work"), &forever, 1, Duration::MAX).await.unwrap().remove(0);
        backend.in_progress(&delivery).await.unwrap();
        // The only job is leased until the end of time: a short fetch sleeps and returns nothing.
        let none = backend.fetch(&t, &name("work"), &forever, 1, Duration::from_millis(20)).await.unwrap();
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn bad_policies_are_rejected() {
        let (_dir, backend) = backend();
        let t = provision(&backend, "acme", None).await;
        for bad in [policy(0), JobPolicy { ack_wait: Duration::ZERO, ..policy(1) }] {
            let err = backend.fetch(&t, &name("work"), &bad, 1, Duration::ZERO).await.unwrap_err();
            assert!(matches!(err, StateError::InvalidArgument(_)), "{err:?}");
        }
    }

    #[tokio::test]
    async fn a_succeeded_job_drops_its_payload_and_a_dead_one_keeps_it() {
        let (_dir, backend) = backend();
        let t = provision(&backend, "acme", None).await;
        let once = policy(1);
        for outcome in
            [Outcome::Succeeded { result: serde_json::json!(1) }, Outcome::Failed { error: "no".into() }]
        {
            let id = backend.enqueue(new_job(&t)).await.unwrap();
            let delivery =
                backend.fetch(&t, &name("work"), &once, 1, Duration::ZERO).await.unwrap().remove(0);
            let status = backend.finish(&delivery, &once, outcome).await.unwrap();
            let txn = backend.db.begin_read().unwrap();
            let payloads = txn.open_table(super::super::tables::JOB_PAYLOADS).unwrap();
            let kept = payloads.get((t.as_str(), id.as_str())).unwrap().is_some();
            assert_eq!(kept, status == JobStatus::Dead, "{status:?}");
        }
    }
}
