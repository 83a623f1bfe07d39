//! The guest executor: a thread pool of its own for running guests, apart from the threads that
//! serve sockets, so guests that burn CPU never delay accepting and answering other requests.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::task::JoinHandle;

pub(super) struct Executor {
    runtime: Option<tokio::runtime::Runtime>,
    threads: usize,
}

impl Executor {
    pub(super) fn new() -> std::io::Result<Self> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("gojinn-guest")
            // Look at newly spawned calls at every turn: a thread that runs a guest takes a turn
            // only when the guest yields (at each tick, or when the scheduler interrupts it), so
            // a call must not wait several turns behind it.
            .global_queue_interval(1)
            .enable_all()
            .build()?;
        Ok(Self { runtime: Some(runtime), threads: workers })
    }

    /// The threads that run guests.
    pub(super) fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `task` on the executor. Dropping the returned future aborts the task, which stops a
    /// guest at its next epoch tick.
    pub(super) fn spawn<F>(&self, task: F) -> AbortOnDrop<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        AbortOnDrop(self.runtime.as_ref().expect("executor is running").spawn(task))
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

pub(super) struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
