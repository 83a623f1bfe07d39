//! Density: many functions from many distinct modules on one node. Prints figures; asserts
//! nothing.
//!
//! GOJINN_BENCH_FUNCTIONS functions (default 10,000) in tenants of 100, running
//! GOJINN_BENCH_MODULES distinct modules (default 1,000): the hello example, each copy made
//! distinct by a custom section naming its index (so each has its own sha256, compiled artifact
//! and cache entry). The `gojinn` binary serves them twice from the same data dir:
//!
//! 1. cold: every module compiled (time to ready printed, for scale);
//! 2. warm: a restart, every module loaded from the on-disk cache: the time from the process's
//!    start to ready (every function deployed), then to every function answered once, and the
//!    node's resident memory (RSS) at each point.
//!
//! Run: `cargo bench --bench density`. Settings: GOJINN_BENCH_FUNCTIONS, GOJINN_BENCH_MODULES,
//! GOJINN_BENCH_CACHE (the node's `runtime.moduleCacheBytes`, default the node's default),
//! GOJINN_BENCH_DATA (a data dir to use and keep, instead of a temporary one: a second run then
//! finds every module compiled, and its first start is warm too).

mod support;

use anyhow::{Context, bail, ensure};
use futures::StreamExt;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{ChildGuard, env_number};

const FUNCTIONS_PER_TENANT: usize = 100;
/// Calls in flight while every function is called once.
const IN_FLIGHT: usize = 32;

fn main() -> anyhow::Result<()> {
    let functions = usize::try_from(env_number("GOJINN_BENCH_FUNCTIONS", 10_000))?;
    let modules = usize::try_from(env_number("GOJINN_BENCH_MODULES", 1_000))?.clamp(1, functions);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    println!("building the hello guest...");
    let guests = support::build_guests(root, &[("hello", "wasm32-wasip1")])?;
    let hello = std::fs::read(guests.join("wasm32-wasip1/release/hello.wasm"))?;
    let specs = tempfile::tempdir()?;
    write_specs(specs.path(), &hello, functions, modules)?;
    // Beside the specs, not among them: the node would read it as a spec.
    let configs = tempfile::tempdir()?;
    let config = configs.path().join("gojinn.yaml");
    let cache = std::env::var("GOJINN_BENCH_CACHE").ok();
    let settings = match &cache {
        Some(bytes) => format!("runtime: {{ moduleCacheBytes: {bytes} }}\n"),
        None => String::new(),
    };
    std::fs::write(&config, settings)?;
    let temporary = tempfile::tempdir()?;
    let data = match std::env::var_os("GOJINN_BENCH_DATA") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => temporary.path().to_owned(),
    };
    println!(
        "{functions} functions in {} tenants, {modules} distinct modules of {} KiB; module cache {}",
        functions.div_ceil(FUNCTIONS_PER_TENANT),
        hello.len() >> 10,
        cache.as_deref().unwrap_or("the default")
    );

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (node, first) = runtime.block_on(start(specs.path(), &config, &data))?;
    println!(
        "\n== first start (compiling every module not yet compiled): ready in {:.1} s",
        first.ready.as_secs_f64()
    );
    stop(node)?;

    let (node, warm) = runtime.block_on(start(specs.path(), &config, &data))?;
    let after_ready = rss_mib(&node)?;
    let called = runtime.block_on(call_all(&warm.addr, functions))?;
    let after_calls = rss_mib(&node)?;
    stop(node)?;
    println!("\n== warm (every module in the on-disk cache)");
    println!(
        "start to ready (all deployed):   {:>8.2} s   RSS {after_ready:>7.0} MiB",
        warm.ready.as_secs_f64()
    );
    println!(
        "start to all {functions} answered:  {:>8.2} s   RSS {after_calls:>7.0} MiB   ({:.0} first calls/s)",
        (warm.ready + called).as_secs_f64(),
        functions as f64 / called.as_secs_f64()
    );
    println!("(goal: RSS at most 2048 MiB)");
    Ok(())
}

/// A started node: its address and the time from its start to ready.
struct Started {
    addr: String,
    ready: Duration,
}

async fn start(specs: &Path, config: &Path, data: &Path) -> anyhow::Result<(ChildGuard, Started)> {
    let addr = support::free_port()?.to_string();
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_gojinn"))
        .args(["serve", "--no-watch", "--listen", &addr, "--specs"])
        .arg(specs)
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("start gojinn")?;
    let node = ChildGuard(child);
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/_gojinn/ready");
    let deadline = started + Duration::from_secs(3600);
    loop {
        if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok((node, Started { addr, ready: started.elapsed() }));
        }
        if Instant::now() > deadline {
            bail!("the node was not ready within an hour");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls every function once, [`IN_FLIGHT`] at a time; each must answer hello.
async fn call_all(addr: &str, functions: usize) -> anyhow::Result<Duration> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(IN_FLIGHT).build()?;
    let started = Instant::now();
    let mut calls = futures::stream::iter(0..functions)
        .map(|f| {
            let url = format!("http://{addr}/{}/f{}", tenant(f), f % FUNCTIONS_PER_TENANT);
            let client = client.clone();
            async move {
                let response = client.get(&url).send().await?;
                ensure!(response.status() == 200, "{url}: {}", response.status());
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some(call) = calls.next().await {
        call?;
    }
    Ok(started.elapsed())
}

fn tenant(function: usize) -> String {
    format!("t{:03}", function / FUNCTIONS_PER_TENANT)
}

/// The modules (hello with a custom section `gojinn-bench` holding its index) and the specs:
/// function `f` runs module `f % modules`.
fn write_specs(dir: &Path, hello: &[u8], functions: usize, modules: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("modules"))?;
    for m in 0..modules {
        std::fs::write(dir.join(format!("modules/m{m}.wasm")), distinct(hello, m))?;
    }
    std::fs::create_dir_all(dir.join("tenants"))?;
    for first in (0..functions).step_by(FUNCTIONS_PER_TENANT) {
        let name = tenant(first);
        let mut out = format!(
            "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: {{ name: {name} }}\nspec: {{ quotas: {{ maxConcurrency: 64 }} }}\n"
        );
        for f in first..functions.min(first + FUNCTIONS_PER_TENANT) {
            let _ = write!(
                out,
                "---\napiVersion: gojinn.dev/v1\nkind: Function\nmetadata: {{ name: f{}, tenant: {name} }}\n\
                 spec:\n  module: {{ path: modules/m{}.wasm }}\n  limits: {{ memory: 16Mi, timeout: 1s }}\n",
                f % FUNCTIONS_PER_TENANT,
                f % modules
            );
        }
        std::fs::write(dir.join(format!("tenants/{name}.yaml")), out)?;
    }
    Ok(())
}

/// `module` with a custom section appended that names `index`: the same code, another sha256.
fn distinct(module: &[u8], index: usize) -> Vec<u8> {
    const NAME: &[u8] = b"gojinn-bench";
    let payload = index.to_le_bytes();
    let mut out = module.to_vec();
    out.push(0); // custom section
    leb128(&mut out, 1 + NAME.len() + payload.len());
    leb128(&mut out, NAME.len());
    out.extend_from_slice(NAME);
    out.extend_from_slice(&payload);
    out
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The resident memory of `node`, in MiB (`VmRSS` of `/proc/PID/status`, Linux).
fn rss_mib(node: &ChildGuard) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.0.id()))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .context("VmRSS in /proc/PID/status")?;
    Ok(kib / 1024.0)
}

/// Stops a node with SIGINT and waits for it.
fn stop(mut node: ChildGuard) -> anyhow::Result<()> {
    Command::new("kill").args(["-INT", &node.0.id().to_string()]).status().context("run kill")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while node.0.try_wait()?.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
