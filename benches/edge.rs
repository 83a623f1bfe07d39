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

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HELLO: &str = "Hello from Gojinn!";

fn main() -> anyhow::Result<()> {
    let secs = env_number("GOJINN_BENCH_SECS", 10);
    let connections = env_number("GOJINN_BENCH_CONNECTIONS", 32);
    let cold_samples = env_number("GOJINN_BENCH_COLD", 5000) as usize;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    println!("building guests...");
    let guests = build_guests(root)?;
    let specs = tempfile::tempdir()?;
    write_specs(specs.path(), &guests.join("wasm32-wasip1/release/hello.wasm"))?;

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
        let addr = free_port()?;
        let data = tempfile::tempdir()?;
        let _gojinn = ChildGuard(
            Command::new(env!("CARGO_BIN_EXE_gojinn"))
                .args(["serve", "--no-watch", "--listen", &addr.to_string(), "--specs"])
                .arg(specs.path())
                .arg("--data-dir")
                .arg(data.path())
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .context("start gojinn")?,
        );
        wait_until_up(&format!("http://{addr}/_gojinn/ready"))?;
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

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Builds the hello guest (wasm32-wasip1) and the wasi:http component (wasm32-wasip2) without
/// debug info, as an operator would deploy them; returns their target dir.
fn build_guests(root: &Path) -> anyhow::Result<PathBuf> {
    let target = root.join("target/guests");
    for (package, triple) in [("hello", "wasm32-wasip1"), ("wasi-http-hello", "wasm32-wasip2")] {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root)
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env("CARGO_PROFILE_RELEASE_STRIP", "true")
            .args(["build", "--release", "--quiet", "-p", package, "--target", triple, "--target-dir"])
            .arg(&target)
            .status()?;
        if !status.success() {
            bail!("building {package} for {triple} failed (rustup target add {triple}?)");
        }
    }
    Ok(target)
}

fn write_specs(dir: &Path, hello: &Path) -> anyhow::Result<()> {
    std::fs::copy(hello, dir.join("hello.wasm"))?;
    std::fs::write(
        dir.join("specs.yaml"),
        "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: demo }\nspec: { quotas: { maxConcurrency: 256, maxQueue: 4096 } }\n---\n\
         apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: { name: hello, tenant: demo }\n\
         spec:\n  module: { path: hello.wasm }\n  limits: { memory: 32Mi, timeout: 1s, maxConcurrency: 256, maxQueue: 4096 }\n",
    )?;
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

struct WrkResult {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn wrk(url: &str, secs: u64, connections: u64) -> anyhow::Result<WrkResult> {
    let output = Command::new("wrk")
        .args(["-t2", &format!("-c{connections}"), &format!("-d{secs}s"), "--latency", url])
        .output()
        .context("run wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let number_after = |label: &str| -> Option<&str> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|rest| rest.split_whitespace().next().unwrap_or(""))
    };
    let requests_per_sec = number_after("Requests/sec:").context("wrk printed no Requests/sec")?.parse()?;
    let errors = text
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .flat_map(|l| l.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u64>().ok()))
        .sum();
    Ok(WrkResult {
        requests_per_sec,
        p50_ms: parse_ms(number_after("50%").context("no p50")?)?,
        p99_ms: parse_ms(number_after("99%").context("no p99")?)?,
        errors,
    })
}

/// wrk prints latencies as `812.00us`, `1.20ms` or `2.01s`.
fn parse_ms(text: &str) -> anyhow::Result<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e3)
    } else {
        bail!("unknown latency {text:?}")
    };
    Ok(number.parse::<f64>()? * scale)
}

fn print_table(rows: &[(&str, WrkResult)]) {
    println!("\n{:<16} {:>12} {:>10} {:>10} {:>8}", "server", "requests/s", "p50 ms", "p99 ms", "errors");
    for (name, r) in rows {
        println!(
            "{name:<16} {:>12.0} {:>10.3} {:>10.3} {:>8}",
            r.requests_per_sec, r.p50_ms, r.p99_ms, r.errors
        );
    }
    let find = |name: &str| rows.iter().find(|(n, _)| *n == name).map(|(_, r)| r.requests_per_sec);
    if let (Some(gojinn), Some(hyper)) = (find("gojinn"), find("bare hyper")) {
        println!("gojinn / bare hyper:     {:.2}x   (goal: >= 0.5x)", gojinn / hyper);
    }
    if let (Some(gojinn), Some(wasmtime)) = (find("gojinn"), find("wasmtime serve")) {
        println!("gojinn / wasmtime serve: {:.2}x   (goal: >= 1.0x)", gojinn / wasmtime);
    }
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Polls `url` until it answers 2xx (a server compiling its modules may take a while).
fn wait_until_up(url: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if client.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{url} did not come up within two minutes");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
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

/// Kills the child process when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
