//! What observability costs. Prints figures and ratios; asserts nothing.
//!
//! 1. Hello throughput with wrk against the `gojinn` binary, alternating in one run between
//!    - off: no OTLP endpoint (no OpenTelemetry layer at all), nobody scraping metrics;
//!    - on: every span exported over OTLP/gRPC to a receiver in this process, and
//!      `/_gojinn/metrics` scraped every second,
//!
//!    then the cost of "on" in percent of "off" (goal: <= 5%), in throughput and in the node's
//!    CPU time per request (read from `/proc`; other load on the machine moves it far less than
//!    throughput), and how many spans reached the receiver. Receipts are recorded in both (a node
//!    always records them), with the node's default durability unless GOJINN_BENCH_DURABILITY
//!    says otherwise.
//! 2. In-process: what recording one request's metrics costs, and what the request's spans cost
//!    with the default `RUST_LOG` and no exporter (they should be next to nothing).
//!
//! Run: `cargo bench --bench observability`. Settings (environment): GOJINN_BENCH_SECS (wrk
//! duration, default 10), GOJINN_BENCH_CONNECTIONS (default 32), GOJINN_BENCH_ROUNDS (off/on
//! pairs, default 2), GOJINN_BENCH_DURABILITY (`sync` or `async`: `audit.durability` of both).

#[path = "../tests/support/otlp.rs"]
#[allow(dead_code)]
mod otlp;
mod support;

use anyhow::Context;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{ChildGuard, WrkResult, env_number};

const SCRAPE_EVERY: Duration = Duration::from_secs(1);
/// `USER_HZ`, the unit of `/proc` CPU times: 100 on Linux.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

fn main() -> anyhow::Result<()> {
    let secs = env_number("GOJINN_BENCH_SECS", 10);
    let connections = env_number("GOJINN_BENCH_CONNECTIONS", 32);
    let rounds = env_number("GOJINN_BENCH_ROUNDS", 2).max(1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    println!("building guests...");
    let guests = support::build_guests(root, &[("hello", "wasm32-wasip1")])?;
    let specs = tempfile::tempdir()?;
    support::write_specs(specs.path(), &guests.join("wasm32-wasip1/release/hello.wasm"))?;
    // The receiver and the scraper get a thread of their own, as a collector and Prometheus
    // would run elsewhere; they still share the machine with the node and wrk.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let receiver = runtime.block_on(otlp::Receiver::counting());
    let node_config = tempfile::tempdir()?;
    let config = node_config.path().join("gojinn.yaml");
    let durability = std::env::var("GOJINN_BENCH_DURABILITY").unwrap_or_else(|_| "sync".into());
    std::fs::write(&config, format!("audit: {{ durability: {durability} }}\n"))?;
    let args = ["--config", config.to_str().context("a UTF-8 temp path")?];

    println!(
        "\n== hello throughput: wrk -t2 -c{connections} -d{secs}s, observability off and on, {rounds} round(s), receipts {durability}"
    );
    let mut rows = Vec::new();
    let mut cpu = (Vec::new(), Vec::new());
    let mut spans = (0, 0);
    for _ in 0..rounds {
        let (node, addr, _data) = support::start_gojinn(specs.path(), &args, &[])?;
        let (off, cpu_off) = load(&node, &format!("http://{addr}/demo/hello"), secs, connections)?;
        drop(node);

        let before = receiver.count();
        let endpoint = receiver.endpoint();
        let env =
            [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")];
        let (node, addr, _data) = support::start_gojinn(specs.path(), &args, &env)?;
        let scraper = runtime.spawn(scrape(format!("http://{addr}/_gojinn/metrics")));
        let (on, cpu_on) = load(&node, &format!("http://{addr}/demo/hello"), secs, connections)?;
        scraper.abort();
        stop(node)?;
        spans.0 += receiver.count() - before;
        spans.1 += on.requests;
        rows.extend([("off", off), ("on", on)]);
        cpu.0.push(cpu_off);
        cpu.1.push(cpu_on);
    }
    support::print_table(&rows);
    let off = mean(rows.iter().filter(|(n, _)| *n == "off").map(|(_, r)| r.requests_per_sec));
    let on = mean(rows.iter().filter(|(n, _)| *n == "on").map(|(_, r)| r.requests_per_sec));
    let (cpu_off, cpu_on) = (mean(cpu.0.into_iter()), mean(cpu.1.into_iter()));
    println!("\n                     off          on     cost   (goal: <= 5%)");
    println!("requests/s      {off:>8.0}    {on:>8.0}   {:>5.1}%", (1.0 - on / off) * 100.0);
    println!("node CPU µs/req {cpu_off:>8.1}    {cpu_on:>8.1}   {:>5.1}%", (cpu_on / cpu_off - 1.0) * 100.0);
    println!("(on a busy machine, trust the CPU figure: other processes move it far less)");
    println!(
        "spans received: {} for {} requests, {:.2} per request (request, instantiate, host.log, and the \
         receipts' batched audit.append; a span is dropped, never waited for, when the export queue is full)",
        spans.0,
        spans.1,
        spans.0 as f64 / spans.1.max(1) as f64
    );

    println!("\n== in-process, per request");
    let metrics_ns = metrics_cost();
    println!(
        "recording metrics:          {metrics_ns:>6.0} ns   ({:.2}% of a core at {off:.0} requests/s)",
        metrics_ns * off / 1e7
    );
    println!("spans, no exporter (info):  {:>6.0} ns", spans_off_cost());
    Ok(())
}

fn mean(figures: impl Iterator<Item = f64>) -> f64 {
    let figures: Vec<f64> = figures.collect();
    figures.iter().sum::<f64>() / figures.len().max(1) as f64
}

/// Runs wrk against `url`; returns its figures and the CPU time `node` used per request, in µs.
fn load(node: &ChildGuard, url: &str, secs: u64, connections: u64) -> anyhow::Result<(WrkResult, f64)> {
    let before = cpu_seconds(node)?;
    let result = support::wrk(url, secs, connections)?;
    let used = cpu_seconds(node)? - before;
    let per_request = used * 1e6 / result.requests.max(1) as f64;
    Ok((result, per_request))
}

/// The CPU time (user and system) a process has used so far, from `/proc/PID/stat` (Linux).
fn cpu_seconds(process: &ChildGuard) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", process.0.id()))?;
    // After the command name (in parentheses, maybe with spaces) come the fields from the third:
    // utime and stime are the 14th and 15th, in clock ticks.
    let fields: Vec<&str> = stat.rsplit_once(')').context("a stat line")?.1.split_whitespace().collect();
    let ticks = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / CLOCK_TICKS_PER_SEC)
}

/// Scrapes `url` every [`SCRAPE_EVERY`] until aborted, as Prometheus would.
async fn scrape(url: String) {
    let client = reqwest::Client::new();
    let mut ticks = tokio::time::interval(SCRAPE_EVERY);
    loop {
        ticks.tick().await;
        if let Ok(response) = client.get(&url).send().await {
            let _ = response.bytes().await;
        }
    }
}

/// Stops a node with SIGINT, so that it exports the spans it still holds, and waits for it.
fn stop(mut node: ChildGuard) -> anyhow::Result<()> {
    Command::new("kill").args(["-INT", &node.0.id().to_string()]).status().context("run kill")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.0.try_wait()?.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Nanoseconds to record one request's metrics: its admission wait, an instance, the answer.
fn metrics_cost() -> f64 {
    let metrics = gojinn::metrics::Metrics::new();
    let id = Arc::new(gojinn::spec::FunctionId {
        tenant: gojinn::spec::Name::new("demo").unwrap(),
        function: gojinn::spec::Name::new("hello").unwrap(),
    });
    let rounds = 1_000_000;
    let started = Instant::now();
    for i in 0..rounds {
        let took = Duration::from_nanos(i % 100_000);
        metrics.admitted(&id, took);
        drop(metrics.instance(took));
        metrics.request(Some(&id), 200, took);
    }
    started.elapsed().as_nanos() as f64 / rounds as f64
}

/// Nanoseconds for one request's spans (request, instantiate, a host call), recorded and
/// entered as the edge does, under the subscriber `gojinn serve` installs without an exporter.
fn spans_off_cost() -> f64 {
    let (dispatch, _telemetry) = gojinn::telemetry::subscriber(None).expect("subscriber");
    let _default = tracing::dispatcher::set_default(&dispatch);
    let (parts, ()) = http::Request::get("/demo/hello").body(()).unwrap().into_parts();
    let id = gojinn::spec::FunctionId {
        tenant: gojinn::spec::Name::new("demo").unwrap(),
        function: gojinn::spec::Name::new("hello").unwrap(),
    };
    let mut response = http::Response::new(());
    let rounds = 1_000_000;
    let started = Instant::now();
    for _ in 0..rounds {
        let request = gojinn::telemetry::spans::request(&parts);
        let _entered = request.enter();
        gojinn::telemetry::spans::record_function(&request, &parts.method, "/demo/hello/{*rest}", &id, "rev");
        drop(gojinn::telemetry::spans::instantiate().entered());
        drop(gojinn::telemetry::spans::host_call("host_log").entered());
        gojinn::telemetry::spans::record_response(&request, &mut response);
    }
    started.elapsed().as_nanos() as f64 / rounds as f64
}
