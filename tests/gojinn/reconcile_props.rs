//! Property tests of the reconciler on the embedded backend (each case in fresh temp dirs, real
//! backend calls): for generated spec sets A and B (1 to 5 tenants from a small pool, 0 to 4
//! functions each, random limits, env, grants and keep markers, a few distinct modules; B is
//! either independent of A or a mix of A and another set, so resources stay unchanged, change and
//! go):
//!
//! 1. after an apply the plan is empty and a second apply writes nothing, from scratch and after
//!    a change of specs;
//! 2. the order of applies does not matter: A then B leaves the same applied records (up to the
//!    commit they were applied at) as B alone on a fresh backend, except for A's resources that
//!    `keep` spares;
//! 3. prune: after A then B, every resource of A that B lacks is gone unless `keep` spares it
//!    (its own marker, or for a tenant a kept function of it), and what is spared is A's record;
//!    the module blobs left are exactly those the applied functions use.

use gojinn::reconcile::desired::APPLIED_PREFIX;
use gojinn::reconcile::policy::Policies;
use gojinn::reconcile::{Admitted, Reconciler};
use gojinn::state::State;
use gojinn::state::embedded::EmbeddedBackend;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, OnceLock};

const TENANTS: [&str; 5] = ["acme", "beta", "gamma", "delta", "echo"];
const FUNCTIONS: [&str; 5] = ["hello", "resize", "count", "mail", "audit"];
const MODULES: usize = 3;
const CASES: u32 = 24;

#[derive(Clone, Debug)]
struct FunctionGen {
    keep: bool,
    module: usize,
    memory_mi: u32,
    timeout_ms: u32,
    max_concurrency: Option<u32>,
    env: BTreeMap<String, String>,
    kv: Option<(Vec<String>, Vec<String>)>,
    db: bool,
    http: bool,
    enqueue: Vec<&'static str>,
    jobs: Option<u32>,
    with_route: bool,
}

#[derive(Clone, Debug)]
struct TenantGen {
    keep: bool,
    replicas: u8,
    max_concurrency: u32,
    max_memory_mi: Option<u32>,
    kv_max_kib: Option<u32>,
    functions: BTreeMap<usize, FunctionGen>,
}

/// Tenants by index into [`TENANTS`]; their functions by index into [`FUNCTIONS`].
type SpecSet = BTreeMap<usize, TenantGen>;

fn function_gen() -> impl Strategy<Value = FunctionGen> {
    let env = prop::collection::btree_map(
        prop::sample::select(vec!["GREETING", "MODE", "LEVEL_2", "_X"]).prop_map(str::to_owned),
        "[a-z0-9]{0,6}",
        0..3,
    );
    let patterns = || prop::collection::vec(prop::sample::select(vec!["*", "counters/*", "cache/x"]), 0..3);
    let kv = prop::option::of((patterns(), patterns())).prop_map(|kv| {
        kv.map(|(r, w)| {
            (r.into_iter().map(str::to_owned).collect(), w.into_iter().map(str::to_owned).collect())
        })
    });
    (
        (prop::bool::weighted(0.25), 0..MODULES, prop::sample::select(vec![16u32, 32, 64])),
        (prop::sample::select(vec![100u32, 500, 1000, 2500]), prop::option::of(1u32..=8), env, kv),
        (any::<bool>(), any::<bool>(), prop::sample::subsequence(FUNCTIONS.to_vec(), 0..3)),
        (prop::option::of(1u32..=6), prop::bool::weighted(0.8)),
    )
        .prop_map(
            |(
                (keep, module, memory_mi),
                (timeout_ms, max_concurrency, env, kv),
                (db, http, enqueue),
                (jobs, with_route),
            )| {
                FunctionGen {
                    keep,
                    module,
                    memory_mi,
                    timeout_ms,
                    max_concurrency,
                    env,
                    kv,
                    db,
                    http,
                    enqueue,
                    jobs,
                    with_route,
                }
            },
        )
}

fn tenant_gen() -> impl Strategy<Value = TenantGen> {
    (
        prop::bool::weighted(0.25),
        prop::sample::select(vec![1u8, 3]),
        8u32..=64,
        prop::option::of(prop::sample::select(vec![64u32, 128, 512])),
        prop::option::of(prop::sample::select(vec![64u32, 1024])),
        prop::collection::btree_map(0..FUNCTIONS.len(), function_gen(), 0..=4),
    )
        .prop_map(|(keep, replicas, max_concurrency, max_memory_mi, kv_max_kib, functions)| TenantGen {
            keep,
            replicas,
            max_concurrency,
            max_memory_mi,
            kv_max_kib,
            functions,
        })
}

fn spec_set() -> impl Strategy<Value = SpecSet> {
    prop::collection::btree_map(0..TENANTS.len(), tenant_gen(), 1..=4)
}

/// A pair of spec sets: B independent of A, or (as often) a mix of A and another set, tenant by
/// tenant and function by function, so that B keeps some of A's resources unchanged.
fn spec_pair() -> impl Strategy<Value = (SpecSet, SpecSet)> {
    let choices =
        prop::collection::vec((0u8..4, prop::collection::vec(any::<bool>(), FUNCTIONS.len())), TENANTS.len());
    (spec_set(), spec_set(), any::<bool>(), choices).prop_map(|(a, other, independent, choices)| {
        if independent {
            return (a, other);
        }
        let mut b = SpecSet::new();
        for (t, (choice, coins)) in choices.into_iter().enumerate() {
            let tenant = match (choice, a.get(&t), other.get(&t)) {
                (0, from_a, _) => from_a.cloned(),
                (1, _, from_other) => from_other.cloned(),
                (2, Some(from_a), Some(from_other)) => {
                    let mut mixed = from_a.clone();
                    mixed.functions.clear();
                    for (f, take_a) in coins.into_iter().enumerate() {
                        let pick =
                            if take_a { from_a.functions.get(&f) } else { from_other.functions.get(&f) };
                        if let Some(function) = pick {
                            mixed.functions.insert(f, function.clone());
                        }
                    }
                    Some(mixed)
                }
                (2, from_a, from_other) => from_a.or(from_other).cloned(),
                _ => None,
            };
            if let Some(tenant) = tenant {
                b.insert(t, tenant);
            }
        }
        if b.is_empty() { (a, other) } else { (a, b) }
    })
}

fn modules() -> &'static [Vec<u8>] {
    static MODULE_BYTES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    MODULE_BYTES.get_or_init(|| {
        (0..MODULES)
            .map(|m| {
                let text = format!("(module (func (export \"answer\") (result i32) i32.const {}))", m + 7);
                wat::parse_str(text).expect("valid wat")
            })
            .collect()
    })
}

/// The spec set as YAML files (one per tenant) and module files under `dir`.
fn write_specs(dir: &Path, set: &SpecSet) {
    std::fs::create_dir_all(dir.join("modules")).unwrap();
    for (m, bytes) in modules().iter().enumerate() {
        std::fs::write(dir.join(format!("modules/m{m}.wasm")), bytes).unwrap();
    }
    for (&t, tenant) in set {
        std::fs::write(dir.join(format!("{}.yaml", TENANTS[t])), tenant_yaml(TENANTS[t], tenant)).unwrap();
    }
}

fn tenant_yaml(name: &str, tenant: &TenantGen) -> String {
    let mut out = String::new();
    let mut quotas = format!("maxConcurrency: {}", tenant.max_concurrency);
    if let Some(mi) = tenant.max_memory_mi {
        let _ = write!(quotas, ", maxMemory: {mi}Mi");
    }
    if let Some(kib) = tenant.kv_max_kib {
        let _ = write!(quotas, ", kvMaxBytes: {kib}Ki");
    }
    let _ = write!(
        out,
        "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: {{ name: {name}, keep: {} }}\n\
         spec:\n  replicas: {}\n  quotas: {{ {quotas} }}\n",
        tenant.keep, tenant.replicas
    );
    for (&f, function) in &tenant.functions {
        let fname = FUNCTIONS[f];
        let _ = write!(
            out,
            "---\napiVersion: gojinn.dev/v1\nkind: Function\nmetadata: {{ name: {fname}, tenant: {name}, keep: {} }}\n\
             spec:\n  module: {{ path: modules/m{}.wasm }}\n",
            function.keep, function.module
        );
        if function.with_route {
            let _ = writeln!(out, "  routes: [{{ path: /{name}/{fname}, methods: [GET, POST] }}]");
        }
        let mut limits = format!("memory: {}Mi, timeout: {}ms", function.memory_mi, function.timeout_ms);
        if let Some(n) = function.max_concurrency {
            let _ = write!(limits, ", maxConcurrency: {n}");
        }
        let _ = writeln!(out, "  limits: {{ {limits} }}");
        let env: Vec<String> = function.env.iter().map(|(k, v)| format!("{k}: \"{v}\"")).collect();
        let _ = writeln!(out, "  env: {{ {} }}", env.join(", "));
        let mut grants = vec![format!("db: {}", function.db)];
        if let Some((read, write)) = &function.kv {
            let list = |l: &[String]| l.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ");
            grants.push(format!("kv: {{ read: [{}], write: [{}] }}", list(read), list(write)));
        }
        if function.http {
            grants.push("http: { allow: [\"api.example.com:443\"] }".into());
        }
        if !function.enqueue.is_empty() {
            grants.push(format!("enqueue: [{}]", function.enqueue.join(", ")));
        }
        let _ = writeln!(out, "  grants: {{ {} }}", grants.join(", "));
        if let Some(max_deliver) = function.jobs {
            let _ = writeln!(out, "  jobs: {{ maxDeliver: {max_deliver}, backoff: [1s, 5s] }}");
        }
    }
    out
}

/// The resource ids (`tenant/x`, `function/x/y`) of a spec set, with their keep markers.
fn resources(set: &SpecSet) -> BTreeMap<String, bool> {
    let mut ids = BTreeMap::new();
    for (&t, tenant) in set {
        ids.insert(format!("tenant/{}", TENANTS[t]), tenant.keep);
        for (&f, function) in &tenant.functions {
            ids.insert(format!("function/{}/{}", TENANTS[t], FUNCTIONS[f]), function.keep);
        }
    }
    ids
}

/// What of A survives an apply of B although B lacks it: A's resources marked keep, and A's
/// tenants that B lacks but that hold a kept function B lacks.
fn spared(a: &SpecSet, b: &SpecSet) -> BTreeSet<String> {
    let in_b = resources(b);
    let mut spared: BTreeSet<String> = resources(a)
        .into_iter()
        .filter(|(id, keep)| *keep && !in_b.contains_key(id))
        .map(|(id, _)| id)
        .collect();
    for (&t, tenant) in a {
        let tenant_id = format!("tenant/{}", TENANTS[t]);
        let kept_function = tenant.functions.iter().any(|(&f, function)| {
            function.keep && !in_b.contains_key(&format!("function/{}/{}", TENANTS[t], FUNCTIONS[f]))
        });
        if kept_function && !in_b.contains_key(&tenant_id) {
            spared.insert(tenant_id);
        }
    }
    spared
}

/// A temp dir holding its state backend and reconciler.
struct Backend {
    _dir: tempfile::TempDir,
    reconciler: Reconciler,
}

impl Backend {
    fn fresh() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backend = EmbeddedBackend::open(&dir.path().join("state")).expect("open the embedded backend");
        Self { _dir: dir, reconciler: Reconciler::new(State::from_backend(Arc::new(backend))) }
    }

    /// Applied records by resource id, each as JSON without the commit it was applied at.
    async fn applied(&self) -> Result<BTreeMap<String, serde_json::Value>, String> {
        let control = &self.reconciler.state().control;
        let records = control.records(APPLIED_PREFIX).await.map_err(|e| e.to_string())?;
        records
            .into_iter()
            .map(|(key, raw)| {
                let mut value: serde_json::Value =
                    serde_json::from_slice(&raw).map_err(|e| format!("record {key} does not decode: {e}"))?;
                value.as_object_mut().ok_or(format!("record {key} is not an object"))?.remove("commit");
                Ok((key[APPLIED_PREFIX.len()..].to_owned(), value))
            })
            .collect()
    }

    /// The module blobs the applied function records refer to.
    async fn check_blobs(&self, applied: &BTreeMap<String, serde_json::Value>) -> Result<(), String> {
        let blobs = self.reconciler.state().control.blobs().await.map_err(|e| e.to_string())?;
        let used: BTreeSet<String> = applied
            .values()
            .filter_map(|r| r.pointer("/spec/module/sha256")?.as_str().map(str::to_owned))
            .collect();
        if blobs != used {
            return Err(format!(
                "stored blobs {blobs:?} differ from the blobs applied functions use {used:?}"
            ));
        }
        Ok(())
    }
}

fn admit(set: &SpecSet, commit: &str) -> Result<(tempfile::TempDir, Admitted), String> {
    static POLICIES: OnceLock<Policies> = OnceLock::new();
    let policies = POLICIES.get_or_init(|| Policies::load_with(false, None).expect("no policies load"));
    let dir = tempfile::tempdir().unwrap();
    write_specs(dir.path(), set);
    let loaded = gojinn::spec::load_dir(dir.path(), &gojinn::spec::Bounds::default());
    if !loaded.errors.is_empty() {
        return Err(format!("generated specs are invalid:\n{}", loaded.error_text()));
    }
    let admitted = Admitted::new(loaded, Some(commit.to_owned()), policies).map_err(|e| e.to_string())?;
    if !admitted.denials.is_empty() {
        return Err(format!("unexpected denials: {:?}", admitted.denials));
    }
    Ok((dir, admitted))
}

/// Applies `admitted`, then checks that nothing failed, that a plan is empty and that a second
/// apply writes nothing (property 1).
async fn apply_settled(backend: &Backend, admitted: &Admitted, what: &str) -> Result<(), String> {
    let r = &backend.reconciler;
    let report = r.apply(admitted).await.map_err(|e| format!("{what}: apply: {e}"))?;
    let failures: Vec<_> = report.failures().collect();
    if !failures.is_empty() {
        return Err(format!("{what}: failures: {failures:?}"));
    }
    let plan = r.plan(admitted).await.map_err(|e| format!("{what}: plan: {e}"))?;
    if !plan.is_empty() {
        return Err(format!("{what}: plan after apply is not empty: {:?}", plan.changes));
    }
    let again = r.apply(admitted).await.map_err(|e| format!("{what}: second apply: {e}"))?;
    if again.writes != 0 || !again.plan.is_empty() {
        return Err(format!(
            "{what}: second apply wrote {} times, changes {:?}",
            again.writes, again.plan.changes
        ));
    }
    Ok(())
}

async fn check(a: &SpecSet, b: &SpecSet) -> Result<(), String> {
    let (_dir_a, admitted_a) = admit(a, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")?;
    let (_dir_b, admitted_b) = admit(b, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")?;

    // A then B.
    let first = Backend::fresh();
    apply_settled(&first, &admitted_a, "A from scratch").await?;
    let after_a = first.applied().await?;
    let ids_a: BTreeSet<String> = resources(a).into_keys().collect();
    if after_a.keys().cloned().collect::<BTreeSet<_>>() != ids_a {
        return Err(format!("after A the applied records are {:?}, not A's {ids_a:?}", after_a.keys()));
    }
    first.check_blobs(&after_a).await?;
    apply_settled(&first, &admitted_b, "B after A").await?;
    let after_ab = first.applied().await?;
    first.check_blobs(&after_ab).await?;

    // B alone.
    let second = Backend::fresh();
    apply_settled(&second, &admitted_b, "B from scratch").await?;
    let only_b = second.applied().await?;
    second.check_blobs(&only_b).await?;

    // Property 3: prune, and what keep spares.
    let spared = spared(a, b);
    let ids_b = resources(b);
    for id in &ids_a {
        if ids_b.contains_key(id) {
            continue;
        }
        match (spared.contains(id), after_ab.get(id)) {
            (false, Some(_)) => {
                return Err(format!("{id} of A is not in B and not kept, but was not pruned"));
            }
            (true, None) => return Err(format!("{id} of A is kept, but was pruned")),
            (true, Some(record)) if record != &after_a[id] => {
                return Err(format!("kept {id} changed: {record} (A applied {})", after_a[id]));
            }
            _ => {}
        }
    }

    // Property 2: the order of applies does not matter, up to what keep spared.
    let without_spared: BTreeMap<_, _> = after_ab.iter().filter(|(id, _)| !spared.contains(*id)).collect();
    let only_b: BTreeMap<_, _> = only_b.iter().collect();
    if without_spared != only_b {
        let differ: Vec<_> = without_spared
            .keys()
            .chain(only_b.keys())
            .filter(|id| without_spared.get(*id) != only_b.get(*id))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        return Err(format!("A then B and B alone differ in {differ:?}"));
    }
    Ok(())
}

#[test]
fn reconcile_properties_hold_for_generated_specs() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let config =
        Config { cases: CASES, failure_persistence: None, max_shrink_iters: 64, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let result =
        runner.run(&spec_pair(), |(a, b)| runtime.block_on(check(&a, &b)).map_err(TestCaseError::fail));
    if let Err(error) = result {
        panic!("{error}");
    }
}

/// The generator covers what the properties are about: overlapping sets, kept resources that B
/// lacks, resources B drops and resources B keeps unchanged.
#[test]
fn spec_pairs_cover_keep_prune_and_unchanged() {
    let mut runner = TestRunner::deterministic();
    let (mut kept, mut pruned, mut unchanged) = (0, 0, 0);
    for _ in 0..200 {
        let (a, b) = spec_pair().new_tree(&mut runner).unwrap().current();
        let (ids_a, ids_b) = (resources(&a), resources(&b));
        kept += usize::from(!spared(&a, &b).is_empty());
        pruned += usize::from(ids_a.keys().any(|id| !ids_b.contains_key(id) && !spared(&a, &b).contains(id)));
        unchanged += usize::from(ids_a.keys().any(|id| ids_b.contains_key(id) && tenant_yaml_eq(&a, &b, id)));
    }
    assert!(
        kept > 20 && pruned > 20 && unchanged > 20,
        "kept {kept}, pruned {pruned}, unchanged {unchanged}"
    );
}

/// Whether resource `id` (`tenant/x` or `function/x/y`) is generated the same in both sets.
fn tenant_yaml_eq(a: &SpecSet, b: &SpecSet, id: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    let t = TENANTS.iter().position(|n| *n == parts[1]).unwrap();
    match parts.as_slice() {
        ["tenant", _] => {
            let (x, y) = (&a[&t], &b[&t]);
            (x.keep, x.replicas, x.max_concurrency, x.max_memory_mi, x.kv_max_kib)
                == (y.keep, y.replicas, y.max_concurrency, y.max_memory_mi, y.kv_max_kib)
        }
        ["function", _, f] => {
            let f = FUNCTIONS.iter().position(|n| n == f).unwrap();
            format!("{:?}", a[&t].functions[&f]) == format!("{:?}", b[&t].functions[&f])
        }
        _ => false,
    }
}
