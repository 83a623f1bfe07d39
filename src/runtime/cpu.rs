//! CPU time of a call: what the threads that ran it spent on it, read from the thread CPU clock
//! each time the call is polled, so time spent waiting (for a host call, for a permit, for the
//! executor) never counts. Also holds the call's CPU budget (`limits.cpu`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// CPU nanoseconds the calling thread has used so far.
pub(super) fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `now`, which is valid and ours alone.
    let failed = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0;
    if failed {
        // Linux always has this clock; counting nothing is the honest answer where it fails.
        return 0;
    }
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// The CPU time of one call, shared by the future that runs it and its epoch callback (which
/// runs inside that future's poll, on the same thread).
#[derive(Default)]
pub(super) struct CpuAccount {
    /// CPU nanoseconds of the polls that finished.
    used: AtomicU64,
    /// The thread CPU clock when the poll under way began.
    slice_start: AtomicU64,
    /// Set when the call ran past its CPU budget.
    exceeded: AtomicBool,
    /// Set when the poll under way yields at the end of a time slice (an epoch tick).
    slice_ended: AtomicBool,
}

impl CpuAccount {
    /// A poll begins on this thread; returns the thread CPU clock.
    pub(super) fn slice_begins(&self) -> u64 {
        let now = thread_cpu_ns();
        self.slice_start.store(now, Ordering::Relaxed);
        now
    }

    /// The poll that began at `start` ended on this thread; returns the CPU nanoseconds it used.
    pub(super) fn slice_ends(&self, start: u64) -> u64 {
        let spent = thread_cpu_ns().saturating_sub(start);
        self.used.fetch_add(spent, Ordering::Relaxed);
        spent
    }

    /// The poll under way yields because its time slice ended.
    pub(super) fn slice_ended(&self) {
        self.slice_ended.store(true, Ordering::Relaxed);
    }

    /// Whether the poll that just ended yielded at the end of its time slice; forgets it.
    pub(super) fn take_slice_end(&self) -> bool {
        self.slice_ended.swap(false, Ordering::Relaxed)
    }

    /// CPU time used so far, the poll under way included (call it from inside that poll).
    pub(super) fn used_within_slice(&self) -> u64 {
        let running = thread_cpu_ns().saturating_sub(self.slice_start.load(Ordering::Relaxed));
        self.used.load(Ordering::Relaxed) + running
    }

    /// CPU time of the finished polls.
    pub(super) fn used(&self) -> Duration {
        Duration::from_nanos(self.used_ns())
    }

    /// CPU nanoseconds of the finished polls.
    pub(super) fn used_ns(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether the call has used more than `budget`; remembers it when it has.
    pub(super) fn over(&self, used: u64, budget: Option<Duration>) -> bool {
        let over = budget.is_some_and(|budget| u128::from(used) > budget.as_nanos());
        if over {
            self.exceeded.store(true, Ordering::Relaxed);
        }
        over
    }

    /// Whether the call was stopped for running past its CPU budget.
    pub(super) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_cpu_clock_advances_with_work_and_not_with_sleep() {
        let start = thread_cpu_ns();
        std::thread::sleep(Duration::from_millis(30));
        let slept = thread_cpu_ns() - start;
        let start = thread_cpu_ns();
        let mut x = 0u64;
        while thread_cpu_ns() - start < 20_000_000 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(slept < 10_000_000, "sleeping 30 ms used {slept} ns of CPU");
    }

    #[test]
    fn a_call_is_over_its_budget_only_past_it() {
        let account = CpuAccount::default();
        assert!(!account.over(5_000_000, None));
        assert!(!account.over(5_000_000, Some(Duration::from_millis(5))));
        assert!(!account.exceeded());
        assert!(account.over(5_000_001, Some(Duration::from_millis(5))));
        assert!(account.exceeded());
    }
}
