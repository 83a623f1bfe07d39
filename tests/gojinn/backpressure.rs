//! Past the concurrency cap requests wait in a bounded queue; only past the queue are they
//! turned away, with 429 and Retry-After.

use crate::support::{Node, SpecDir, specs};

async fn burst(node: &Node, path: &str, count: usize) -> Vec<reqwest::Response> {
    let requests = (0..count).map(|_| node.client.get(node.url(path)).send());
    futures::future::join_all(requests).await.into_iter().map(|r| r.expect("request")).collect()
}

#[tokio::test]
async fn a_function_queues_up_to_its_bound_and_429s_past_it() {
    let dir = SpecDir::new();
    dir.module("guest-slow");
    dir.write(
        "specs.yaml",
        &specs(
            "acme",
            "",
            &[("slow", "guest-slow", "limits: { maxConcurrency: 2, maxQueue: 3, timeout: 10s }")],
        ),
    );
    let node = Node::start(&dir).await;
    let responses = burst(&node, "/acme/slow?ms=400", 10).await;
    let ok = responses.iter().filter(|r| r.status() == 200).count();
    let rejected: Vec<_> = responses.iter().filter(|r| r.status() == 429).collect();
    assert_eq!((ok, rejected.len()), (5, 5), "2 run, 3 wait, 5 are turned away");
    assert!(rejected.iter().all(|r| r.headers()["retry-after"] == "1"));
}

#[tokio::test]
async fn a_tenant_cap_applies_across_its_functions() {
    let dir = SpecDir::new();
    dir.module("guest-slow");
    dir.write(
        "specs.yaml",
        &specs(
            "acme",
            "quotas: { maxConcurrency: 2, maxQueue: 0 }",
            &[
                ("one", "guest-slow", "limits: { maxConcurrency: 2, maxQueue: 8, timeout: 10s }"),
                ("two", "guest-slow", "limits: { maxConcurrency: 2, maxQueue: 8, timeout: 10s }"),
            ],
        ),
    );
    let node = Node::start(&dir).await;
    let (a, b) = tokio::join!(burst(&node, "/acme/one?ms=400", 2), burst(&node, "/acme/two?ms=400", 2));
    let statuses: Vec<u16> = a.iter().chain(&b).map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 2, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 2, "{statuses:?}");
}
