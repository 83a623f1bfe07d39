//! Async jobs on NATS JetStream: the shared scenarios, served by the `gojinn` binary with
//! `--nats` against a nats-server of the test's own.

use crate::jobs::{
    async_calls_succeed_with_the_guests_result, dead_jobs_are_listed_and_redriven, probe_specs,
};
use crate::support::SpecDir;
use crate::support::api::ChildNode;
use crate::support::nats::NatsServer;

async fn probe_node(nats: &NatsServer, status: u16) -> (SpecDir, tempfile::TempDir, ChildNode) {
    let dir = SpecDir::new();
    dir.module("guest-jobprobe");
    probe_specs(&dir, status);
    let data = tempfile::tempdir().unwrap();
    let node = ChildNode::start(dir.path(), data.path(), Some(&nats.url())).await;
    (dir, data, node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_async_calls_are_accepted_and_their_status_shows_the_result() {
    let nats = NatsServer::start().await;
    let (_dir, _data, node) = probe_node(&nats, 200).await;
    async_calls_succeed_with_the_guests_result(&node.api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_failing_jobs_go_dead_and_a_redrive_runs_them_on_the_fixed_revision() {
    let nats = NatsServer::start().await;
    let (dir, _data, node) = probe_node(&nats, 503).await;
    dead_jobs_are_listed_and_redriven(&dir, &node.api).await;
}
