//! Runs guests: one wasmtime Engine per node, modules compiled once per sha256 and linked once
//! (cached in memory within a budget, and on disk), and a fresh, limited Store per call.
//! The runtime knows nothing of HTTP; it takes the guest's stdin and returns its stdout. It
//! counts live instances and times instantiation (`metrics`).

mod cache;
mod call;
mod cpu;
mod engine;
mod executor;
mod scheduler;

pub use call::{CallError, CallOutput, CallRequest, OutputStream, Ran};
pub use engine::{EPOCH_TICK, PoolConfig};

use crate::host::{self, HostCtx, HostView};
use crate::metrics::Metrics;
use cache::ModuleCache;
use engine::EpochTicker;
use executor::Executor;
use scheduler::Scheduler;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::{Engine, InstancePre, Linker, Module};
use wasmtime_wasi::p1::WasiP1Ctx;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot configure the wasm engine: {0}")]
    Engine(String),
    #[error("module cache: {0}")]
    Cache(String),
    #[error("invalid module: {0}")]
    InvalidModule(String),
    #[error(
        "module needs {asked} bytes of memory but this node allows at most {max} per instance (runtime.maxMemoryPerInstance)"
    )]
    MemoryAboveNodeLimit { asked: u64, max: u64 },
}

/// What a Store holds during one call.
pub struct CallState {
    wasi: WasiP1Ctx,
    limiter: call::CallLimiter,
    host: HostCtx,
}

impl HostView for CallState {
    fn host(&mut self) -> &mut HostCtx {
        &mut self.host
    }
}

/// A module checked for this runtime (compiled, exports and imports checked): its sha256 and
/// bytes, from which the module cache loads or compiles it again if it dropped it.
#[derive(Clone)]
pub struct Prepared {
    sha256: Arc<str>,
    bytes: Arc<[u8]>,
}

pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<CallState>>,
    /// The host functions linked into `linker`: what a module may import from `gojinn`.
    linked: host::Linked,
    cache: Arc<ModuleCache>,
    pool: PoolConfig,
    executor: Executor,
    /// Shares the executor's threads fairly between tenants.
    scheduler: Arc<Scheduler>,
    metrics: Arc<Metrics>,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Builds the engine and linker; compiled modules are cached under `cache_dir` when given.
    pub fn new(
        pool: PoolConfig,
        cache_dir: Option<PathBuf>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, RuntimeError> {
        let engine = engine::build_engine(&pool)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut CallState| &mut state.wasi)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let linked = host::link(&mut linker).map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let cache = Arc::new(ModuleCache::new(&engine, cache_dir, pool.module_cache_bytes)?);
        let executor = Executor::new()
            .map_err(|e| RuntimeError::Engine(format!("cannot start the guest executor: {e}")))?;
        let interrupted = engine.clone();
        let scheduler = Scheduler::new(executor.threads(), move || interrupted.increment_epoch());
        let ticker = EpochTicker::start(engine.clone());
        let linker = Arc::new(linker);
        Ok(Self { engine, linker, linked, cache, pool, executor, scheduler, metrics, _ticker: ticker })
    }

    /// The node's metrics, which every call on this runtime is counted in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Checks a module for a function with `memory` bytes of linear memory: compiles it (or
    /// fetches it from the cache), checks its exports and imports and links it. CPU-heavy on a
    /// cache miss: call from a blocking thread.
    pub fn prepare(&self, sha256: &str, bytes: &Arc<[u8]>, memory: u64) -> Result<Prepared, RuntimeError> {
        if memory > self.pool.max_memory_per_instance {
            return Err(RuntimeError::MemoryAboveNodeLimit {
                asked: memory,
                max: self.pool.max_memory_per_instance,
            });
        }
        if self.cache.get(sha256).is_none() {
            let module = self.cache.compile(&self.engine, sha256, bytes)?;
            check_exports(&module)?;
            self.linked.check_imports(&module).map_err(RuntimeError::InvalidModule)?;
            self.cache.insert(sha256, link(&self.linker, &module)?);
        }
        Ok(Prepared { sha256: sha256.into(), bytes: bytes.clone() })
    }

    /// The linked module of `prepared`: from memory, or, when the cache dropped it, loaded from
    /// disk (or compiled again) on a blocking thread.
    async fn instance_pre(&self, prepared: &Prepared) -> Result<InstancePre<CallState>, RuntimeError> {
        if let Some(pre) = self.cache.get(&prepared.sha256) {
            return Ok(pre);
        }
        let (engine, linker, cache) = (self.engine.clone(), self.linker.clone(), self.cache.clone());
        let prepared = prepared.clone();
        let reload = tokio::task::spawn_blocking(move || {
            let module = cache.compile(&engine, &prepared.sha256, &prepared.bytes)?;
            let pre = link(&linker, &module)?;
            cache.insert(&prepared.sha256, pre.clone());
            Ok(pre)
        });
        reload.await.map_err(|e| RuntimeError::Cache(format!("reloading a module failed: {e}")))?
    }

    /// Forgets compiled modules (in memory) that no deployed function uses any more.
    pub fn retain_modules(&self, keep: &dyn Fn(&str) -> bool) {
        self.cache.retain(keep);
    }
}

fn link(linker: &Linker<CallState>, module: &Module) -> Result<InstancePre<CallState>, RuntimeError> {
    linker.instantiate_pre(module).map_err(|e| RuntimeError::InvalidModule(format!("{e:#}")))
}

fn check_exports(module: &Module) -> Result<(), RuntimeError> {
    let has = |name: &str| module.exports().any(|e| e.name() == name);
    if !has("_start") {
        return Err(RuntimeError::InvalidModule(
            "module exports no `_start`: build a WASI command (a binary crate for wasm32-wasip1)".into(),
        ));
    }
    if !has("memory") {
        return Err(RuntimeError::InvalidModule("module exports no memory named \"memory\"".into()));
    }
    Ok(())
}
