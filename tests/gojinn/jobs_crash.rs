//! A node killed with SIGKILL while a job runs loses nothing: the restarted `gojinn` binary runs
//! the job again and it succeeds, on the embedded store (same data dir) and on NATS. A node
//! stopped with SIGTERM finishes its running job before it exits.

use crate::jobs::{a_job_outlives_a_kill_9_of_its_node, slow_specs};
use crate::support::api::ChildNode;
use crate::support::nats::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_job_running_during_kill_9_completes_after_a_restart() {
    a_job_outlives_a_kill_9_of_its_node(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_job_running_during_kill_9_completes_after_a_restart() {
    let nats = NatsServer::start().await;
    a_job_outlives_a_kill_9_of_its_node(Some(&nats.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_job_finish_before_the_node_exits() {
    let dir = slow_specs();
    let data = tempfile::tempdir().unwrap();
    let node = ChildNode::start(dir.path(), data.path(), None).await;
    let id = node.api.enqueue("/acme/slow?ms=800", &[], "").await;
    node.api.wait_for(&id, "running").await;
    assert!(node.terminate().await.success(), "a clean exit");

    let node = ChildNode::start(dir.path(), data.path(), None).await;
    let job = node.api.job_response(&id).await.json::<serde_json::Value>().await.unwrap();
    assert_eq!((job["status"].as_str(), job["attempts"].as_u64()), (Some("succeeded"), Some(1)), "{job:#}");
}
