//! Edge benchmarks. Prints figures and ratios; asserts nothing.
//!
//! 1. Cold start: request arrival to the guest's `_start` (the `start` entry of the
//!    `Server-Timing` header), p50 and p99 over sequential requests to the hello example.
//! 2. Hello throughput with wrk, side by side in one run: a bare hyper server built here, the
//!    `gojinn` binary serving the hello example, and `wasmtime serve` 48.0.8 serving an
//!    equivalent wasi:http component (benches/wasi-http-hello).
//!
//! Run: `cargo bench --bench edge`. Settings (environment): GOJINN_BENCH_SECS (wrk duration,
//! default 10), GOJINN_BENCH_CONNECTIONS (default 32), GOJINN_BENCH_COLD (cold-start samples,
//! default 5000), GOJINN_BENCH_WASMTIME (path of a wasmtime 48.0.8 binary; default `wasmtime` on
//! PATH or /opt/wasmtime-48/bin/wasmtime).

mod support;

use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use support::{ChildGuard, HELLO, env_number, free_port, wait_until_up, wrk};

fn main() -> anyhow::Result<()> {
    let secs = env_number("GOJINN_BENCH_SECS", 10);
    let connections = env_number("GOJINN_BENCH_CONNECTIONS", 32);
    let cold_samples = env_number("GOJINN_BENCH_COLD", 5000) as usize;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    println!("building guests...");
    let guests =
        support::build_guests(root, &[("hello", "wasm32-wasip1"), ("wasi-http-hello", "wasm32-wasip2")])?;
    let specs = tempfile::tempdir()?;
    support::write_specs(specs.path(), &guests.join("wasm32-wasip1/release/hello.wasm"))?;

    println!("\n== cold start: request arrival to _start (hello, {cold_samples} sequential requests)");
    cold_start(specs.path(), cold_samples)?;

    println!("\n== hello throughput: wrk -t2 -c{connections} -d{secs}s, one server at a time");
    let mut rows = Vec::new();
    {
        let addr = free_port()?;
        let server = BareHyper::start(addr)?;
        rows.push(("bare hyper", wrk(&format!("http://{addr}/"), secs, connections)?));
        drop(server);
    }
    {
        let (_gojinn, addr, _data) = support::start_gojinn(specs.path(), &[], &[])?;
        rows.push(("gojinn", wrk(&format!("http://{addr}/demo/hello"), secs, connections)?));
    }
    match wasmtime_binary() {
        Some(wasmtime) => {
            let addr = free_port()?;
            let _serve = ChildGuard(
                Command::new(&wasmtime)
                    .args(["serve", "-Scli", "--addr", &addr.to_string()])
                    .arg(guests.join("wasm32-wasip2/release/wasi_http_hello.wasm"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("start wasmtime serve")?,
            );
            wait_until_up(&format!("http://{addr}/"))?;
            rows.push(("wasmtime serve", wrk(&format!("http://{addr}/"), secs, connections)?));
        }
        None => println!(
            "wasmtime 48.0.8 not found: set GOJINN_BENCH_WASMTIME (cargo install wasmtime-cli --version 48.0.8)"
        ),
    }
    print_table(&rows);
    Ok(())
}

/// Sequential requests to an in-process node; reads `start;dur=` from each Server-Timing header.
fn cold_start(specs: &Path, samples: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let data = tempfile::tempdir()?;
        let mut config = gojinn::config::NodeConfig {
            listen: "127.0.0.1:0".parse()?,
            data_dir: data.path().to_path_buf(),
            specs: specs.to_path_buf(),
            watch: false,
            ..Default::default()
        };
        config.runtime.max_instances = 64;
        let server = gojinn::server::Server::start(config).await?;
        let url = format!("http://{}/demo/hello", server.addr());
        let client = reqwest::Client::new();
        let mut starts = Vec::with_capacity(samples);
        let mut totals = Vec::with_capacity(samples);
        for i in 0..samples + samples / 10 {
            let sent = Instant::now();
            let response = client.get(&url).send().await?;
            let timing =
                response.headers().get("server-timing").context("no server-timing")?.to_str()?.to_owned();
            let body = response.text().await?;
            let round_trip = sent.elapsed();
            anyhow::ensure!(body == HELLO, "unexpected body {body:?}");
            if i >= samples / 10 {
                starts.push(parse_start_ms(&timing)?);
                totals.push(round_trip.as_secs_f64() * 1e3);
            }
        }
        let (p50, p99) = percentiles(&mut starts);
        println!(
            "arrival to _start:   p50 {:>7.1} us   p99 {:>7.1} us   (goal: p50 <= 50 us, p99 <= 200 us)",
            p50 * 1e3,
            p99 * 1e3
        );
        let (p50, p99) = percentiles(&mut totals);
        println!(
            "client round trip:   p50 {:>7.1} us   p99 {:>7.1} us   (whole request, guest run included)",
            p50 * 1e3,
            p99 * 1e3
        );
        server.stop().await?;
        Ok(())
    })
}

fn parse_start_ms(timing: &str) -> anyhow::Result<f64> {
    timing
        .split(',')
        .find_map(|entry| entry.trim().strip_prefix("start;dur="))
        .context("no start entry")?
        .parse()
        .context("bad start duration")
}

fn percentiles(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() as f64 * q) as usize).min(values.len() - 1)];
    (at(0.50), at(0.99))
}

fn print_table(rows: &[(&str, support::WrkResult)]) {
    support::print_table(rows);
    let find = |name: &str| rows.iter().find(|(n, _)| *n == name).map(|(_, r)| r.requests_per_sec);
    if let (Some(gojinn), Some(hyper)) = (find("gojinn"), find("bare hyper")) {
        println!("gojinn / bare hyper:     {:.2}x   (goal: >= 0.5x)", gojinn / hyper);
    }
    if let (Some(gojinn), Some(wasmtime)) = (find("gojinn"), find("wasmtime serve")) {
        println!("gojinn / wasmtime serve: {:.2}x   (goal: >= 1.0x)", gojinn / wasmtime);
    }
}

fn wasmtime_binary() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("GOJINN_BENCH_WASMTIME").map(PathBuf::from),
        Some(PathBuf::from("wasmtime")),
        Some(PathBuf::from("/opt/wasmtime-48/bin/wasmtime")),
    ];
    candidates.into_iter().flatten().find(|path| {
        Command::new(path)
            .arg("--version")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("48.0.8"))
    })
}

/// A bare hyper HTTP/1 server answering the hello text, on its own runtime.
struct BareHyper {
    runtime: Option<tokio::runtime::Runtime>,
}

impl BareHyper {
    fn start(addr: SocketAddr) -> anyhow::Result<Self> {
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;
        let runtime = tokio::runtime::Runtime::new()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind(addr))?;
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                tokio::spawn(async move {
                    let service = service_fn(|_request| async {
                        let mut response = hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from_static(HELLO.as_bytes()),
                        ));
                        response
                            .headers_mut()
                            .insert("content-type", http::HeaderValue::from_static("text/plain"));
                        Ok::<_, std::convert::Infallible>(response)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { runtime: Some(runtime) })
    }
}

impl Drop for BareHyper {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
