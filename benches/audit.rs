//! Receipt benchmarks. Prints figures; asserts nothing.
//!
//! 1. Sealing: receipts signed and chained per second (the recorder's appender does this, one
//!    receipt after the other).
//! 2. Verification: receipts per second that `gojinn audit verify` checks from the stored bytes
//!    of a log (decode, signature, hash, chain), with one receipt per record (a quiet node) and
//!    with batches of 64 (a busy one). Goal: 200,000 receipts/s or more.
//!
//! Receipts per second is what a verification took on the wall clock; per CPU-second divides by
//! the CPU time it used on all threads, which is what to compare on a machine shared with other
//! work.
//!
//! Run: `cargo bench --bench audit`. Settings: GOJINN_BENCH_RECEIPTS (default 200000).

use bytes::Bytes;
use gojinn::audit::{
    Chains, Keyring, MasterKey, Receipt, ReceiptDraft, Record, Trigger, Window, new_id, verify,
};
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TENANT: &str = "acme";
const NODES: [&str; 2] = ["node-a", "node-b"];

fn main() {
    let count: usize =
        std::env::var("GOJINN_BENCH_RECEIPTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let keys = Keyring::new(MasterKey::from_bytes(vec![7; 32]), vec![MasterKey::from_bytes(vec![6; 32])]);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("== receipts: {count}, {} chains, {threads} hardware threads", NODES.len());

    let mut chains: Vec<Chains> =
        NODES.iter().map(|node| Chains::new((*node).into(), keys.clone())).collect();
    let start = Instant::now();
    let receipts: Vec<Receipt> =
        (0..count).map(|i| chains[i % NODES.len()].seal(new_id(TENANT), draft(i as u64))).collect();
    let sealed = start.elapsed();
    println!("seal              {:>10.0} receipts/s", count as f64 / sealed.as_secs_f64());

    for batch in [1, 64] {
        let records = encode(&receipts, batch);
        let bytes: usize = records.iter().map(Bytes::len).sum();
        let (start, cpu) = (Instant::now(), cpu_seconds());
        let verdict = verify(&keys, TENANT, &records, Window::ALL);
        let (took, cpu) = (start.elapsed(), cpu_seconds() - cpu);
        assert_eq!((verdict.checked, &verdict.first_bad), (count, &None), "the log verifies");
        println!(
            "verify batch {batch:>3}  {:>10.0} receipts/s   {:>10.0} per CPU-second   ({:.1} MB in {:.0} ms)",
            count as f64 / took.as_secs_f64(),
            count as f64 / cpu,
            bytes as f64 / 1e6,
            took.as_secs_f64() * 1e3
        );
    }
}

/// The log as the appenders write it: each chain's receipts in batches of `batch`, the chains'
/// batches interleaved.
fn encode(receipts: &[Receipt], batch: usize) -> Vec<Bytes> {
    let per_chain: Vec<Vec<Receipt>> =
        NODES.iter().map(|node| receipts.iter().filter(|r| r.chain == *node).cloned().collect()).collect();
    let batches: Vec<Vec<&[Receipt]>> = per_chain.iter().map(|r| r.chunks(batch).collect()).collect();
    let longest = batches.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| batches.iter().filter_map(move |chain| chain.get(i)))
        .map(|chunk| Record::Receipts(chunk.to_vec()).encode())
        .collect()
}

/// A typical receipt: an HTTP call with a few host calls.
fn draft(n: u64) -> ReceiptDraft {
    ReceiptDraft {
        tenant: TENANT.into(),
        function: "hello".into(),
        module_sha256: "ab".repeat(32),
        revision: "cd".repeat(32),
        trigger: Trigger::Http,
        started_ms: 1_700_000_000_000 + n,
        ended_ms: 1_700_000_000_001 + n,
        status: "ok".into(),
        http_status: 200,
        memory_limit: 64 << 20,
        timeout_ms: 5000,
        cpu_limit_ms: None,
        wall_us: 200,
        cpu_us: 180,
        input_sha256: format!("{n:064x}"),
        output_sha256: format!("{:064x}", n + 1),
        host_calls: [("host_kv_get".to_owned(), 2), ("host_log".to_owned(), 1)].into(),
        attempt: 1,
        job_id: None,
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
    }
}

/// CPU time this process has used, user and system, in seconds (Linux: `/proc/self/stat`).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name, which ends with the last `)`: utime and stime are the 12th
    // and 13th, in clock ticks of 1/100 s.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
