//! One call of a guest: a fresh Store with its memory cap, a wall-clock deadline enforced through
//! epoch yields, a run permit from the fair scheduler, a CPU budget checked at each epoch tick,
//! WASI stdio on in-memory pipes capped at the output limit, the CPU time the call took, and the
//! classification of every way a call can end.

use super::cpu::CpuAccount;
use super::scheduler::Scheduler;
use super::{CallState, Prepared, Runtime};
use crate::host::{Capabilities, HostCtx, Waits};
use crate::metrics::Metrics;
use crate::spec::FunctionLimits;
use crate::telemetry::spans;
use bytes::Bytes;
use futures::future::Either;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;
use tracing::instrument::WithSubscriber;
use wasmtime::{Engine, InstancePre, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

/// Most table elements a guest may grow its table to.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

pub struct CallRequest {
    /// Whose call this is: the fair scheduler shares CPU between tenants.
    pub tenant: Arc<str>,
    /// The function's grants and backends, resolved at deploy.
    pub capabilities: Arc<Capabilities>,
    pub limits: FunctionLimits,
    pub env: Arc<[(String, String)]>,
    pub stdin: Bytes,
}

#[derive(Debug)]
pub struct CallOutput {
    pub stdout: Bytes,
    pub stderr: Bytes,
    /// When `_start` was entered: instantiation is done by then.
    pub started: Instant,
    /// Calls of each host function, for the call's receipt.
    pub host_calls: std::collections::BTreeMap<&'static str, u32>,
}

/// A call that ran: how it ended, and the CPU time it took (instantiation and the guest's run,
/// on whichever threads ran them; never time spent waiting).
#[derive(Debug)]
pub struct Ran {
    pub result: Result<CallOutput, CallError>,
    pub cpu: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl std::fmt::Display for OutputStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        })
    }
}

/// Every way a call can fail. The guest's stderr is kept where it helps explain the failure.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the function did not finish within its timeout of {0:?}")]
    Timeout(Duration),
    /// The deadline passed while the guest waited in a host call for the state backend: the
    /// backend, not the function, is why (NATS unreachable, or a stream without quorum). A
    /// write it was making may still be applied when the backend recovers.
    #[error(
        "the state backend did not answer {host_call} within the function's timeout of {timeout:?} \
         (unreachable, or its stream has no quorum); a write may still be applied once it recovers"
    )]
    StateBackendTimeout { host_call: &'static str, timeout: Duration },
    #[error("the function used more than its CPU time limit of {0:?}")]
    CpuLimitExceeded(Duration),
    #[error("the function exceeded its memory limit of {0} bytes")]
    MemoryExhausted(u64),
    #[error("the function overflowed its stack")]
    StackOverflow,
    #[error("the function trapped: {0}")]
    Trap(String),
    #[error("the function exited with status {0}")]
    Exit(i32),
    #[error("the function wrote more than {cap} bytes to {stream}")]
    OutputTooLarge { stream: OutputStream, cap: u64 },
    #[error("no instance slot is free on this node")]
    NoCapacity,
    #[error("internal error running the function")]
    Internal(String),
}

impl crate::failure::PublicError for CallError {
    fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            CallError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            CallError::StateBackendTimeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            CallError::OutputTooLarge { .. } => StatusCode::BAD_GATEWAY,
            // As Cloudflare Workers (error 1102) and Fastly Compute answer a request whose
            // code ran out of CPU: the service could not produce the answer, and a retry of
            // the same request will not do better (so no Retry-After).
            CallError::NoCapacity | CallError::CpuLimitExceeded(_) => StatusCode::SERVICE_UNAVAILABLE,
            CallError::MemoryExhausted(_)
            | CallError::StackOverflow
            | CallError::Trap(_)
            | CallError::Exit(_)
            | CallError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            CallError::Timeout(_) => "timeout",
            CallError::StateBackendTimeout { .. } => "unavailable",
            CallError::CpuLimitExceeded(_) => "cpu_limit_exceeded",
            CallError::MemoryExhausted(_) => "memory_exhausted",
            CallError::StackOverflow => "stack_overflow",
            CallError::Trap(_) => "trap",
            CallError::Exit(_) => "exit",
            CallError::OutputTooLarge { .. } => "output_too_large",
            CallError::NoCapacity => "no_capacity",
            CallError::Internal(_) => "internal",
        }
    }

    fn internal_detail(&self) -> Option<&str> {
        match self {
            CallError::Internal(detail) => Some(detail),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        matches!(self, CallError::NoCapacity | CallError::StateBackendTimeout { .. })
            .then_some(crate::failure::RETRY_SOON_SECS)
    }
}

impl Runtime {
    /// Runs one call on the guest executor. Dropping the future (a client that went away) stops
    /// the guest at its next epoch tick.
    pub async fn call(&self, prepared: &Prepared, request: CallRequest) -> Ran {
        let traced = spans::recording(&tracing::Span::current());
        let pre = match self.instance_pre(prepared).await {
            Ok(pre) => pre,
            Err(e) => return Ran { result: Err(CallError::Internal(e.to_string())), cpu: Duration::ZERO },
        };
        let call =
            run(self.engine.clone(), pre, request, self.scheduler.clone(), self.metrics.clone(), traced);
        // A traced call runs in the caller's span and under its subscriber (a test's may be its
        // thread's own), so that the guest's spans join the request's or job's trace.
        let call = match traced {
            true => Either::Right(call.in_current_span().with_current_subscriber()),
            false => Either::Left(call),
        };
        // Every executor thread may be running a guest that only yields at its next tick: have
        // them yield now, so this call is looked at (and, if it deserves it, run) at once.
        self.scheduler.interrupt_if_full();
        let task = self.executor.spawn(call);
        task.await.unwrap_or_else(|e| Ran {
            result: Err(CallError::Internal(format!("guest task failed: {e}"))),
            cpu: Duration::ZERO,
        })
    }
}

async fn run(
    engine: Engine,
    pre: InstancePre<CallState>,
    request: CallRequest,
    scheduler: Arc<Scheduler>,
    metrics: Arc<Metrics>,
    traced: bool,
) -> Ran {
    let limits = &request.limits;
    let pipe_cap = usize::try_from(limits.max_output).unwrap_or(usize::MAX).saturating_add(1);
    let envelope = request.stdin.clone();
    let stdout = MemoryOutputPipe::new(pipe_cap);
    let stderr = MemoryOutputPipe::new(pipe_cap);
    let wasi = WasiCtxBuilder::new()
        .stdin(MemoryInputPipe::new(request.stdin))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .envs(&request.env)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build_p1();
    let state = CallState {
        wasi,
        limiter: CallLimiter { memory: limits.memory, memory_exhausted: false },
        host: HostCtx::new(request.capabilities, envelope, traced),
    };
    let mut store = Store::new(&engine, state);
    store.limiter(|state| &mut state.limiter);
    let account = Arc::new(CpuAccount::default());
    store.set_epoch_deadline(1);
    let (ticks, budget) = (account.clone(), limits.cpu);
    // Each epoch tick ends a time slice: past its CPU budget the call ends; otherwise it yields
    // to the executor, where its deadline and an abort are seen and the scheduler lets it run
    // on or hands its permit to a call that deserves it more.
    store.epoch_deadline_callback(move |_| {
        if ticks.over(ticks.used_within_slice(), budget) {
            return Err(wasmtime::Error::msg("the call ran past its CPU time limit"));
        }
        ticks.slice_ended();
        Ok(UpdateDeadline::Yield(1))
    });

    let mut started = None;
    let run = async {
        let instantiating = Instant::now();
        let instance = pre.instantiate_async(&mut store).instrument(spans::instantiate(traced)).await?;
        let _active = metrics.instance(instantiating.elapsed());
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        started = Some(Instant::now());
        start.call_async(&mut store, ()).await
    };
    let scheduled = scheduler.schedule(&request.tenant, 1, account.clone(), run);
    let outcome = tokio::time::timeout(limits.timeout, scheduled).await;
    let memory_exhausted = store.data().limiter.memory_exhausted;
    let host_calls = store.data().host.calls().clone();
    let awaiting = store.data().host.awaiting();
    drop(store);
    let stdout = take(stdout);
    let stderr = take(stderr);

    let result = match outcome {
        Err(_elapsed) => Err(match awaiting {
            Some((host_call, Waits::StateBackend)) => {
                CallError::StateBackendTimeout { host_call, timeout: limits.timeout }
            }
            _ => CallError::Timeout(limits.timeout),
        }),
        Ok(_) if account.exceeded() => Err(CallError::CpuLimitExceeded(limits.cpu.unwrap_or_default())),
        Ok(_) if memory_exhausted => Err(CallError::MemoryExhausted(limits.memory)),
        Ok(_) if stdout.len() as u64 > limits.max_output => {
            Err(CallError::OutputTooLarge { stream: OutputStream::Stdout, cap: limits.max_output })
        }
        Ok(_) if stderr.len() as u64 > limits.max_output => {
            Err(CallError::OutputTooLarge { stream: OutputStream::Stderr, cap: limits.max_output })
        }
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => classify(error),
    };
    let result = result.map(|()| CallOutput {
        stdout,
        stderr,
        started: started.unwrap_or_else(Instant::now),
        host_calls,
    });
    Ran { result, cpu: account.used() }
}

fn take(pipe: MemoryOutputPipe) -> Bytes {
    match pipe.try_into_inner() {
        Some(bytes) => bytes.freeze(),
        None => Bytes::new(),
    }
}

/// Sorts a failed instantiation or run into the error a caller sees.
fn classify(error: wasmtime::Error) -> Result<(), CallError> {
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return match exit.0 {
            0 => Ok(()),
            code => Err(CallError::Exit(code)),
        };
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return Err(match trap {
            Trap::StackOverflow => CallError::StackOverflow,
            other => CallError::Trap(other.to_string()),
        });
    }
    if let Some(host) = error.downcast_ref::<crate::host::HostError>() {
        return Err(CallError::Trap(host.to_string()));
    }
    // Every slot of the pool (instances, memories, tables, stacks) is in use.
    if error.is::<wasmtime::PoolConcurrencyLimitError>() {
        return Err(CallError::NoCapacity);
    }
    Err(CallError::Internal(format!("{error:#}")))
}

/// Enforces the function's memory cap; a growth past it traps, and is remembered so that the
/// failure is reported as memory exhaustion rather than a generic trap.
pub(super) struct CallLimiter {
    memory: u64,
    memory_exhausted: bool,
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory {
            self.memory_exhausted = true;
            wasmtime::bail!("memory limit of {} bytes exceeded", self.memory);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }
}
