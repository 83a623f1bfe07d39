//! The one path of an execution, whatever triggered it (an HTTP request, an MCP tool call, a job):
//! admission through the function's and its tenant's gates ([`Invoker::admit`]), the envelope
//! handed to the guest, the run in a fresh sandbox, the classification of how it ended, its
//! receipt (`audit`), its metrics, and the outcome ([`Invoked`]). Triggers translate their input
//! into an [`Invocation`] and the outcome into their own answer; this module knows nothing of
//! sockets, HTTP responses, MCP or job records.

mod error;

pub use error::{InvokeError, LimitScope};

use crate::abi::{GuestRequest, GuestResponse};
use crate::audit::{End, Execution, RecordError, Recorder, Trigger as ReceiptTrigger, Workload};
use crate::failure::PublicError;
use crate::gate::Gate;
use crate::metrics::Metrics;
use crate::registry::Deployed;
use crate::runtime::{CallOutput, Ran, Runtime};
use crate::state::Reachability;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;

/// Pause before asking a full gate again, for an invocation that waits for room.
const ADMISSION_RETRY: Duration = Duration::from_millis(50);

/// What runs executions: the runtime, where receipts go, the metrics, and whether the state
/// backend is reachable (a call that waits for its receipt is refused while it is not).
pub struct Invoker {
    runtime: Arc<Runtime>,
    recorder: Arc<Recorder>,
    metrics: Arc<Metrics>,
    reachability: Arc<dyn Reachability>,
}

/// What triggered an execution; it decides how the execution waits for room and what its
/// receipt holds back.
#[derive(Clone, Debug)]
pub enum Trigger {
    /// An HTTP request, whose client waits for the answer.
    Http,
    /// An MCP tool call, whose client waits for the result.
    Mcp,
    /// An attempt of a queued job (its public id, its attempt number, from 1).
    Job { id: String, attempt: u32 },
}

/// How an invocation waits for a place under its gates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A client's request (a call, or the request that queues a job): it takes a token of the
    /// function's and the tenant's rate limits or is refused (429 `rate_limited`), then waits at
    /// most the function's timeout in each queue, then is refused (429 `over_capacity`).
    Bounded,
    /// As long as it takes: a queued job waits for room, it is never failed for lack of it. Its
    /// attempts take no token: the request that queued it took one.
    UntilRoom,
}

impl Trigger {
    pub fn admission(&self) -> Admission {
        match self {
            Trigger::Http | Trigger::Mcp => Admission::Bounded,
            Trigger::Job { .. } => Admission::UntilRoom,
        }
    }

    /// Whether the answer waits for the receipt: a client's call is refused (or answered 503)
    /// when its receipt cannot be recorded; a job runs, and a receipt that fails is logged (its
    /// outcome is recorded after the receipt is queued, and delivered again if that fails).
    fn answer_waits_for_receipt(&self) -> bool {
        !matches!(self, Trigger::Job { .. })
    }

    fn receipt_trigger(&self) -> ReceiptTrigger {
        match self {
            Trigger::Http => ReceiptTrigger::Http,
            Trigger::Mcp => ReceiptTrigger::Mcp,
            Trigger::Job { .. } => ReceiptTrigger::Job,
        }
    }
}

/// One execution to run: a function revision, its envelope, and what triggered it.
pub struct Invocation<'a> {
    pub function: &'a Deployed,
    pub envelope: &'a GuestRequest,
    pub trigger: Trigger,
}

/// Places under a function's and its tenant's concurrency limits, held while a call runs.
pub struct Permit {
    _function: OwnedSemaphorePermit,
    _tenant: OwnedSemaphorePermit,
}

/// An execution that was tried: how it ended, and the id of its receipt (`None` when receipts
/// are off, or recording failed, which is logged).
pub struct Invoked {
    pub outcome: Result<Answered, InvokeError>,
    pub receipt: Option<String>,
}

/// A guest's valid response, with when its call started and ended.
pub struct Answered {
    pub guest: GuestResponse,
    /// The response envelope as the guest wrote it.
    pub envelope: Bytes,
    pub started: Instant,
    pub ended: Instant,
}

/// Why a call is refused before it runs while its receipt could not be recorded.
const NO_RECEIPTS: &str = "receipts cannot be recorded now (the state backend is unavailable), and this \
    node answers a call only once its receipt is recorded";

impl Invoker {
    pub fn new(
        runtime: Arc<Runtime>,
        recorder: Arc<Recorder>,
        metrics: Arc<Metrics>,
        reachability: Arc<dyn Reachability>,
    ) -> Self {
        Self { runtime, recorder, metrics, reachability }
    }

    /// Waits for a place under `function`'s and its tenant's concurrency limits, as `admission`
    /// says; a client's request first takes a token of their rate limits.
    pub async fn admit(&self, function: &Deployed, admission: Admission) -> Result<Permit, InvokeError> {
        if admission == Admission::Bounded {
            self.take_tokens(function)?;
        }
        let queued = Instant::now();
        let wait = function.spec.limits.timeout;
        let function_permit = pass(&function.gate, wait, admission).await?;
        let tenant_permit = pass(&function.tenant_gate, wait, admission).await?;
        self.metrics.admitted(&function.id, queued.elapsed());
        Ok(Permit { _function: function_permit, _tenant: tenant_permit })
    }

    /// Takes a token of the function's rate limit, then of its tenant's: a call the function's
    /// limit refuses takes none of the tenant's, so it costs the tenant's other functions nothing.
    fn take_tokens(&self, function: &Deployed) -> Result<(), InvokeError> {
        let gates = [(&function.gate, LimitScope::Function), (&function.tenant_gate, LimitScope::Tenant)];
        for (gate, scope) in gates {
            if let Err(limited) = gate.take_token() {
                self.metrics.rate_limited(&function.id, scope.as_str());
                return Err(InvokeError::RateLimited { scope, limited });
            }
        }
        Ok(())
    }

    /// Admits, then runs `invocation` ([`Invoker::admit`], [`Invoker::run`]).
    pub async fn invoke(&self, invocation: Invocation<'_>) -> Invoked {
        match self.admit(invocation.function, invocation.trigger.admission()).await {
            Ok(permit) => self.run(&permit, invocation).await,
            Err(refused) => Invoked { outcome: Err(refused), receipt: None },
        }
    }

    /// Runs one admitted call and records its receipt, failed calls included. A client's call
    /// whose receipt could not be recorded is refused before it runs (503 `unavailable`); one
    /// whose receipt (`durability: sync`) is not appended in time answers 503 after it ran.
    pub async fn run(&self, _permit: &Permit, invocation: Invocation<'_>) -> Invoked {
        let Invocation { function, envelope, trigger } = invocation;
        let waits = trigger.answer_waits_for_receipt();
        if waits && self.refuses_calls(function.id.tenant.as_str()) {
            return Invoked { outcome: Err(InvokeError::Unavailable(NO_RECEIPTS)), receipt: None };
        }
        let stdin = envelope.to_json();
        // What the receipt says, gathered only when receipts are recorded.
        let execution = self.recorder.is_on().then(|| {
            let execution =
                Execution::start(workload(function), trigger.receipt_trigger(), &stdin, &envelope.trace_id);
            match &trigger {
                Trigger::Job { id, attempt } => execution.job(id.clone(), *attempt),
                _ => execution,
            }
        });
        let Ran { result, cpu } = function.call(&self.runtime, stdin).await;
        self.metrics.guest_cpu(&function.id, cpu);
        tracing::Span::current().record("gojinn.cpu_us", u64::try_from(cpu.as_micros()).unwrap_or(u64::MAX));
        let (outcome, draft) = match result {
            Ok(CallOutput { stdout, started, host_calls, .. }) => {
                let ended = Instant::now();
                match GuestResponse::parse(&stdout) {
                    Ok(guest) => {
                        let status = guest.status.as_u16();
                        let draft =
                            execution.map(|e| e.finish(End::answered(status, &stdout, &host_calls), cpu));
                        (Ok(Answered { guest, envelope: stdout, started, ended }), draft)
                    }
                    Err(invalid) => {
                        let error = InvokeError::InvalidResponse(invalid);
                        let draft =
                            execution.map(|e| e.finish(failed_end(&error, &stdout, &host_calls), cpu));
                        (Err(error), draft)
                    }
                }
            }
            Err(error) => {
                let error = InvokeError::Call(error);
                let draft = execution.map(|e| e.finish(failed_end(&error, &[], &BTreeMap::new()), cpu));
                (Err(error), draft)
            }
        };
        let recorded = match draft {
            Some(draft) => self.recorder.record(draft).await,
            None => Ok(None),
        };
        if !waits {
            let receipt = match recorded {
                Ok(receipt) => receipt,
                Err(error) => {
                    tracing::error!(function = %function.id, ?trigger, "a job attempt's receipt was not recorded: {error}");
                    None
                }
            };
            return Invoked { outcome, receipt };
        }
        match recorded {
            Ok(receipt) => Invoked { outcome, receipt },
            Err(RecordError::NotYetAppended { id, reason }) => {
                tracing::warn!(function = %function.id, receipt = id, "a call's receipt is not appended yet: {reason}");
                Invoked { outcome: Err(InvokeError::ReceiptPending(id.clone())), receipt: Some(id) }
            }
            Err(error) => {
                tracing::error!(function = %function.id, "a call's receipt was not recorded: {error}");
                // A response that waits for its receipt is not sent without it.
                let outcome = match self.recorder.waits_for_append() {
                    true => Err(InvokeError::Unavailable(NO_RECEIPTS)),
                    false => outcome,
                };
                Invoked { outcome, receipt: None }
            }
        }
    }

    /// True while a client's call to `tenant` would be refused because its receipt cannot be
    /// recorded.
    fn refuses_calls(&self, tenant: &str) -> bool {
        self.recorder.refuses_executions(tenant)
            || (self.recorder.waits_for_append() && self.reachability.unreachable().is_some())
    }
}

/// A permit of `gate`, waiting as `admission` says.
async fn pass(
    gate: &Gate,
    wait: Duration,
    admission: Admission,
) -> Result<OwnedSemaphorePermit, InvokeError> {
    loop {
        match (gate.admit(wait).await, admission) {
            (Ok(permit), _) => return Ok(permit),
            (Err(rejected), Admission::Bounded) => return Err(InvokeError::OverCapacity(rejected)),
            (Err(_), Admission::UntilRoom) => tokio::time::sleep(ADMISSION_RETRY).await,
        }
    }
}

/// The revision `function` runs, as its receipts name it.
fn workload(function: &Deployed) -> Workload<'_> {
    let spec = &function.spec;
    Workload {
        tenant: function.id.tenant.as_str(),
        function: function.id.function.as_str(),
        module_sha256: &spec.module.sha256,
        revision: &spec.revision,
        memory_limit: spec.limits.memory,
        timeout: spec.limits.timeout,
        cpu_limit: spec.limits.cpu,
    }
}

/// How a call that failed with `error` ends, for its receipt.
fn failed_end<'a>(
    error: &InvokeError,
    output: &'a [u8],
    host_calls: &BTreeMap<&'static str, u32>,
) -> End<'a> {
    End::failed(error.code(), error.status().as_u16(), output, host_calls)
}
