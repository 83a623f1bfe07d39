//! What a receipt says of an execution, gathered where the execution runs: [`Execution::start`]
//! just before a function revision is called, [`Execution::finish`] once its outcome is known.

use super::receipt::{HostCalls, ReceiptDraft, Trigger};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The function revision an execution runs and its limits, as its receipt names them.
pub struct Workload<'a> {
    pub tenant: &'a str,
    pub function: &'a str,
    pub module_sha256: &'a str,
    pub revision: &'a str,
    /// Bytes of linear memory the call may use.
    pub memory_limit: u64,
    pub timeout: Duration,
    /// CPU time a call may use, if limited.
    pub cpu_limit: Option<Duration>,
}

/// An execution under way.
pub struct Execution {
    draft: ReceiptDraft,
    started: Instant,
}

/// How an execution ended.
pub struct End<'a> {
    /// `ok`, or the stable error code of the failure.
    status: &'a str,
    /// The status of the response: the guest's, or the one its failure maps to.
    http_status: u16,
    /// The guest's output (its response envelope); empty when it produced none.
    output: &'a [u8],
    host_calls: HostCalls,
}

impl<'a> End<'a> {
    /// The guest answered `http_status` with the response envelope `output`.
    pub fn answered(http_status: u16, output: &'a [u8], host_calls: &BTreeMap<&str, u32>) -> Self {
        Self::new("ok", http_status, output, host_calls)
    }

    /// The call failed with the stable error code `code`, answered with `http_status`; `output` is
    /// what the guest wrote, if anything.
    pub fn failed(
        code: &'a str,
        http_status: u16,
        output: &'a [u8],
        host_calls: &BTreeMap<&str, u32>,
    ) -> Self {
        Self::new(code, http_status, output, host_calls)
    }

    fn new(status: &'a str, http_status: u16, output: &'a [u8], host_calls: &BTreeMap<&str, u32>) -> Self {
        let host_calls = host_calls.iter().map(|(name, n)| ((*name).to_owned(), u64::from(*n))).collect();
        Self { status, http_status, output, host_calls }
    }
}

impl Execution {
    /// Starts the receipt of a call of `workload` with `input` (its request envelope).
    pub fn start(workload: Workload<'_>, trigger: Trigger, input: &[u8], trace_id: &str) -> Self {
        let draft = ReceiptDraft {
            tenant: workload.tenant.to_owned(),
            function: workload.function.to_owned(),
            module_sha256: workload.module_sha256.to_owned(),
            revision: workload.revision.to_owned(),
            trigger,
            started_ms: crate::state::now_ms(),
            ended_ms: 0,
            status: String::new(),
            http_status: 0,
            memory_limit: workload.memory_limit,
            timeout_ms: millis(workload.timeout),
            cpu_limit_ms: workload.cpu_limit.map(millis),
            wall_us: 0,
            cpu_us: 0,
            input_sha256: sha256_hex(input),
            output_sha256: String::new(),
            host_calls: HostCalls::new(),
            attempt: 1,
            job_id: None,
            trace_id: trace_id.to_owned(),
        };
        Self { draft, started: Instant::now() }
    }

    /// Marks the execution as attempt `attempt` of job `job_id`.
    pub fn job(mut self, job_id: String, attempt: u32) -> Self {
        self.draft.job_id = Some(job_id);
        self.draft.attempt = attempt;
        self
    }

    /// The draft of the finished execution's receipt; `cpu` is the CPU time its guest used.
    pub fn finish(self, end: End<'_>, cpu: Duration) -> ReceiptDraft {
        ReceiptDraft {
            ended_ms: crate::state::now_ms().max(self.draft.started_ms),
            status: end.status.to_owned(),
            http_status: end.http_status,
            wall_us: micros(self.started.elapsed()),
            cpu_us: micros(cpu),
            output_sha256: sha256_hex(end.output),
            host_calls: end.host_calls,
            ..self.draft
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
