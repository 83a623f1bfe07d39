//! Admission gates: a concurrency limit with a bounded wait queue, and an optional request rate
//! limit ([`rate`]), one gate per function and one per tenant, which every invocation passes. A
//! call runs at once while a permit is free, waits in line while the queue has room, and is
//! turned away (429) only when the queue is full or its wait outlasts the deadline. Gates live
//! in the deployed registry: one per function and tenant, replaced when its limits change.

pub mod rate;

use rate::{Limited, RateLimit};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct Gate {
    permits: Arc<Semaphore>,
    limits: Limits,
    waiting: AtomicU32,
    rate: Option<RateLimit>,
}

/// What a gate lets through: calls at once, calls waiting, and calls a second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_concurrency: u32,
    pub max_queue: u32,
    /// `None`: no rate limit.
    pub requests_per_second: Option<NonZeroU32>,
}

/// Why a call was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("too many requests are queued")]
    QueueFull,
    #[error("waited too long in the queue")]
    QueueTimeout,
}

impl Gate {
    pub fn new(limits: Limits) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.max_concurrency as usize)),
            limits,
            waiting: AtomicU32::new(0),
            rate: limits.requests_per_second.map(RateLimit::new),
        }
    }

    /// True when the gate was built for these limits (so it can be kept across a redeploy).
    pub fn has_limits(&self, limits: &Limits) -> bool {
        self.limits == *limits
    }

    /// Takes a token of the gate's rate limit for one request; always passes without one.
    pub fn take_token(&self) -> Result<(), Limited> {
        self.rate.as_ref().map_or(Ok(()), RateLimit::take)
    }

    /// A permit to run, held until the call ends; waits at most `max_wait` in the queue.
    pub async fn admit(&self, max_wait: Duration) -> Result<OwnedSemaphorePermit, Rejected> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _place = QueuePlace(&self.waiting);
        if queued >= self.limits.max_queue {
            return Err(Rejected::QueueFull);
        }
        match tokio::time::timeout(max_wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Rejected::QueueTimeout),
        }
    }

    /// Calls running now.
    pub fn in_flight(&self) -> u32 {
        self.limits.max_concurrency - self.permits.available_permits() as u32
    }
}

/// Leaves the queue when dropped, however the wait ends.
struct QueuePlace<'a>(&'a AtomicU32);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_concurrency: u32, max_queue: u32) -> Limits {
        Limits { max_concurrency, max_queue, requests_per_second: None }
    }

    #[tokio::test]
    async fn queues_up_to_its_bound_then_rejects() {
        let gate = Arc::new(Gate::new(limits(1, 1)));
        let running = gate.admit(Duration::from_secs(5)).await.unwrap();
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit(Duration::from_secs(5)).await.map(drop) }
        });
        while gate.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.admit(Duration::from_secs(5)).await.unwrap_err(), Rejected::QueueFull);
        drop(running);
        waiter.await.unwrap().expect("the queued call runs once a permit frees");
        assert_eq!(gate.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_queued_call_gives_up_at_its_deadline() {
        let gate = Gate::new(limits(1, 4));
        let _running = gate.admit(Duration::ZERO).await.unwrap();
        assert_eq!(gate.admit(Duration::from_millis(10)).await.unwrap_err(), Rejected::QueueTimeout);
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_gate_without_a_rate_limit_never_runs_out_of_tokens_and_one_with_it_does() {
        let open = Gate::new(limits(1, 1));
        assert!((0..10_000).all(|_| open.take_token().is_ok()));
        let limited = Gate::new(Limits { requests_per_second: NonZeroU32::new(3), ..limits(1, 1) });
        assert!((0..3).all(|_| limited.take_token().is_ok()), "a burst of the rate passes");
        // The exact count over time is rate.rs's to test, on a fake clock.
        assert!((0..1000).any(|_| limited.take_token().is_err()));
    }

    #[test]
    fn a_gate_is_kept_across_a_redeploy_only_for_the_same_limits() {
        let gate = Gate::new(limits(2, 3));
        assert!(gate.has_limits(&limits(2, 3)));
        assert!(!gate.has_limits(&Limits { requests_per_second: NonZeroU32::new(5), ..limits(2, 3) }));
        assert!(!gate.has_limits(&limits(2, 4)));
    }
}
