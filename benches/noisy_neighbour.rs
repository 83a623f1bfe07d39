//! Noisy neighbours: what one tenant's CPU-bound calls cost another tenant. Prints figures and
//! ratios; asserts nothing.
//!
//! One node with default settings (but `http.maxConnectionsPerClient`, raised so that every
//! client here, all on loopback, gets its connections). Tenant `good` serves the hello example to
//! `wrk -t1 -c16`; tenant `evil` has a function that loops until its 200 ms timeout, called in a
//! loop by 0, 1, 2, 4, 16 and 64 clients at once. Then a mixed case: `good` under wrk, `evil`
//! with 16 looping callers, and tenant `batch`, whose function busy-waits 20 ms on the clock (an
//! honest CPU-heavy call), with 4 callers. Each row gives `good`'s requests/s and p99 and their
//! ratio to the quiet row (goal on 2 cores: >= 40% of quiet throughput, p99 within 3x), and the
//! calls the other tenants finished per second.
//!
//! Run: `cargo bench --bench noisy_neighbour`. Settings (environment): GOJINN_BENCH_SECS (each
//! row's wrk duration, default 8), GOJINN_BENCH_CALLERS (comma-separated looping caller counts,
//! default `0,1,2,4,16,64`).

mod support;

use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use support::{WrkResult, env_number};

/// Connections wrk keeps open to `good`.
const GOOD_CONNECTIONS: u64 = 16;
/// Callers of `batch` in the mixed case.
const BATCH_CALLERS: usize = 4;
/// Looping callers of `evil` in the mixed case.
const MIXED_EVIL_CALLERS: usize = 16;

const NODE_CONFIG: &str = "http: { maxConnectionsPerClient: 4096 }\naudit: { durability: async }\n";

fn specs() -> String {
    let tenant =
        |name: &str| format!("apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: {{ name: {name} }}\n");
    let function = |tenant: &str, name: &str, module: &str, timeout: &str| {
        format!(
            "apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: {{ name: {name}, tenant: {tenant} }}\n\
             spec:\n  module: {{ path: {module} }}\n  limits: {{ memory: 32Mi, timeout: {timeout} }}\n"
        )
    };
    [
        tenant("good"),
        function("good", "hello", "hello.wasm", "1s"),
        tenant("evil"),
        function("evil", "spin", "loop.wasm", "200ms"),
        tenant("batch"),
        function("batch", "work", "slow.wasm", "1s"),
    ]
    .join("---\n")
}

/// One row: `good` under wrk while the other tenants' callers run.
struct Row {
    name: String,
    good: WrkResult,
    /// Calls per second finished by each tenant's callers (`evil`, `batch`).
    evil_per_sec: f64,
    batch_per_sec: f64,
}

fn main() -> anyhow::Result<()> {
    let secs = env_number("GOJINN_BENCH_SECS", 8);
    let callers: Vec<usize> = std::env::var("GOJINN_BENCH_CALLERS")
        .unwrap_or_else(|_| "0,1,2,4,16,64".into())
        .split(',')
        .map(|n| n.trim().parse().context("GOJINN_BENCH_CALLERS: numbers separated by commas"))
        .collect::<anyhow::Result<_>>()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    println!("building guests...");
    let guests = support::build_guests(
        root,
        &[("hello", "wasm32-wasip1"), ("guest-loop", "wasm32-wasip1"), ("guest-slow", "wasm32-wasip1")],
    )?;
    let built = guests.join("wasm32-wasip1/release");
    let specs_dir = tempfile::tempdir()?;
    std::fs::copy(built.join("hello.wasm"), specs_dir.path().join("hello.wasm"))?;
    std::fs::copy(built.join("guest-loop.wasm"), specs_dir.path().join("loop.wasm"))?;
    std::fs::copy(built.join("guest-slow.wasm"), specs_dir.path().join("slow.wasm"))?;
    std::fs::write(specs_dir.path().join("specs.yaml"), specs())?;
    let config_dir = tempfile::tempdir()?;
    let config = config_dir.path().join("gojinn.yaml");
    std::fs::write(&config, NODE_CONFIG)?;
    let args = ["--config", config.to_str().context("a UTF-8 temp path")?];
    let (_node, addr, _data) = support::start_gojinn(specs_dir.path(), &args, &[])?;
    let good_url = format!("http://{addr}/good/hello");
    let evil = format!("http://{addr}/evil/spin");
    let batch = format!("http://{addr}/batch/work?ms=20");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;

    println!(
        "\n== tenant good: wrk -t1 -c{GOOD_CONNECTIONS} -d{secs}s on hello; tenant evil: looping callers \
         of a function that spins until its 200 ms timeout"
    );
    // A warm-up run, so that the first row does not pay for first calls.
    support::wrk_threads(&good_url, 1, GOOD_CONNECTIONS, 2)?;
    let mut rows = Vec::new();
    for &n in &callers {
        let (good, per_sec) = under_load(&runtime, &good_url, secs, &[(&evil, n)])?;
        rows.push(Row { name: format!("evil x{n}"), good, evil_per_sec: per_sec[0], batch_per_sec: 0.0 });
    }
    let (good, per_sec) =
        under_load(&runtime, &good_url, secs, &[(&evil, MIXED_EVIL_CALLERS), (&batch, BATCH_CALLERS)])?;
    rows.push(Row {
        name: format!("mixed: evil x{MIXED_EVIL_CALLERS}, batch x{BATCH_CALLERS}"),
        good,
        evil_per_sec: per_sec[0],
        batch_per_sec: per_sec[1],
    });
    let (_, batch_alone) = under_load(&runtime, &good_url, secs.min(4), &[(&batch, BATCH_CALLERS)])?;
    print(&rows, batch_alone[0]);
    Ok(())
}

fn print(rows: &[Row], batch_alone: f64) {
    let quiet =
        rows.iter().find(|row| row.name == "evil x0").map(|row| (row.good.requests_per_sec, row.good.p99_ms));
    println!(
        "\n{:<30} {:>12} {:>9} {:>9} {:>8} {:>8} {:>11} {:>11}",
        "other tenants' callers",
        "good req/s",
        "vs quiet",
        "p99 ms",
        "vs quiet",
        "errors",
        "evil/s",
        "batch/s"
    );
    for row in rows {
        let (rate, p99) = match quiet {
            Some((rate, p99)) => (
                format!("{:.0}%", row.good.requests_per_sec / rate * 100.0),
                format!("{:.1}x", row.good.p99_ms / p99),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:<30} {:>12.0} {rate:>9} {:>9.2} {p99:>8} {:>8} {:>11.1} {:>11.1}",
            row.name,
            row.good.requests_per_sec,
            row.good.p99_ms,
            row.good.errors,
            row.evil_per_sec,
            row.batch_per_sec
        );
    }
    println!(
        "(goal on 2 cores: good keeps >= 40% of its quiet req/s and p99 within 3x; evil/s and batch/s are \
         calls finished (answered or timed out) per second; batch/s with good under wrk and no evil: {batch_alone:.1})"
    );
}

/// Runs wrk on `good` for `secs` while, for each `(url, n)`, `n` clients call `url` in a loop;
/// returns wrk's figures and the calls per second each group of clients finished.
fn under_load(
    runtime: &tokio::runtime::Runtime,
    good: &str,
    secs: u64,
    groups: &[(&str, usize)],
) -> anyhow::Result<(WrkResult, Vec<f64>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Vec<Arc<AtomicU64>> = groups.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut callers = Vec::new();
    for ((url, n), count) in groups.iter().zip(&counts) {
        for _ in 0..*n {
            callers.push(runtime.spawn(call_in_a_loop(url.to_string(), count.clone(), stop.clone())));
        }
    }
    // Let the callers reach the node before measuring.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before: Vec<u64> = counts.iter().map(|count| count.load(Ordering::Relaxed)).collect();
    let result = support::wrk_threads(good, secs, GOOD_CONNECTIONS, 1)?;
    let per_sec = counts
        .iter()
        .zip(before)
        .map(|(count, before)| (count.load(Ordering::Relaxed) - before) as f64 / secs as f64)
        .collect();
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        runtime.block_on(caller)?;
    }
    Ok((result, per_sec))
}

/// Calls `url` until `stop`, one call at a time on a connection of its own, counting the calls
/// that got an answer (of any status).
async fn call_in_a_loop(url: String, count: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().expect("an HTTP client");
    while !stop.load(Ordering::Relaxed) {
        if let Ok(response) = client.get(&url).send().await
            && response.bytes().await.is_ok()
        {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
}
