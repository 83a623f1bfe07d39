//! Rows of the failure table (README "Cluster modes and failures"), each on real processes (a
//! 3-node nats-server cluster with two gojinn nodes sharing it, or a `gojinn` child process),
//! printing what it observed (run with `--nocapture` to read it).

use crate::outage::start;
use crate::support::api::{Api, ChildNode};
use crate::support::nats::NatsCluster;
use crate::support::{Node, SpecDir, error_code, specs};
use futures::StreamExt;
use gojinn::config::Durability;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The longest a call that needs NATS may take to be refused without quorum: its function's
/// timeout (1 s, the default) and, with a sync receipt, two attempts to append it, each bounded
/// by the nodes' `state.timeout` (`outage::BOUND`, 2 s; the second failure in a row refuses the call and the ones after it at once).
const CALL_BOUND: Duration = Duration::from_secs(6);
/// How long service may take to resume once quorum is back (stream leaders elected again).
const RESUME_WITHIN: Duration = Duration::from_secs(60);

/// Tenant acme in CP mode (replicas 3): hello, and `state` (the guest-state test guest) with
/// every KV grant.
fn cp_specs() -> SpecDir {
    let dir = SpecDir::new();
    dir.module("hello").module("guest-state");
    let functions = [
        ("hello", "hello", ""),
        ("state", "guest-state", r#"grants: { kv: { read: ["*"], write: ["*"] } }"#),
    ];
    dir.write("specs.yaml", &specs("acme", "replicas: 3", &functions));
    dir
}

/// Runs `state` on `node` with `ops`: the HTTP status, the guest's answer and how long it took.
async fn state(node: &Node, ops: Value) -> (u16, Value, Duration) {
    let started = Instant::now();
    let response = node.post("/acme/state", ops.to_string()).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null), started.elapsed())
}

fn kv_set(value: &str) -> Value {
    json!({ "op": "kv_set", "key": "k", "value": value })
}

fn kv_get() -> Value {
    json!({ "op": "kv_get", "key": "k" })
}

/// A state call refused for want of the backend, one of two ways: a node still connected to a
/// server without quorum waits until the function's timeout (1 s, the default) passes, and the
/// call is 503 `unavailable` naming the host call (`host_call`) rather than a 504; a node whose
/// server was killed is reconnecting, and its guest is told `unavailable` (-5) at once, which
/// the test guest reports in its answer. With a sync receipt the call may instead be refused
/// for its receipt (503 `unavailable` too).
fn refused_unavailable(status: u16, answer: &Value, host_call: &str) {
    match status {
        503 => {
            assert_eq!(answer["code"], "unavailable", "{answer}");
            let message = answer["message"].as_str().unwrap_or_default();
            assert!(message.contains(host_call) || message.contains("receipt"), "{answer}");
        }
        _ => assert_eq!((status, answer[0]["error"].as_str()), (200, Some("unavailable")), "{answer}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_without_quorum_refuses_writes_in_bounded_time_and_resumes_when_it_returns() {
    let mut cluster = NatsCluster::start().await;
    let seeds = cluster.seeds();
    let dir = cp_specs();
    let a = start(dir.path(), &seeds, "node-a", Durability::Async).await;
    let b = start(dir.path(), &seeds, "node-b", Durability::Sync).await;
    let (status, answer, _) = state(&a, kv_set("v1")).await;
    assert_eq!((status, answer), (200, json!([{ "ok": null }])), "a write with quorum");
    let (status, answer, _) = state(&b, kv_get()).await;
    assert_eq!((status, answer), (200, json!([{ "ok": "v1" }])), "the other node reads it");

    println!("2 of 3 nats-servers down (CP, replicas 3):");
    cluster.kill(1);
    cluster.kill(2);
    let (status, answer, took) = state(&a, kv_set("v2")).await;
    println!("  KV write:            {status} {answer} in {took:?}");
    refused_unavailable(status, &answer, "host_kv_set");
    assert!(took < CALL_BOUND, "a write without quorum took {took:?}");
    let (status, answer, took) = state(&b, kv_get()).await;
    println!("  KV read:             {status} {answer} in {took:?}");
    refused_unavailable(status, &answer, "host_kv_get");
    assert!(took < CALL_BOUND, "a read without quorum took {took:?}");

    let started = Instant::now();
    let enqueued = Api::of(&a).call_async("/acme/hello", &[], "").await;
    let took = started.elapsed();
    let (status, code, message) = error_code(enqueued).await;
    println!("  enqueue:             {status} {code} in {took:?}: {message}");
    assert_eq!((status, code.as_str()), (503, "unavailable"));
    assert!(took < CALL_BOUND, "an enqueue without quorum took {took:?}");

    let started = Instant::now();
    let hello = a.get("/acme/hello").await.status().as_u16();
    println!("  call, async receipt: {hello} in {:?}", started.elapsed());
    assert_eq!(hello, 200, "a function without state keeps answering; its receipt waits in the queue");
    let started = Instant::now();
    let refused = b.get("/acme/hello").await;
    let took = started.elapsed();
    let (status, code, _) = error_code(refused).await;
    println!("  call, sync receipt:  {status} {code} in {took:?}");
    assert_eq!((status, code.as_str()), (503, "unavailable"), "a sync receipt needs the audit stream");
    assert!(took < CALL_BOUND, "a call with a sync receipt took {took:?} to be refused");

    println!("the servers return:");
    let returned = Instant::now();
    cluster.restart(1).await;
    cluster.restart(2).await;
    let deadline = Instant::now() + RESUME_WITHIN;
    let value = loop {
        let (status, answer, _) = state(&b, kv_get()).await;
        if status == 200 && answer[0].get("ok").is_some() {
            break answer[0]["ok"].clone();
        }
        assert!(Instant::now() < deadline, "reads did not resume within {RESUME_WITHIN:?}: {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("  reads resume after {:?}; k = {value}", returned.elapsed());
    // v1 was acknowledged and is kept unless overwritten; the refused v2 may have reached the
    // stream leader's log before quorum was lost, and then it is committed once quorum returns
    // (the 503 says so): either, never anything else.
    assert!(value == json!("v1") || value == json!("v2"), "k = {value}");
    let deadline = Instant::now() + RESUME_WITHIN;
    loop {
        let (status, answer, _) = state(&a, kv_set("v3")).await;
        if (status, &answer) == (200, &json!([{ "ok": null }])) {
            break;
        }
        assert!(Instant::now() < deadline, "writes did not resume within {RESUME_WITHIN:?}: {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("  writes resume after {:?}", returned.elapsed());
    let (status, answer, _) = state(&b, kv_get()).await;
    assert_eq!((status, answer), (200, json!([{ "ok": "v3" }])));
    assert_eq!(b.get("/acme/hello").await.status(), 200, "sync receipts again");
}

/// A node's resident memory after 1,000 calls of a guest that allocates until its memory cap,
/// and before them (after as many calls to warm up): each call ends at the cap, and what the
/// guest took is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaking_guest_is_stopped_at_its_cap_every_time_and_the_nodes_memory_stays_flat() {
    const CALLS: usize = 1000;
    const AT_ONCE: usize = 8;
    let dir = SpecDir::new();
    dir.module("guest-membomb");
    dir.write(
        "specs.yaml",
        &specs("acme", "", &[("bomb", "guest-membomb", "limits: { memory: 16Mi, timeout: 5s }")]),
    );
    let data = tempfile::tempdir().unwrap();
    let node = ChildNode::start(dir.path(), data.path(), None).await;
    let url = format!("{}/acme/bomb", node.api.base);
    let run = |calls: usize| {
        let (http, url) = (node.api.http.clone(), url.clone());
        async move {
            let mut statuses = std::collections::BTreeMap::<String, usize>::new();
            let mut batches = futures::stream::iter(0..calls)
                .map(|_| {
                    let request = http.get(&url).send();
                    async move {
                        let response = request.await.expect("an answer");
                        let status = response.status().as_u16();
                        let body: Value = response.json().await.unwrap_or_default();
                        format!("{status} {}", body["code"].as_str().unwrap_or_default())
                    }
                })
                .buffer_unordered(AT_ONCE);
            while let Some(outcome) = batches.next().await {
                *statuses.entry(outcome).or_default() += 1;
            }
            statuses
        }
    };
    // As many calls to warm up as are measured: the pool's slots and the allocator's arenas
    // reach their working size first, so what is left to grow would be a leak.
    run(CALLS).await;
    let before = node.resident_bytes();
    let outcomes = run(CALLS).await;
    let after = node.resident_bytes();
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    println!(
        "a guest leaking to its 16 MiB cap, {CALLS} calls ({AT_ONCE} at once): {outcomes:?}; node RSS {:.1} MiB before, {:.1} MiB after ({:+.1}%)",
        mib(before),
        mib(after),
        (after as f64 / before as f64 - 1.0) * 100.0
    );
    assert_eq!(outcomes, [("500 memory_exhausted".to_owned(), CALLS)].into(), "each call stopped at its cap");
    assert!(after <= before + before / 10, "RSS grew from {before} to {after} bytes");
}

/// Two `gojinn` nodes on a 3-node nats-server cluster sharing one audit key; one of them is
/// killed (SIGKILL) while 2,000 queued jobs run: every job succeeds on the survivor (those cut
/// by the kill after a redelivery), and the tenant's audit chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_a_flood_of_jobs_loses_none_and_the_chain_verifies() {
    const JOBS: usize = 2000;
    let cluster = NatsCluster::start().await;
    let dir = SpecDir::new();
    dir.module("guest-slow");
    let function = "limits: { timeout: 5s }\njobs: { ackWait: 2s, maxDeliver: 5, backoff: [50ms] }";
    dir.write("specs.yaml", &specs("acme", "", &[("slow", "guest-slow", function)]));
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("audit.key");
    std::fs::write(&key, "7".repeat(64)).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let start = |name: &'static str| {
        let (data, seeds, key) = (tempfile::tempdir().unwrap(), cluster.seeds(), key.clone());
        let specs = dir.path().to_path_buf();
        async move {
            let config = format!("audit: {{ keyFile: {key:?}, node: {name} }}\n");
            let node =
                ChildNode::start_configured(&specs, data.path(), Some(&seeds), &[], Some(&config)).await;
            (node, data)
        }
    };
    let (a, _a_data) = start("node-a").await;
    let (b, _b_data) = start("node-b").await;

    // A tenth of the jobs, done by both nodes; then the rest queued through node b while node a
    // is killed, running some of them.
    let mut ids = Vec::with_capacity(JOBS);
    for _ in 0..JOBS / 10 {
        ids.push(b.api.enqueue("/acme/slow?sleep=20", &[], "").await);
    }
    b.api.wait_for(&ids[JOBS / 10 - 1], "succeeded").await;
    let api = Api { base: b.api.base.clone(), token: b.api.token.clone(), http: b.api.http.clone() };
    let queued = Arc::new(AtomicUsize::new(0));
    let counted = queued.clone();
    let flood = tokio::spawn(async move {
        let mut ids = Vec::new();
        for _ in JOBS / 10..JOBS {
            ids.push(api.enqueue("/acme/slow?sleep=100", &[], "").await);
            counted.fetch_add(1, Ordering::Relaxed);
        }
        ids
    });
    // Jobs of 100 ms, 32 at once per node: with hundreds queued, node a runs its share.
    while queued.load(Ordering::Relaxed) < JOBS / 4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed = Instant::now();
    a.kill_9();
    ids.extend(flood.await.unwrap());

    let mut retried = 0;
    for id in &ids {
        let job = b.api.wait_for(id, "succeeded").await;
        if job["attempts"].as_u64() > Some(1) {
            retried += 1;
        }
    }
    println!(
        "a node killed during {JOBS} jobs: all succeeded on the survivor {:?} after the kill, {retried} after more than one attempt",
        killed.elapsed()
    );
    assert!(b.terminate().await.success(), "the survivor stops cleanly, its receipts appended");
    let (code, report) = crate::receipts::verify_nats(&cluster.url(), &key);
    println!("  gojinn audit verify: exit {code}, {report}");
    assert_eq!(code, 0, "{report:#}");
    assert!(report["checked"].as_u64() >= Some(JOBS as u64), "a receipt for every job: {report:#}");
    assert!(retried > 0, "node a ran jobs when it was killed: they came back as further attempts");
}

/// A receipt forged into a tenant's audit stream on NATS (by whoever can publish to it): `gojinn
/// audit verify --nats` fails and names it; one deleted from it: JetStream refuses, for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_forged_into_the_nats_audit_stream_is_named_and_one_cannot_be_deleted() {
    let nats = crate::support::nats::NatsServer::start().await;
    let dir = SpecDir::new();
    dir.module("hello");
    dir.write("specs.yaml", &specs("acme", "", &[("hello", "hello", "")]));
    let node = start(dir.path(), &nats.url(), "node-a", Durability::Sync).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(crate::receipts::call(&node, "/acme/hello").await.1);
    }
    let data = crate::receipts::stop(node).await;
    let key = data.path().join("audit.key");
    let (code, report) = crate::receipts::verify_nats(&nats.url(), &key);
    assert_eq!((code, report["checked"].as_u64()), (0, Some(4)), "{report:#}");

    let jetstream = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let tenant = gojinn::spec::Name::new("acme").unwrap();
    let stream = jetstream.get_stream(gojinn::state::names::audit_stream(&tenant)).await.unwrap();
    // Sync receipts, one call at a time: message n is receipt n, then the checkpoint.
    let second = stream.get_raw_message(2).await.unwrap().payload;
    let forged =
        String::from_utf8(second.to_vec()).unwrap().replace("\"http_status\":200", "\"http_status\":500");
    assert_ne!(forged.as_bytes(), &second[..], "the receipt names its status");
    jetstream
        .publish(gojinn::state::names::audit_subject(&tenant), forged.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let (code, report) = crate::receipts::verify_nats(&nats.url(), &key);
    println!("a receipt forged into the audit stream: verify exits {code}: {}", report["first_bad"]);
    assert_eq!(
        (code, report["first_bad"]["subject"]["id"].as_str()),
        (1, Some(ids[1].as_str())),
        "{report:#}"
    );

    // Deleting is refused by the stream itself (`deny_delete`), and NATS will not lift that.
    let refused = stream.delete_message(3).await;
    println!("deleting a receipt from the audit stream: {refused:?}");
    assert!(refused.is_err(), "the audit stream refuses deletes");
    let mut config = stream.cached_info().config.clone();
    config.deny_delete = false;
    let lifted = jetstream.update_stream(config).await;
    println!("allowing deletes on the audit stream: {:?}", lifted.as_ref().map(drop));
    assert!(lifted.is_err(), "deny_delete cannot be lifted");
    let (code, _) = crate::receipts::verify_nats(&nats.url(), &key);
    assert_eq!(code, 1, "the forged receipt is still found");
}

/// A guest's infinite loop on every node at once: two `gojinn` nodes on a 3-node nats-server
/// cluster, each with a call spinning in it, called again as soon as it ends. Every spinning
/// call is stopped at its function's deadline with 504 `timeout`, and hello keeps answering on
/// both nodes meanwhile. Hello's latency with and without the loops is printed; whether its p99 stays within 2x is measured by the cluster bench
/// (`cargo bench --bench cluster`), not asserted on a machine shared with the other tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_on_every_node_is_stopped_at_its_deadline_and_hello_keeps_answering() {
    const DEADLINE: Duration = Duration::from_secs(2);
    const HELLOS: usize = 200;
    let cluster = NatsCluster::start().await;
    let dir = SpecDir::new();
    dir.module("hello").module("guest-loop");
    let functions = [("hello", "hello", ""), ("spin", "guest-loop", "limits: { timeout: 2s }")];
    dir.write("specs.yaml", &specs("acme", "", &functions));
    let seeds = cluster.seeds();
    let (a_data, b_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |name: &str, data: &std::path::Path| {
        let config = format!("audit: {{ node: {name} }}\n");
        let (specs, data, seeds) = (dir.path().to_path_buf(), data.to_path_buf(), seeds.clone());
        async move { ChildNode::start_configured(&specs, &data, Some(&seeds), &[], Some(&config)).await }
    };
    let nodes = [start("node-a", a_data.path()).await, start("node-b", b_data.path()).await];
    let http = reqwest::Client::new();
    let hello = |node: &ChildNode| {
        let request = http.get(format!("{}/acme/hello", node.api.base)).send();
        async move {
            let started = Instant::now();
            let status = request.await.expect("hello answers").status().as_u16();
            (status, started.elapsed())
        }
    };
    let latencies = |samples: &mut Vec<Duration>| {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
        (at(0.5), at(0.99))
    };
    // Both nodes warm (the first call compiles), then hello alone.
    for node in &nodes {
        let response = http.get(format!("{}/acme/hello", node.api.base)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{}\n{}", response.text().await.unwrap(), node.log());
    }
    let mut quiet = Vec::with_capacity(HELLOS);
    for i in 0..HELLOS {
        let (status, took) = hello(&nodes[i % 2]).await;
        assert_eq!(status, 200);
        quiet.push(took);
    }

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinners: Vec<_> = nodes
        .iter()
        .map(|node| format!("{}/acme/spin", node.api.base))
        .map(|url| {
            let (http, stop) = (http.clone(), stop.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let response = http.get(&url).send().await.expect("spin answers");
                    let (status, code, _) = error_code(response).await;
                    outcomes.push((status, code, started.elapsed()));
                }
                outcomes
            })
        })
        .collect();
    for node in &nodes {
        node.wait_active_instances(1).await;
    }
    let mut spinning = Vec::with_capacity(HELLOS);
    for i in 0..HELLOS {
        let (status, took) = hello(&nodes[i % 2]).await;
        assert_eq!(status, 200, "hello answers while every node spins");
        spinning.push(took);
    }
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for spinner in spinners {
        outcomes.extend(spinner.await.unwrap());
    }

    let ((quiet_p50, quiet_p99), (spinning_p50, spinning_p99)) =
        (latencies(&mut quiet), latencies(&mut spinning));
    let longest = outcomes.iter().map(|(_, _, took)| *took).max().unwrap();
    println!(
        "a loop on every node (a call spinning on each, {DEADLINE:?} deadline): {} spinning calls, \
         the longest {longest:?}; hello through both nodes p50 {quiet_p50:.2} ms, p99 {quiet_p99:.2} ms alone, \
         p50 {spinning_p50:.2} ms, p99 {spinning_p99:.2} ms ({:.2}x) beside the loops",
        outcomes.len(),
        spinning_p99 / quiet_p99
    );
    for (status, code, took) in &outcomes {
        assert_eq!((*status, code.as_str()), (504, "timeout"), "a loop ends at its deadline");
        assert!(*took >= DEADLINE, "stopped after {took:?}, before its deadline");
        assert!(*took < 3 * DEADLINE, "a loop ran on for {took:?} past its deadline of {DEADLINE:?}");
    }
}
