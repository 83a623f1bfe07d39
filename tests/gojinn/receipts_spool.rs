//! Async receipts of a node cut off from NATS survive a SIGKILL: they wait in the node's spool on
//! its disk, and once nats-server and the node are back, every receipt answered is in the
//! tenant's audit log (NATS, replicas 1), `gojinn audit verify --nats` passes, and the spool is
//! gone.

use crate::receipts::{RECEIPT, verify_nats};
use crate::support::api::{ChildNode, WITHIN};
use crate::support::nats::NatsServer;
use crate::support::{SpecDir, specs};
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Calls answered while NATS is down.
const CALLS: u64 = 200;
const CONFIG: &str = "audit: { node: node-a, durability: async }";

/// The node's metric `name{tenant="acme"}`, or 0 before it has one.
async fn metric(node: &ChildNode, name: &str) -> u64 {
    let url = format!("{}/_gojinn/metrics", node.api.base);
    let text = node.api.http.get(url).send().await.expect("GET metrics").text().await.unwrap();
    let series = format!("{name}{{tenant=\"acme\"}} ");
    let line = text.lines().find_map(|line| line.strip_prefix(&series));
    line.map_or(0, |value| value.parse().unwrap_or_else(|_| panic!("{name}: {value}")))
}

/// Polls `name` until it is `value`; returns how long that took.
async fn until_metric(node: &ChildNode, name: &str, value: u64) -> Duration {
    let started = Instant::now();
    loop {
        let now = metric(node, name).await;
        if now == value {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < WITHIN,
            "{name} is {now}, not {value}, after {WITHIN:?}:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET /acme/hello`: its status and receipt id.
async fn hello(node: &ChildNode) -> (u16, String) {
    let response = node.api.http.get(format!("{}/acme/hello", node.api.base)).send().await.unwrap();
    let id = response.headers().get(RECEIPT).map(|id| id.to_str().unwrap().to_owned());
    (response.status().as_u16(), id.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_receipts_of_a_node_cut_off_from_nats_are_spooled_and_appended_after_a_kill_9() {
    let mut nats = NatsServer::start().await;
    let dir = SpecDir::new();
    dir.module("hello");
    dir.write("specs.yaml", &specs("acme", "replicas: 1", &[("hello", "hello", "")]));
    let data = tempfile::tempdir().unwrap();
    let url = nats.url();
    let start = || ChildNode::start_configured(dir.path(), data.path(), Some(&url), &[], Some(CONFIG));
    let node = start().await;
    let (status, first) = hello(&node).await;
    assert_eq!(status, 200);
    until_metric(&node, "gojinn_receipts_total", 1).await;

    nats.stop();
    let mut answered = vec![first];
    let started = Instant::now();
    for _ in 0..CALLS {
        let (status, id) = hello(&node).await;
        assert_eq!(status, 200, "a function without state is served while NATS is down:\n{}", node.log());
        answered.push(id);
    }
    let calling = started.elapsed();
    let spooling = until_metric(&node, "gojinn_audit_spooled_receipts", CALLS).await;
    let spool = data.path().join("audit-spool/acme.log");
    let spool_bytes = std::fs::metadata(&spool).expect("the spool file").len();
    node.kill_9();
    assert_eq!(answered.iter().collect::<HashSet<_>>().len(), answered.len(), "each receipt id once");

    nats.restart().await;
    let restarted = Instant::now();
    let node = start().await;
    // Counted as they are appended, by the restarted node.
    until_metric(&node, "gojinn_receipts_total", CALLS).await;
    let draining = restarted.elapsed();
    assert_eq!(metric(&node, "gojinn_audit_spooled_receipts").await, 0);
    println!(
        "{CALLS} calls answered in {calling:?} while NATS was down, all spooled {spooling:?} after the \
         last ({spool_bytes} bytes on disk incl. space grown ahead); after kill -9 and restart the \
         spool was appended within {draining:?}"
    );
    for id in &answered {
        let url = format!("{}/_gojinn/v1/receipts/{id}", node.api.base);
        let response = node.api.http.get(url).bearer_auth(&node.api.token).send().await.unwrap();
        assert_eq!(response.status(), 200, "receipt {id} is not in the log:\n{}", node.log());
        let receipt: Value = response.json().await.unwrap();
        assert_eq!(receipt["chain"], "node-a");
    }
    assert!(!spool.exists(), "the emptied spool is deleted");
    assert!(node.terminate().await.success());

    let (code, report) = verify_nats(&url, &data.path().join("audit.key"));
    assert_eq!(
        (code, report["ok"].as_bool(), report["checked"].as_u64(), report["repeated"].as_u64()),
        (0, Some(true), Some(CALLS + 1), Some(0)),
        "{report:#}"
    );
}
