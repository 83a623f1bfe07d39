//! The job behaviours of the conformance suite (queues, leases, retries, dead letters) and the
//! restart test, with the helpers that enqueue and fetch.

use super::{PATIENCE, SLACK, bytes, name, tenant};
use gojinn::spec::Name;
use gojinn::state::{Delivery, JobPolicy, JobStatus, NewJob, Outcome, State};
use serde_json::json;
use std::future::Future;
use std::time::{Duration, Instant};

pub(super) fn new_job(tenant: &Name, function: &str, payload: &str) -> NewJob {
    NewJob {
        tenant: tenant.clone(),
        function: name(function),
        payload: bytes(payload),
        idempotency_key: None,
        traceparent: None,
    }
}

pub(super) fn keyed_job(tenant: &Name, key: &str) -> NewJob {
    NewJob { idempotency_key: Some(key.to_owned()), ..new_job(tenant, "work", "{}") }
}

fn policy(max_deliver: u32, backoff: &[u64], ack_wait_ms: u64) -> JobPolicy {
    JobPolicy {
        max_deliver,
        backoff: backoff.iter().copied().map(Duration::from_millis).collect(),
        ack_wait: Duration::from_millis(ack_wait_ms),
    }
}

/// A policy whose leases outlast any test.
pub(super) fn patient() -> JobPolicy {
    policy(5, &[], 60_000)
}

/// Fetches until `count` deliveries of `function` arrived; fails after [`PATIENCE`].
async fn fetch_n(
    state: &State,
    tenant: &Name,
    function: &str,
    policy: &JobPolicy,
    count: usize,
) -> Vec<Delivery> {
    let deadline = Instant::now() + PATIENCE;
    let mut deliveries = Vec::new();
    while deliveries.len() < count {
        let wait = deadline.saturating_duration_since(Instant::now());
        assert!(!wait.is_zero(), "only {} of {count} deliveries of {function} arrived", deliveries.len());
        let batch =
            state.jobs.fetch(tenant, &name(function), policy, count - deliveries.len(), wait).await.unwrap();
        deliveries.extend(batch);
    }
    deliveries
}

pub(super) async fn fetch_one(state: &State, tenant: &Name, function: &str, policy: &JobPolicy) -> Delivery {
    fetch_n(state, tenant, function, policy, 1).await.remove(0)
}

/// Asserts that a short fetch finds nothing of `function`.
pub(super) async fn fetch_none(state: &State, tenant: &Name, function: &str, policy: &JobPolicy) {
    let wait = Duration::from_millis(100);
    let got = state.jobs.fetch(tenant, &name(function), policy, 10, wait).await.unwrap();
    let ids: Vec<_> = got.iter().map(|d| (&d.job_id, d.attempt)).collect();
    assert!(got.is_empty(), "expected no delivery of {function}, got {ids:?}");
}

async fn status_of(state: &State, tenant: &Name, id: &str) -> (JobStatus, u32) {
    let record = state.jobs.job(tenant, id).await.unwrap().expect("job record");
    (record.status, record.attempts)
}

pub async fn job_runs_to_success(state: &State) {
    let t = tenant(state, "jobok").await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let job = NewJob { traceparent: Some(traceparent.into()), ..new_job(&t, "work", r#"{"n":1}"#) };
    let id = state.jobs.enqueue(job).await.unwrap();
    let queued = state.jobs.job(&t, &id).await.unwrap().expect("job record");
    assert_eq!((queued.status, queued.attempts, &queued.tenant), (JobStatus::Queued, 0, &t));
    assert_eq!((queued.function.as_str(), queued.result.as_ref()), ("work", None));
    assert!(queued.created_ms > 0);

    let delivery = fetch_one(state, &t, "work", &patient()).await;
    assert_eq!((delivery.job_id.as_str(), delivery.attempt), (id.as_str(), 1));
    assert_eq!((&delivery.tenant, delivery.function.as_str()), (&t, "work"));
    assert_eq!(delivery.payload, bytes(r#"{"n":1}"#));
    assert_eq!(delivery.traceparent.as_deref(), Some(traceparent));
    assert_eq!(status_of(state, &t, &id).await, (JobStatus::Running, 1));

    let outcome = Outcome::Succeeded { result: json!({"ok": true}) };
    assert_eq!(state.jobs.finish(&delivery, &patient(), outcome).await.unwrap(), JobStatus::Succeeded);
    let done = state.jobs.job(&t, &id).await.unwrap().expect("job record");
    assert_eq!((done.status, done.attempts), (JobStatus::Succeeded, 1));
    assert_eq!(done.result, Some(json!({"ok": true})));
    assert!(done.updated_ms >= done.created_ms);
    fetch_none(state, &t, "work", &patient()).await;
}

pub async fn job_idempotency_key_dedups(state: &State) {
    let t = tenant(state, "idem").await;
    let first = state.jobs.enqueue(keyed_job(&t, "order-1")).await.unwrap();
    assert_eq!(state.jobs.enqueue(keyed_job(&t, "order-1")).await.unwrap(), first, "same key, same job");
    let other = state.jobs.enqueue(keyed_job(&t, "order-2")).await.unwrap();
    let plain = state.jobs.enqueue(new_job(&t, "work", "{}")).await.unwrap();
    let plain2 = state.jobs.enqueue(new_job(&t, "work", "{}")).await.unwrap();
    assert_eq!(std::collections::HashSet::from([&first, &other, &plain, &plain2]).len(), 4);
    assert_eq!(state.jobs.list(&t, None, 100).await.unwrap().len(), 4);

    let mut delivered: Vec<String> =
        fetch_n(state, &t, "work", &patient(), 4).await.into_iter().map(|d| d.job_id).collect();
    delivered.sort();
    let mut expected = vec![first.clone(), other, plain, plain2];
    expected.sort();
    assert_eq!(delivered, expected, "each job delivered once");
    fetch_none(state, &t, "work", &patient()).await;
    assert_eq!(
        state.jobs.enqueue(keyed_job(&t, "order-1")).await.unwrap(),
        first,
        "still the same job later"
    );
    fetch_none(state, &t, "work", &patient()).await;
}

pub async fn job_redelivered_after_ack_wait(state: &State) {
    let t = tenant(state, "redeliver").await;
    let short = policy(5, &[], 300);
    let id = state.jobs.enqueue(new_job(&t, "work", "{}")).await.unwrap();
    let first = fetch_one(state, &t, "work", &short).await;
    let leased = Instant::now();
    let again = fetch_one(state, &t, "work", &short).await;
    assert_eq!((again.job_id.as_str(), first.attempt, again.attempt), (id.as_str(), 1, 2));
    assert!(leased.elapsed() + SLACK >= short.ack_wait, "redelivered after {:?}", leased.elapsed());
    assert_eq!(status_of(state, &t, &id).await, (JobStatus::Running, 2));
    let outcome = Outcome::Succeeded { result: json!(null) };
    assert_eq!(state.jobs.finish(&again, &short, outcome).await.unwrap(), JobStatus::Succeeded);
}

pub async fn job_released_is_delivered_again_at_once(state: &State) {
    let t = tenant(state, "release").await;
    let id = state.jobs.enqueue(new_job(&t, "work", "{}")).await.unwrap();
    let first = fetch_one(state, &t, "work", &patient()).await;
    state.jobs.release(&first).await.unwrap();
    let record = state.jobs.job(&t, &id).await.unwrap().unwrap();
    assert_eq!((record.status, record.attempts), (JobStatus::Queued, 1));
    assert!(record.error.unwrap().contains("handed back"), "the record says why it is queued again");
    // Long before the first lease's minute is up.
    let again = fetch_one(state, &t, "work", &patient()).await;
    assert_eq!((again.job_id.as_str(), again.attempt), (id.as_str(), 2));
    let outcome = Outcome::Succeeded { result: json!(2) };
    assert_eq!(state.jobs.finish(&again, &patient(), outcome).await.unwrap(), JobStatus::Succeeded);
    assert_eq!(status_of(state, &t, &id).await, (JobStatus::Succeeded, 2));
}

pub async fn job_in_progress_extends_lease(state: &State) {
    let t = tenant(state, "heartbeat").await;
    let lease = policy(5, &[], 1000);
    let id = state.jobs.enqueue(new_job(&t, "work", "{}")).await.unwrap();
    let delivery = fetch_one(state, &t, "work", &lease).await;
    // Work for well over two ack waits, reporting progress every 200ms.
    let until = Instant::now() + 2 * lease.ack_wait + Duration::from_millis(500);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        state.jobs.in_progress(&delivery).await.unwrap();
        fetch_none(state, &t, "work", &lease).await;
    }
    let outcome = Outcome::Succeeded { result: json!(1) };
    assert_eq!(state.jobs.finish(&delivery, &lease, outcome).await.unwrap(), JobStatus::Succeeded);
    assert_eq!(status_of(state, &t, &id).await, (JobStatus::Succeeded, 1));
}

pub async fn job_retried_after_backoff(state: &State) {
    let t = tenant(state, "backoff").await;
    let retry = policy(3, &[500], 60_000);
    let id = state.jobs.enqueue(new_job(&t, "work", "{}")).await.unwrap();
    let first = fetch_one(state, &t, "work", &retry).await;
    let failed = Instant::now();
    let outcome = Outcome::Failed { error: "boom".into() };
    assert_eq!(state.jobs.finish(&first, &retry, outcome).await.unwrap(), JobStatus::Failed);
    let record = state.jobs.job(&t, &id).await.unwrap().expect("job record");
    assert_eq!(
        (record.status, record.attempts, record.error.as_deref()),
        (JobStatus::Failed, 1, Some("boom"))
    );
    fetch_none(state, &t, "work", &retry).await;

    let second = fetch_one(state, &t, "work", &retry).await;
    assert_eq!((second.job_id.as_str(), second.attempt), (id.as_str(), 2));
    assert!(failed.elapsed() + SLACK >= retry.backoff[0], "retried after {:?}", failed.elapsed());
    let outcome = Outcome::Succeeded { result: json!(2) };
    assert_eq!(state.jobs.finish(&second, &retry, outcome).await.unwrap(), JobStatus::Succeeded);
}

/// Enqueues a job and fails it `max_deliver` times; returns its id.
async fn kill_job(state: &State, tenant: &Name, max_deliver: u32) -> String {
    let p = policy(max_deliver, &[], 60_000);
    let id = state.jobs.enqueue(new_job(tenant, "work", r#"{"doomed":true}"#)).await.unwrap();
    for attempt in 1..=max_deliver {
        let delivery = fetch_one(state, tenant, "work", &p).await;
        assert_eq!((delivery.job_id.as_str(), delivery.attempt), (id.as_str(), attempt));
        let expected = if attempt < max_deliver { JobStatus::Failed } else { JobStatus::Dead };
        let outcome = Outcome::Failed { error: format!("failure {attempt}") };
        assert_eq!(state.jobs.finish(&delivery, &p, outcome).await.unwrap(), expected);
    }
    id
}

pub async fn job_dead_after_max_deliver(state: &State) {
    let t = tenant(state, "dead").await;
    let id = kill_job(state, &t, 2).await;
    let record = state.jobs.job(&t, &id).await.unwrap().expect("job record");
    assert_eq!((record.status, record.attempts), (JobStatus::Dead, 2));
    assert_eq!(record.error.as_deref(), Some("failure 2"));
    let dead = state.jobs.list(&t, Some(JobStatus::Dead), 100).await.unwrap();
    assert_eq!(dead.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    assert!(state.jobs.list(&t, Some(JobStatus::Queued), 100).await.unwrap().is_empty());
    fetch_none(state, &t, "work", &patient()).await;
}

pub async fn job_redrive(state: &State) {
    let t = tenant(state, "redrive").await;
    let id = kill_job(state, &t, 1).await;
    state.jobs.redrive(&t, &id).await.unwrap();
    assert_eq!(status_of(state, &t, &id).await, (JobStatus::Queued, 0));
    assert!(state.jobs.list(&t, Some(JobStatus::Dead), 100).await.unwrap().is_empty());
    let delivery = fetch_one(state, &t, "work", &patient()).await;
    assert_eq!((delivery.job_id.as_str(), delivery.attempt), (id.as_str(), 1));
    assert_eq!(delivery.payload, bytes(r#"{"doomed":true}"#));
    let outcome = Outcome::Succeeded { result: json!("saved") };
    assert_eq!(state.jobs.finish(&delivery, &patient(), outcome).await.unwrap(), JobStatus::Succeeded);
    assert!(state.jobs.redrive(&t, &id).await.is_err(), "only a dead job can be redriven");
}

pub async fn job_list_newest_first(state: &State) {
    let t = tenant(state, "list").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(state.jobs.enqueue(new_job(&t, "work", &n.to_string())).await.unwrap());
    }
    let listed = |status, limit| {
        let t = t.clone();
        async move {
            let records = state.jobs.list(&t, status, limit).await.unwrap();
            records.into_iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(None, 100).await, [ids[2].as_str(), &ids[1], &ids[0]]);
    assert_eq!(listed(None, 2).await, [ids[2].as_str(), &ids[1]]);
    let delivery = fetch_one(state, &t, "work", &patient()).await;
    let outcome = Outcome::Succeeded { result: json!(null) };
    state.jobs.finish(&delivery, &patient(), outcome).await.unwrap();
    assert_eq!(listed(Some(JobStatus::Succeeded), 100).await, [delivery.job_id.as_str()]);
    let queued = listed(Some(JobStatus::Queued), 100).await;
    let mut expected: Vec<&String> = ids.iter().rev().filter(|id| **id != delivery.job_id).collect();
    expected.truncate(2);
    assert_eq!(queued.iter().collect::<Vec<_>>(), expected);
}

pub async fn fetch_ignores_other_functions(state: &State) {
    let t = tenant(state, "functions").await;
    let id = state.jobs.enqueue(new_job(&t, "resize", "{}")).await.unwrap();
    fetch_none(state, &t, "thumbnail", &patient()).await;
    assert_eq!(fetch_one(state, &t, "resize", &patient()).await.job_id, id);
}

pub async fn fetch_wakes_on_enqueue(state: &State) {
    let t = tenant(state, "wake").await;
    let waiting = {
        let (state, t) = (state.clone(), t.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let got = state.jobs.fetch(&t, &name("work"), &patient(), 1, PATIENCE).await.unwrap();
            (got, started.elapsed())
        })
    };
    // Let the fetch start waiting first; if it has not, the test still passes, it only proves less.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let id = state.jobs.enqueue(new_job(&t, "work", "{}")).await.unwrap();
    let (got, waited) = waiting.await.unwrap();
    assert_eq!(got.iter().map(|d| d.job_id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    assert!(waited < PATIENCE / 2, "the fetch returned after {waited:?}, not when the job arrived");
}

/// KV, jobs (finished and leased) and the audit log survive dropping the backend and opening it
/// again on the same storage; the job leased before the "crash" is delivered again after its lease.
pub async fn restart_durability<F, Fut>(open: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = State>,
{
    let lease = policy(5, &[], 500);
    let state = open().await;
    let t = tenant(&state, "durable").await;
    state.kv.put(&t, "k", bytes("v")).await.unwrap();
    state.audit.append(&t, bytes("r")).await.unwrap();
    let done = state.jobs.enqueue(new_job(&t, "work", "done")).await.unwrap();
    let delivery = fetch_one(&state, &t, "work", &lease).await;
    let outcome = Outcome::Succeeded { result: json!({"kept": true}) };
    state.jobs.finish(&delivery, &lease, outcome).await.unwrap();
    let leased = state.jobs.enqueue(new_job(&t, "work", "leased")).await.unwrap();
    assert_eq!(fetch_one(&state, &t, "work", &lease).await.job_id, leased);
    drop(state);

    let state = open().await;
    assert_eq!(state.kv.get(&t, "k").await.unwrap(), Some(bytes("v")));
    assert_eq!(state.audit.read(&t, 1, 100).await.unwrap(), [(1, bytes("r"))]);
    let record = state.jobs.job(&t, &done).await.unwrap().expect("the finished job's record");
    assert_eq!((record.status, record.result), (JobStatus::Succeeded, Some(json!({"kept": true}))));
    let again = fetch_one(&state, &t, "work", &lease).await;
    assert_eq!((again.job_id.as_str(), again.attempt), (leased.as_str(), 2));
    assert_eq!(again.payload, bytes("leased"));
    let outcome = Outcome::Succeeded { result: json!(null) };
    assert_eq!(state.jobs.finish(&again, &lease, outcome).await.unwrap(), JobStatus::Succeeded);
}
