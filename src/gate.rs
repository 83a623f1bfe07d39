//! Admission gates: a concurrency limit with a bounded wait queue, one per function and one per
//! tenant, which every invocation passes. A call runs at once while a
//! permit is free, waits in line while the queue has room, and is turned away (429) only when
//! the queue is full or its wait outlasts the deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct Gate {
    permits: Arc<Semaphore>,
    max_concurrency: u32,
    waiting: AtomicU32,
    max_queue: u32,
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
    pub fn new(max_concurrency: u32, max_queue: u32) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrency as usize)),
            max_concurrency,
            waiting: AtomicU32::new(0),
            max_queue,
        }
    }

    /// True when the gate was built for these limits (so it can be kept across a redeploy).
    pub fn has_limits(&self, max_concurrency: u32, max_queue: u32) -> bool {
        self.max_concurrency == max_concurrency && self.max_queue == max_queue
    }

    /// A permit to run, held until the call ends; waits at most `max_wait` in the queue.
    pub async fn admit(&self, max_wait: Duration) -> Result<OwnedSemaphorePermit, Rejected> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _place = QueuePlace(&self.waiting);
        if queued >= self.max_queue {
            return Err(Rejected::QueueFull);
        }
        match tokio::time::timeout(max_wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Rejected::QueueTimeout),
        }
    }

    /// Calls running now.
    pub fn in_flight(&self) -> u32 {
        self.max_concurrency - self.permits.available_permits() as u32
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

    #[tokio::test]
    async fn queues_up_to_its_bound_then_rejects() {
        let gate = Arc::new(Gate::new(1, 1));
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
        let gate = Gate::new(1, 4);
        let _running = gate.admit(Duration::ZERO).await.unwrap();
        assert_eq!(gate.admit(Duration::from_millis(10)).await.unwrap_err(), Rejected::QueueTimeout);
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
    }
}
