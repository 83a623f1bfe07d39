//! Durable jobs: messages in the tenant's work-queue stream (`gojinn.jobs.<tenant>.<function>`),
//! one durable pull consumer per function with explicit acks, and a status record per job in the
//! job-state bucket (see `job_record`).
//!
//! The consumer's own `max_deliver` is unlimited: attempts are counted in the job's record, one
//! more each time a delivery is recorded as running, so a delivery that could not be recorded
//! (the job-state bucket unavailable while the jobs stream delivers) is no attempt, and a job
//! whose last attempt crashed is still dead-lettered when it comes back.
//! A dead job's payload lives only in the dead-letter stream (the record keeps its sequence);
//! `redrive` republishes it from there as a new generation and deletes the dead letter.

use super::job_record::{self, JobHeaders, StoredJob, Verdict, backoff, job_id, judge, modify, next_attempt};
use super::scan::Scan;
use super::{NatsBackend, NatsResult};
use crate::spec::Name;
use crate::state::{
    Delivery, DeliveryHandle, JobPolicy, JobRecord, JobStatus, Jobs, NewJob, Outcome, StateError, names,
    validate_key,
};
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::kv::{CreateErrorKind, Store};
use async_nats::jetstream::{AckKind, Message};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// Room a job's message needs besides its payload (subject, job headers, traceparent) and its
/// record besides its result (id, names, status, error, times), under the server's
/// `max_payload`.
const JOB_OVERHEAD: usize = 8 << 10;

/// What [`DeliveryHandle`] holds for this backend.
struct Handle {
    message: Message,
    generation: u32,
}

/// The durable consumer of a function's jobs.
pub(super) fn consumer_config(tenant: &Name, function: &Name, ack_wait: Duration) -> pull::Config {
    pull::Config {
        durable_name: Some(format!("fn-{function}")),
        filter_subject: names::job_subject(tenant, function),
        ack_policy: AckPolicy::Explicit,
        ack_wait,
        max_deliver: -1,
        ..pull::Config::default()
    }
}

#[async_trait]
impl Jobs for NatsBackend {
    /// The connected server's `max_payload` (its latest INFO), less [`JOB_OVERHEAD`].
    fn max_job_bytes(&self) -> usize {
        self.client.server_info().max_payload.saturating_sub(JOB_OVERHEAD)
    }

    async fn enqueue(&self, job: NewJob) -> Result<String, StateError> {
        job.check_size(self.max_job_bytes())?;
        let tenant = job.tenant.clone();
        self.run(&tenant, async {
            let store = &self.buckets(&tenant).await?.jobs;
            let id = job_id(&tenant, job.idempotency_key.as_deref());
            let mut stored = StoredJob::queued(&id, &job);
            match store.create(&id, serde_json::to_vec(&stored)?.into()).await {
                Ok(_) => {}
                Err(err) if err.kind() == CreateErrorKind::AlreadyExists => {
                    // The same idempotency key: the same job. If it never left the queue, its
                    // message may have been lost to a crash between the record and the publish;
                    // publish it again (the stream drops it as a duplicate if it was not lost).
                    match job_record::load(store, &id).await? {
                        Some(existing) if existing.is_unstarted() => stored = existing,
                        _ => return Ok(id),
                    }
                }
                Err(err) => return Err(err.into()),
            }
            let (function, generation) = (&stored.record.function, stored.generation);
            let headers = JobHeaders { id: id.clone(), generation, traceparent: job.traceparent };
            let published = self.publish_job(&tenant, function, &headers, job.payload).await;
            if published.is_err() && job.idempotency_key.is_none() {
                // The caller learns the job was not queued and can only retry under a new id: drop
                // the record so no phantom stays queued. Should the message have been stored after
                // all, its delivery finds no record and is dropped (see `accept`). A keyed job keeps
                // its record: a retry with the same key publishes it again.
                if let Err(err) = store.delete(&id).await {
                    tracing::warn!(%tenant, job = id, "record of a job that failed to queue stays: {err}");
                }
            }
            published.map(|()| id)
        })
        .await
    }

    async fn job(&self, tenant: &Name, id: &str) -> Result<Option<JobRecord>, StateError> {
        if validate_key(id).is_err() {
            return Ok(None);
        }
        self.run(tenant, async {
            let store = &self.buckets(tenant).await?.jobs;
            Ok(job_record::load(store, id).await?.map(|job| job.record))
        })
        .await
    }

    async fn list(
        &self,
        tenant: &Name,
        status: Option<JobStatus>,
        limit: usize,
    ) -> Result<Vec<JobRecord>, StateError> {
        // A whole bucket's scan: an admin read, not a call.
        self.run_unbounded(tenant, async {
            let store = &self.buckets(tenant).await?.jobs;
            let scanned = Scan::latest(format!("{}>", store.prefix), false).run(&store.stream).await?;
            let mut jobs = Vec::new();
            for message in scanned.into_iter().filter(|m| !super::kv::is_deletion(m.headers.as_ref())) {
                let job: StoredJob = serde_json::from_slice(&message.payload)?;
                if status.is_none_or(|s| s == job.record.status) {
                    jobs.push(job);
                }
            }
            jobs.sort_unstable_by(|a, b| (b.created_ns, &b.record.id).cmp(&(a.created_ns, &a.record.id)));
            Ok(jobs.into_iter().take(limit).map(|job| job.record).collect())
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
        if max == 0 {
            return Ok(Vec::new());
        }
        self.run_within(tenant, wait + self.timeout, async {
            let store = &self.buckets(tenant).await?.jobs;
            let consumer = self.consumer(tenant, function, policy.ack_wait).await?;
            // After a failed pull the consumer is made anew: its stream may have been re-provisioned.
            let pulled = pull_batch(&consumer.consumer, max, wait).await;
            let messages = pulled.inspect_err(|_| self.forget_consumer(tenant, function))?;
            let mut deliveries = Vec::with_capacity(messages.len());
            for (index, message) in messages.iter().enumerate() {
                match self.accept(tenant, function, store, policy, message.clone()).await {
                    Ok(delivery) => deliveries.extend(delivery),
                    Err(err) => {
                        // Hand the rest back now rather than after their ack wait.
                        for message in &messages[index..] {
                            let _ = message.ack_with(AckKind::Nak(None)).await;
                        }
                        if deliveries.is_empty() {
                            return Err(err);
                        }
                        tracing::warn!(%tenant, %function, "returning part of a fetch: {err}");
                        break;
                    }
                }
            }
            Ok(deliveries)
        })
        .await
    }

    async fn in_progress(&self, delivery: &Delivery) -> Result<(), StateError> {
        let handle = handle(delivery)?;
        self.run(&delivery.tenant, async { handle.message.ack_with(AckKind::Progress).await }).await
    }

    async fn finish(
        &self,
        delivery: &Delivery,
        policy: &JobPolicy,
        outcome: Outcome,
    ) -> Result<JobStatus, StateError> {
        let handle = handle(delivery)?;
        self.run(&delivery.tenant, async {
            let store = &self.buckets(&delivery.tenant).await?.jobs;
            let (id, generation) = (&delivery.job_id, handle.generation);
            let (status, result, error) = match outcome {
                Outcome::Succeeded { result } => (JobStatus::Succeeded, Some(result), None),
                Outcome::Truncated { result, error } => (JobStatus::Succeeded, Some(result), Some(error)),
                Outcome::Failed { error } if delivery.attempt < policy.max_deliver => {
                    (JobStatus::Failed, None, Some(error))
                }
                Outcome::Failed { error } => {
                    if !job_record::load(store, id).await?.is_some_and(|job| job.is_open(generation)) {
                        return self.settled_elsewhere(store, &handle.message, id).await;
                    }
                    self.dead_letter(store, &handle.message, &delivery.tenant, &delivery.function, error)
                        .await?;
                    return Ok(JobStatus::Dead);
                }
            };
            let mut open = false;
            modify(store, id, |job| {
                open = job.is_open(generation);
                if open {
                    (job.record.status, job.record.result, job.record.error) =
                        (status, result.clone(), error.clone());
                }
                open
            })
            .await?;
            if !open {
                return self.settled_elsewhere(store, &handle.message, id).await;
            }
            let ack = match status {
                JobStatus::Failed => {
                    AckKind::Nak(Some(backoff(policy, delivery.attempt)).filter(|d| !d.is_zero()))
                }
                _ => AckKind::Ack,
            };
            handle.message.ack_with(ack).await?;
            Ok(status)
        })
        .await
    }

    async fn release(&self, delivery: &Delivery) -> Result<(), StateError> {
        let handle = handle(delivery)?;
        self.run(&delivery.tenant, async {
            let store = &self.buckets(&delivery.tenant).await?.jobs;
            let error = crate::state::handed_back(delivery.attempt);
            let mut open = false;
            modify(store, &delivery.job_id, |job| {
                open = job.is_open(handle.generation);
                if open {
                    (job.record.status, job.record.error) = (JobStatus::Queued, Some(error.clone()));
                }
                open
            })
            .await?;
            // A job another worker finished meanwhile is done: end this delivery.
            let ack = if open { AckKind::Nak(None) } else { AckKind::Ack };
            handle.message.ack_with(ack).await?;
            Ok(())
        })
        .await
    }

    async fn redrive(&self, tenant: &Name, id: &str) -> Result<(), StateError> {
        validate_key(id)?;
        self.run(tenant, async {
            let store = &self.buckets(tenant).await?.jobs;
            let Some(job) = job_record::load(store, id).await? else {
                return Err(StateError::InvalidArgument(format!("no job {id}")).into());
            };
            let (JobStatus::Dead, Some(sequence)) = (job.record.status, job.dead_letter) else {
                return Err(StateError::InvalidArgument(format!("job {id} is not dead")).into());
            };
            let dead_letters = self.js.get_stream_no_info(names::dead_letter_stream(tenant)).await?;
            let letter = dead_letters.get_raw_message(sequence).await?;
            let generation = job.generation + 1;
            let traceparent = JobHeaders::parse(Some(&letter.headers)).and_then(|h| h.traceparent);
            let headers = JobHeaders { id: id.to_owned(), generation, traceparent };
            // Publish first: if the record update below is lost, the worker adopts the newer
            // generation anyway (see `judge`).
            self.publish_job(tenant, &job.record.function, &headers, letter.payload).await?;
            modify(store, id, |job| {
                let redrive = job.generation < generation;
                if redrive {
                    (job.record.status, job.record.attempts, job.record.result) =
                        (JobStatus::Queued, 0, None);
                    (job.generation, job.dead_letter) = (generation, None);
                }
                redrive
            })
            .await?;
            if let Err(err) = dead_letters.delete_message(sequence).await {
                tracing::warn!(%tenant, job = id, "redriven job's dead letter stays: {err}");
            }
            Ok(())
        })
        .await
    }
}

impl NatsBackend {
    async fn publish_job(
        &self,
        tenant: &Name,
        function: &Name,
        headers: &JobHeaders,
        payload: Bytes,
    ) -> NatsResult<()> {
        let subject = names::job_subject(tenant, function);
        self.js.publish_with_headers(subject, headers.to_map(), payload).await?.await?;
        Ok(())
    }

    /// Decides what a pulled message is: a delivery for the worker, a stale duplicate (acked),
    /// or a job whose last attempt never finished (dead-lettered).
    async fn accept(
        &self,
        tenant: &Name,
        function: &Name,
        store: &Store,
        policy: &JobPolicy,
        message: Message,
    ) -> NatsResult<Option<Delivery>> {
        let Some(headers) = JobHeaders::parse(message.headers.as_ref()) else {
            tracing::warn!(%tenant, %function, "dropping a job message without job headers");
            message.ack_with(AckKind::Term).await?;
            return Ok(None);
        };
        let (mut verdict, mut attempt) = (Verdict::Stale, 0);
        let job = modify(store, &headers.id, |job| {
            attempt = next_attempt(job, headers.generation);
            verdict = judge(job, headers.generation, attempt, policy);
            if verdict == Verdict::Run {
                (job.record.status, job.record.attempts) = (JobStatus::Running, attempt);
                job.generation = headers.generation;
            }
            verdict == Verdict::Run
        })
        .await?;
        match (job, verdict) {
            (Some(_), Verdict::Run) => {
                let handle = Handle { message, generation: headers.generation };
                Ok(Some(Delivery {
                    job_id: headers.id,
                    tenant: tenant.clone(),
                    function: function.clone(),
                    payload: handle.message.payload.clone(),
                    traceparent: headers.traceparent,
                    attempt,
                    handle: DeliveryHandle(Arc::new(handle)),
                }))
            }
            (Some(_), Verdict::Exhausted) => {
                let error =
                    format!("attempt {} never finished (worker lost or ack wait exceeded)", attempt - 1);
                self.dead_letter(store, &message, tenant, function, error).await?;
                Ok(None)
            }
            (None, _) => {
                tracing::warn!(%tenant, %function, job = headers.id, "dropping a job message with no record");
                message.ack_with(AckKind::Term).await?;
                Ok(None)
            }
            (Some(_), Verdict::Stale) => {
                message.ack().await?;
                Ok(None)
            }
        }
    }

    /// Acknowledges a delivery whose job another worker (it was redelivered to) has finished
    /// meanwhile: that outcome stands. Returns the job's recorded status.
    async fn settled_elsewhere(&self, store: &Store, message: &Message, id: &str) -> NatsResult<JobStatus> {
        message.ack().await?;
        Ok(job_record::load(store, id).await?.ok_or("the job's record vanished")?.record.status)
    }

    /// Moves a job to the dead-letter stream: publish the letter, mark the record dead with the
    /// letter's sequence, then end the delivery. A crash in between redelivers the message and
    /// repeats this; the letter's `Nats-Msg-Id` makes the repeat a duplicate.
    async fn dead_letter(
        &self,
        store: &Store,
        message: &Message,
        tenant: &Name,
        function: &Name,
        error: String,
    ) -> NatsResult<()> {
        let headers =
            JobHeaders::parse(message.headers.as_ref()).ok_or("a job message without job headers")?;
        let subject = names::dead_letter_subject(tenant, function);
        let letter =
            self.js.publish_with_headers(subject, headers.to_map(), message.payload.clone()).await?.await?;
        modify(store, &headers.id, |job| {
            let current = job.generation == headers.generation;
            if current {
                (job.record.status, job.record.error) = (JobStatus::Dead, Some(error.clone()));
                job.dead_letter = Some(letter.sequence);
            }
            current
        })
        .await?;
        message.ack_with(AckKind::Term).await?;
        Ok(())
    }
}

/// Pulls up to `max` messages, waiting up to `wait` for the first.
async fn pull_batch(consumer: &PullConsumer, max: usize, wait: Duration) -> NatsResult<Vec<Message>> {
    let mut fetch = consumer.fetch().max_messages(max);
    if wait >= Duration::from_millis(1) {
        fetch = fetch.expires(wait);
    }
    let mut batch = fetch.messages().await?;
    let mut messages = Vec::new();
    while let Some(message) = batch.next().await {
        messages.push(message?);
    }
    Ok(messages)
}

fn handle(delivery: &Delivery) -> Result<&Handle, StateError> {
    delivery
        .handle
        .0
        .downcast_ref::<Handle>()
        .ok_or_else(|| StateError::InvalidArgument("the delivery was not made by the NATS backend".into()))
}
