//! A node stopped with SIGTERM, as the `gojinn` binary: it closes its listener at once, lets a
//! call in flight finish, hands a job still running at `shutdownTimeout` back for redelivery (on
//! the embedded store and on NATS), and exits 0; a second SIGTERM ends it at once.

use crate::support::api::{ChildNode, WITHIN};
use crate::support::nats::NatsServer;
use crate::support::{SpecDir, specs};
use std::time::{Duration, Instant};

/// guest-slow as `/acme/slow`, its calls and jobs allowed 30 s, its deliveries leased for a
/// minute: a job that comes back within a test's wait was handed back, not left to expire.
fn slow_specs() -> SpecDir {
    let dir = SpecDir::new();
    dir.module("guest-slow");
    let function = "limits: { timeout: 30s }\njobs: { ackWait: 60s, maxDeliver: 3, backoff: [50ms] }";
    dir.write("specs.yaml", &specs("acme", "", &[("slow", "guest-slow", function)]));
    dir
}

/// A call to `path` on `node`, answered (status, body) or failed (the error), in a task.
fn call(node: &ChildNode, path: &str) -> tokio::task::JoinHandle<Result<(u16, String), reqwest::Error>> {
    let request = node.api.http.get(format!("{}{path}", node.api.base));
    tokio::spawn(async move {
        let response = request.send().await?;
        Ok((response.status().as_u16(), response.text().await?))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_refuses_new_connections_at_once_and_lets_a_call_in_flight_finish() {
    let dir = slow_specs();
    let data = tempfile::tempdir().unwrap();
    let mut node = ChildNode::start(dir.path(), data.path(), None).await;
    let address = node.api.base.trim_start_matches("http://").to_owned();
    let slow = call(&node, "/acme/slow?sleep=3000");
    node.wait_active_instances(1).await;

    node.sigterm();
    let deadline = Instant::now() + WITHIN;
    loop {
        match tokio::net::TcpStream::connect(&address).await {
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => break,
            // The signal is not handled yet, or the listener closed with this one in its backlog.
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(error) => panic!("connecting failed otherwise than refused: {error}"),
        }
        assert!(Instant::now() < deadline, "new connections still accepted after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!slow.is_finished(), "the listener closed only after the call in flight ended");

    let answered = slow.await.unwrap().expect("the call in flight is answered, not cut");
    assert_eq!(answered, (200, "slept 3000".to_owned()));
    let status = node.exited(WITHIN).await;
    assert!(status.success(), "{status}:\n{}", node.log());
    let log = node.log();
    assert!(log.contains("requests_finished=1 requests_cut=0 jobs_handed_back=0"), "{log}");
}

/// Scenario: a job still running when `shutdownTimeout` (1 s) is up is handed back; the node
/// exits well before the job would have ended, and the next node runs the job again, to success.
async fn a_job_running_past_the_shutdown_timeout_is_handed_back(nats: Option<&str>) {
    let dir = slow_specs();
    let data = tempfile::tempdir().unwrap();
    let config = Some("shutdownTimeout: 1s\n");
    let mut node = ChildNode::start_configured(dir.path(), data.path(), nats, &[], config).await;
    let id = node.api.enqueue("/acme/slow?sleep=8000", &[], "").await;
    node.api.wait_for(&id, "running").await;
    node.wait_active_instances(1).await;

    node.sigterm();
    let signalled = Instant::now();
    // The job would run for 8 s: the node must not wait for it.
    let status = node.exited(Duration::from_secs(6)).await;
    let took = signalled.elapsed();
    println!("SIGTERM to exit with a job running and shutdownTimeout 1s: {took:?}");
    assert!(status.success(), "{status}:\n{}", node.log());
    let log = node.log();
    assert!(log.contains("jobs_handed_back=1"), "{log}");
    drop(node);

    // The lease would last a minute: the job comes back now because it was handed back.
    let node = ChildNode::start_configured(dir.path(), data.path(), nats, &[], config).await;
    let job = node.api.wait_for(&id, "succeeded").await;
    assert_eq!(job["attempts"], 2, "the attempt handed back, then one to success: {job:#}\n{}", node.log());
    assert_eq!(job["result"]["body"], "slept 8000");
    assert_eq!(job["error"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_sigterm_hands_a_job_running_past_the_shutdown_timeout_back_for_redelivery() {
    a_job_running_past_the_shutdown_timeout_is_handed_back(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_sigterm_hands_a_job_running_past_the_shutdown_timeout_back_for_redelivery() {
    let nats = NatsServer::start().await;
    a_job_running_past_the_shutdown_timeout_is_handed_back(Some(&nats.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_during_the_stop_exits_at_once() {
    let dir = slow_specs();
    let data = tempfile::tempdir().unwrap();
    let mut node = ChildNode::start(dir.path(), data.path(), None).await;
    let slow = call(&node, "/acme/slow?sleep=20000");
    node.wait_active_instances(1).await;

    node.sigterm();
    node.wait_for_log("stopping:").await;
    node.sigterm();
    let signalled = Instant::now();
    // The call would hold a graceful stop for 20 s.
    let status = node.exited(Duration::from_secs(5)).await;
    println!("second SIGTERM to exit: {:?}", signalled.elapsed());
    assert_eq!(status.code(), Some(130), "{status}:\n{}", node.log());
    assert!(node.log().contains("a second signal: exiting at once"), "{}", node.log());
    let cut = slow.await.unwrap();
    assert!(cut.is_err(), "the call in flight was cut, not answered: {cut:?}");
}
