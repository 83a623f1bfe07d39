//! The delivery policy of a function's jobs, from its spec's `jobs` section and its timeout.
//!
//! - `maxDeliver`: attempts before the dead-letter queue; default 5, at least 1.
//! - `backoff`: waits between attempts, the last repeating; default `[1s, 10s, 60s]` (also when
//!   the list is empty).
//! - `ackWait`: how long a delivery may go without a heartbeat before it is handed to another
//!   worker. Default: twice the function's timeout plus 5s. A spec may set it shorter, for faster
//!   recovery after a node dies, but never below the timeout plus [`ACK_WAIT_MARGIN`]: the
//!   worker's heartbeats extend a delivery while its call runs, and the floor keeps a delivery
//!   alive for a whole call even if every heartbeat were lost.

use crate::spec::Function;
use crate::state::JobPolicy;
use std::time::Duration;

pub const DEFAULT_MAX_DELIVER: u32 = 5;
pub const DEFAULT_BACKOFF: [Duration; 3] =
    [Duration::from_secs(1), Duration::from_secs(10), Duration::from_secs(60)];
/// Room beyond the function's timeout for admission, the call's start and its result.
pub const ACK_WAIT_MARGIN: Duration = Duration::from_secs(1);
/// Added to twice the timeout for the default ack wait.
const DEFAULT_ACK_WAIT_SLACK: Duration = Duration::from_secs(5);

/// The policy the workers of `function` deliver its jobs with.
pub fn policy_for(function: &Function) -> JobPolicy {
    let jobs = function.jobs.clone().unwrap_or_default();
    let timeout = function.limits.timeout;
    let backoff: Vec<Duration> = jobs.backoff.iter().map(|span| span.0).collect();
    let ack_wait = jobs
        .ack_wait
        .map_or_else(|| timeout.saturating_mul(2).saturating_add(DEFAULT_ACK_WAIT_SLACK), |span| span.0);
    JobPolicy {
        max_deliver: jobs.max_deliver.unwrap_or(DEFAULT_MAX_DELIVER).max(1),
        backoff: if backoff.is_empty() { DEFAULT_BACKOFF.to_vec() } else { backoff },
        ack_wait: ack_wait.max(timeout.saturating_add(ACK_WAIT_MARGIN)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Jobs, Span};

    fn function(timeout: Duration, jobs: Option<Jobs>) -> Function {
        let yaml = "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: acme }\n---\n\
                    apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: { name: f, tenant: acme }\n\
                    spec: { module: { path: m.wasm } }\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.wasm"), wat::parse_str("(module)").unwrap()).unwrap();
        std::fs::write(dir.path().join("s.yaml"), yaml).unwrap();
        let report = crate::spec::load_dir(dir.path(), &crate::spec::Bounds::default());
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let mut function = report.state.functions.into_values().next().unwrap();
        function.limits.timeout = timeout;
        function.jobs = jobs;
        function
    }

    const fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn defaults_follow_the_timeout() {
        let policy = policy_for(&function(secs(2), None));
        assert_eq!(
            policy,
            JobPolicy { max_deliver: 5, backoff: DEFAULT_BACKOFF.to_vec(), ack_wait: secs(9) }
        );
    }

    #[test]
    fn the_spec_sets_each_field_and_the_ack_wait_keeps_a_floor() {
        let jobs = |ack_wait: u64| Jobs {
            max_deliver: Some(2),
            backoff: vec![Span(Duration::from_millis(100))],
            ack_wait: Some(Span(secs(ack_wait))),
            keep_headers: Vec::new(),
        };
        let policy = policy_for(&function(secs(2), Some(jobs(60))));
        assert_eq!(policy.max_deliver, 2);
        assert_eq!(policy.backoff, vec![Duration::from_millis(100)]);
        assert_eq!(policy.ack_wait, secs(60));
        assert_eq!(policy_for(&function(secs(2), Some(jobs(1)))).ack_wait, secs(3), "timeout + margin");
    }

    #[test]
    fn zero_deliveries_mean_one() {
        let jobs = Jobs { max_deliver: Some(0), ..Jobs::default() };
        assert_eq!(policy_for(&function(secs(1), Some(jobs))).max_deliver, 1);
    }
}
