//! What receipts and observability cost. Prints figures and ratios; asserts nothing.
//!
//! 1. Hello throughput with wrk against the `gojinn` binary, one node per configuration, the
//!    configurations taking turns round after round:
//!    - `off`: receipts off (`audit.enabled: false`), no OTLP endpoint (no OpenTelemetry layer
//!      at all), nobody scraping metrics: the baseline;
//!    - `receipts async` / `receipts sync`: receipts on, with `audit.durability` `async` or
//!      `sync` (the default);
//!    - `receipts+tracing async` / `receipts+tracing sync`: receipts, and every span exported
//!      over OTLP/gRPC to a receiver in this process, and `/_gojinn/metrics` scraped every
//!      second;
//!    - `receipts+tracing 1% sync`: the same with `telemetry.sampleRatio: 0.01`, head sampling
//!      as a busy production node would run it;
//!    - `receipts async 64c` / `receipts sync 64c`: receipts again with 64 connections, where
//!      sync should reach at least 70% of async's throughput (batches grow with the waiting
//!      callers).
//!
//!    Then each one's cost against `off` (goal for everything on: <= 5%), in throughput and in
//!    the node's CPU time per request (read from `/proc`; other load on the machine moves it far
//!    less than throughput), and how many spans reached the receiver.
//! 2. In-process: what recording one request's metrics costs, and what the request's spans cost
//!    with the default `RUST_LOG` and no exporter (they should be next to nothing).
//!
//! Run: `cargo bench --bench observability`. Settings (environment): GOJINN_BENCH_SECS (wrk
//! duration, default 10), GOJINN_BENCH_CONNECTIONS (default 32), GOJINN_BENCH_ROUNDS (default 2).

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

/// One node configuration measured.
struct Setup {
    name: &'static str,
    /// The node's `gojinn.yaml`.
    config: &'static str,
    /// Whether spans are exported to the receiver and metrics scraped.
    observed: bool,
    /// wrk's connections, if not GOJINN_BENCH_CONNECTIONS.
    connections: Option<u64>,
}

const SETUPS: &[Setup] = &[
    Setup { name: "off", config: "audit: { enabled: false }", observed: false, connections: None },
    Setup {
        name: "receipts async",
        config: "audit: { durability: async }",
        observed: false,
        connections: None,
    },
    Setup {
        name: "receipts sync",
        config: "audit: { durability: sync }",
        observed: false,
        connections: None,
    },
    Setup {
        name: "receipts+tracing async",
        config: "audit: { durability: async }",
        observed: true,
        connections: None,
    },
    Setup {
        name: "receipts+tracing sync",
        config: "audit: { durability: sync }",
        observed: true,
        connections: None,
    },
    Setup {
        name: "receipts+tracing 1% sync",
        config: "audit: { durability: sync }\ntelemetry: { sampleRatio: 0.01 }",
        observed: true,
        connections: None,
    },
    Setup {
        name: "receipts async 64c",
        config: "audit: { durability: async }",
        observed: false,
        connections: Some(SYNC_GOAL_CONNECTIONS),
    },
    Setup {
        name: "receipts sync 64c",
        config: "audit: { durability: sync }",
        observed: false,
        connections: Some(SYNC_GOAL_CONNECTIONS),
    },
];

/// The connections at which sync receipts should reach [`SYNC_GOAL`] of async's throughput.
const SYNC_GOAL_CONNECTIONS: u64 = 64;
const SYNC_GOAL: f64 = 0.7;

/// What the runs of one setup measured.
#[derive(Default)]
struct Measured {
    requests_per_sec: Vec<f64>,
    cpu_us_per_request: Vec<f64>,
    p99_ms: Vec<f64>,
    requests: u64,
    spans: u64,
}

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
    let configs = tempfile::tempdir()?;

    println!(
        "\n== hello throughput: wrk -t2 -c{connections} (64c: -c{SYNC_GOAL_CONNECTIONS}) -d{secs}s, {rounds} \
         round(s) of each setup"
    );
    let mut measured: Vec<Measured> = SETUPS.iter().map(|_| Measured::default()).collect();
    let mut rows = Vec::new();
    for _ in 0..rounds {
        for (setup, measured) in SETUPS.iter().zip(&mut measured) {
            let config = configs.path().join(format!("{}.yaml", setup.name.replace([' ', '+', '%'], "-")));
            std::fs::write(&config, setup.config)?;
            let args = ["--config", config.to_str().context("a UTF-8 temp path")?];
            let endpoint = receiver.endpoint();
            let env: &[(&str, &str)] = match setup.observed {
                true => {
                    &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]
                }
                false => &[],
            };
            let before = receiver.count();
            let (node, addr, _data) = support::start_gojinn(specs.path(), &args, env)?;
            let scraper =
                setup.observed.then(|| runtime.spawn(scrape(format!("http://{addr}/_gojinn/metrics"))));
            let connections = setup.connections.unwrap_or(connections);
            let (run, cpu) = load(&node, &format!("http://{addr}/demo/hello"), secs, connections)?;
            if let Some(scraper) = scraper {
                scraper.abort();
            }
            stop(node)?;
            measured.spans += receiver.count() - before;
            measured.requests += run.requests;
            measured.requests_per_sec.push(run.requests_per_sec);
            measured.cpu_us_per_request.push(cpu);
            measured.p99_ms.push(run.p99_ms);
            rows.push((setup.name, run));
        }
    }
    support::print_table(&rows);

    let baseline = (mean(&measured[0].requests_per_sec), mean(&measured[0].cpu_us_per_request));
    println!(
        "\n{:<26} {:>10} {:>7} {:>13} {:>7} {:>8} {:>10}",
        "setup", "requests/s", "cost", "CPU µs/req", "cost", "p99 ms", "spans/req"
    );
    for (setup, measured) in SETUPS.iter().zip(&measured) {
        let (rate, cpu) = (mean(&measured.requests_per_sec), mean(&measured.cpu_us_per_request));
        println!(
            "{:<26} {rate:>10.0} {:>6.1}% {cpu:>13.1} {:>6.1}% {:>8.2} {:>10.2}",
            setup.name,
            (1.0 - rate / baseline.0) * 100.0,
            (cpu / baseline.1 - 1.0) * 100.0,
            mean(&measured.p99_ms),
            measured.spans as f64 / measured.requests.max(1) as f64,
        );
    }
    println!("(cost against `off`, goal <= 5% with everything on; on a busy machine trust the CPU figure)");
    let rate_of = |name: &str| {
        SETUPS
            .iter()
            .zip(&measured)
            .find(|(setup, _)| setup.name == name)
            .map(|(_, m)| mean(&m.requests_per_sec))
    };
    if let (Some(async_rate), Some(sync_rate)) = (rate_of("receipts async 64c"), rate_of("receipts sync 64c"))
    {
        println!(
            "sync receipts at {SYNC_GOAL_CONNECTIONS} connections: {:.0}% of async's requests/s (goal >= {:.0}%)",
            sync_rate / async_rate * 100.0,
            SYNC_GOAL * 100.0
        );
    }
    println!(
        "(spans per request: request, instantiate, host.log, and the receipts' batched audit.append; \
         a span is dropped, never waited for, when the export queue is full)"
    );

    println!("\n== in-process, per request");
    let metrics_ns = metrics_cost();
    println!(
        "recording metrics:          {metrics_ns:>6.0} ns   ({:.2}% of a core at {:.0} requests/s)",
        metrics_ns * baseline.0 / 1e7,
        baseline.0
    );
    println!("spans, no exporter (info):  {:>6.0} ns", spans_off_cost());
    Ok(())
}

fn mean(figures: &[f64]) -> f64 {
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
        drop(gojinn::telemetry::spans::instantiate(true).entered());
        drop(gojinn::telemetry::spans::host_call("host_log", true).entered());
        gojinn::telemetry::spans::record_response(&request, &mut response);
    }
    started.elapsed().as_nanos() as f64 / rounds as f64
}
