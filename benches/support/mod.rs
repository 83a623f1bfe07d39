//! What the benchmark harnesses share: building the guests, a spec directory serving `hello`,
//! the `gojinn` binary as a child process, and wrk runs parsed into figures.

#![allow(dead_code)]

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const HELLO: &str = "Hello from Gojinn!";

pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Builds `(package, target triple)` guests without debug info, as an operator would deploy
/// them; returns their target dir.
pub fn build_guests(root: &Path, guests: &[(&str, &str)]) -> anyhow::Result<PathBuf> {
    let target = root.join("target/guests");
    for (package, triple) in guests {
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

/// A spec directory serving the hello example as `demo/hello`, with room for load.
pub fn write_specs(dir: &Path, hello: &Path) -> anyhow::Result<()> {
    std::fs::copy(hello, dir.join("hello.wasm"))?;
    std::fs::write(
        dir.join("specs.yaml"),
        "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: demo }\nspec: { quotas: { maxConcurrency: 256, maxQueue: 4096 } }\n---\n\
         apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: { name: hello, tenant: demo }\n\
         spec:\n  module: { path: hello.wasm }\n  limits: { memory: 32Mi, timeout: 1s, maxConcurrency: 256, maxQueue: 4096 }\n",
    )?;
    Ok(())
}

/// Starts the `gojinn` binary serving `specs` with the extra arguments `args` and environment
/// `env`; returns once it is ready, with its address. The process is killed when the guard drops.
pub fn start_gojinn(
    specs: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<(ChildGuard, SocketAddr, tempfile::TempDir)> {
    let addr = free_port()?;
    let data = tempfile::tempdir()?;
    let child = Command::new(env!("CARGO_BIN_EXE_gojinn"))
        .args(["serve", "--no-watch", "--listen", &addr.to_string(), "--specs"])
        .arg(specs)
        .arg("--data-dir")
        .arg(data.path())
        .args(args)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .spawn()
        .context("start gojinn")?;
    let guard = ChildGuard(child);
    wait_until_up(&format!("http://{addr}/_gojinn/ready"))?;
    Ok((guard, addr, data))
}

pub struct WrkResult {
    /// Requests answered in the whole run.
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

pub fn wrk(url: &str, secs: u64, connections: u64) -> anyhow::Result<WrkResult> {
    wrk_threads(url, secs, connections, 2)
}

/// [`wrk`] with `threads` threads of its own.
pub fn wrk_threads(url: &str, secs: u64, connections: u64, threads: u64) -> anyhow::Result<WrkResult> {
    let output = Command::new("wrk")
        .args([&format!("-t{threads}"), &format!("-c{connections}"), &format!("-d{secs}s"), "--latency", url])
        .output()
        .context("run wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let number_after = |label: &str| -> Option<&str> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|rest| rest.split_whitespace().next().unwrap_or(""))
    };
    let requests_per_sec = number_after("Requests/sec:").context("wrk printed no Requests/sec")?.parse()?;
    // `  123456 requests in 10.00s, 15.20MB read`
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .context("wrk printed no request count")?
        .0
        .parse()?;
    let errors = text
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .flat_map(|l| l.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse::<u64>().ok()))
        .sum();
    Ok(WrkResult {
        requests,
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

/// Prints one row per run: requests/s, p50, p99 and errors.
pub fn print_table(rows: &[(&str, WrkResult)]) {
    println!("\n{:<16} {:>12} {:>10} {:>10} {:>8}", "server", "requests/s", "p50 ms", "p99 ms", "errors");
    for (name, r) in rows {
        println!(
            "{name:<16} {:>12.0} {:>10.3} {:>10.3} {:>8}",
            r.requests_per_sec, r.p50_ms, r.p99_ms, r.errors
        );
    }
}

pub fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Polls `url` until it answers 2xx (a server compiling its modules may take a while).
pub fn wait_until_up(url: &str) -> anyhow::Result<()> {
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

/// Kills the child process when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Provisions `count` fresh tenants with `replicas` concurrently on `state`; per-tenant p50 and
/// p99 and the total, in milliseconds.
pub async fn provision_many(
    state: &gojinn::state::State,
    count: usize,
    replicas: u8,
) -> anyhow::Result<(f64, f64, f64)> {
    use gojinn::state::TenantResources;
    let run = rand::random::<u32>();
    let started = Instant::now();
    let handles: Vec<_> = (0..count)
        .map(|i| {
            let provisioner = state.provisioner.clone();
            tokio::spawn(async move {
                let name = gojinn::spec::Name::new(&format!("t{run:x}-{i}")).map_err(anyhow::Error::msg)?;
                let began = Instant::now();
                let tenant = TenantResources { name, replicas, kv_max_bytes: None, kv_max_keys: None };
                provisioner.ensure_tenant(&tenant).await?;
                anyhow::Ok(began.elapsed())
            })
        })
        .collect();
    let mut times: Vec<Duration> = Vec::with_capacity(count);
    for handle in handles {
        times.push(handle.await??);
    }
    let total = started.elapsed();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok((ms(times[count / 2]), ms(times[count * 99 / 100]), ms(total)))
}
