//! Sync receipts survive a SIGKILL of their node: every call answered 200 before the kill has
//! its receipt in the restarted node's log (the embedded chain log, same data dir), the log
//! verifies, and the node goes on appending to the same chain.

use crate::receipts::RECEIPT;
use crate::support::api::{ChildNode, WITHIN};
use crate::support::{SpecDir, specs};
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use tokio::sync::mpsc;

/// Callers flooding the node at once.
const CALLERS: usize = 32;
/// Calls answered before the kill.
const ANSWERED_BEFORE_KILL: usize = 400;
const CONFIG: &str = "audit: { node: node-a, durability: sync }";

fn hello_specs() -> SpecDir {
    let dir = SpecDir::new();
    dir.module("hello");
    dir.write(
        "specs.yaml",
        &specs("acme", "quotas: { maxConcurrency: 64, maxQueue: 256 }", &[("hello", "hello", "")]),
    );
    dir
}

/// Calls hello from [`CALLERS`] tasks until the node is gone; sends the receipt id of every 200.
fn flood(base: &str) -> (mpsc::UnboundedReceiver<String>, Vec<tokio::task::JoinHandle<()>>) {
    let (answered, ids) = mpsc::unbounded_channel();
    let client = reqwest::Client::new();
    let callers = (0..CALLERS)
        .map(|_| {
            let (client, answered, url) = (client.clone(), answered.clone(), format!("{base}/acme/hello"));
            tokio::spawn(async move {
                while let Ok(response) = client.get(&url).send().await {
                    if response.status() == 200 {
                        let id = response.headers()[RECEIPT].to_str().unwrap().to_owned();
                        if answered.send(id).is_err() {
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    (ids, callers)
}

/// The receipt `id` as the node's admin API shows it.
async fn receipt(node: &ChildNode, id: &str) -> Value {
    let url = format!("{}/_gojinn/v1/receipts/{id}", node.api.base);
    let response = node.api.http.get(url).bearer_auth(&node.api.token).send().await.unwrap();
    assert_eq!(response.status(), 200, "receipt {id} is not in the log:\n{}", node.log());
    response.json().await.unwrap()
}

/// `gojinn audit verify --tenant acme --output json` on the stopped node's data dir.
fn verify(data: &Path) -> Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gojinn"))
        .args(["audit", "verify", "--tenant", "acme", "--output", "json", "--data-dir"])
        .arg(data)
        .output()
        .expect("run gojinn audit verify");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&output.stderr)));
    assert!(output.status.success(), "{report:#}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_receipt_answered_before_a_kill_9_is_in_the_log_after_the_restart() {
    let dir = hello_specs();
    let data = tempfile::tempdir().unwrap();
    let node = ChildNode::start_configured(dir.path(), data.path(), None, &[], Some(CONFIG)).await;

    let (mut ids, callers) = flood(&node.api.base);
    let mut answered = Vec::new();
    while answered.len() < ANSWERED_BEFORE_KILL {
        let id = tokio::time::timeout(WITHIN, ids.recv()).await;
        answered
            .push(id.ok().flatten().unwrap_or_else(|| panic!("no 200 within {WITHIN:?}:\n{}", node.log())));
    }
    node.kill_9();
    for caller in callers {
        caller.await.unwrap();
    }
    while let Ok(id) = ids.try_recv() {
        answered.push(id);
    }
    assert_eq!(answered.iter().collect::<HashSet<_>>().len(), answered.len(), "each receipt id once");

    let node = ChildNode::start_configured(dir.path(), data.path(), None, &[], Some(CONFIG)).await;
    let mut before_kill = Vec::new();
    for id in &answered {
        let stored = receipt(&node, id).await;
        assert_eq!(stored["chain"], "node-a");
        before_kill.push(stored["seq"].as_u64().unwrap());
    }
    let latest = *before_kill.iter().max().unwrap();

    // The chain goes on after whatever the killed node appended last.
    let response = reqwest::get(format!("{}/acme/hello", node.api.base)).await.unwrap();
    assert_eq!(response.status(), 200);
    let next = response.headers()[RECEIPT].to_str().unwrap().to_owned();
    let next = receipt(&node, &next).await;
    assert_eq!(next["chain"], "node-a");
    assert!(next["seq"].as_u64().unwrap() > latest, "{next:#} after seq {latest}");
    assert!(node.terminate().await.success());

    let report = verify(data.path());
    assert_eq!((report["ok"].as_bool(), report["chains"].as_u64()), (Some(true), Some(1)), "{report:#}");
    let checked = report["checked"].as_u64().unwrap();
    assert!(checked > answered.len() as u64, "{checked} receipts verified, {} answered", answered.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_a_damaged_record_in_the_log_file() {
    let dir = hello_specs();
    let data = tempfile::tempdir().unwrap();
    let node = ChildNode::start_configured(dir.path(), data.path(), None, &[], Some(CONFIG)).await;
    for _ in 0..3 {
        let response = reqwest::get(format!("{}/acme/hello", node.api.base)).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert!(node.terminate().await.success());
    assert_eq!(verify(data.path())["checked"], 3);

    // A byte of the first record (the first receipt) changed on disk: its frame's checksum
    // fails, and two receipts and a checkpoint follow it.
    let file = data.path().join("state/audit/acme.log");
    let mut bytes = std::fs::read(&file).unwrap();
    let first_record = 8 + 8;
    bytes[first_record + 20] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gojinn"))
        .args(["audit", "verify", "--tenant", "acme", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(said.contains("acme.log is corrupt: record 1 (byte 8) fails its checksum"), "{said}");
    assert_eq!(std::fs::read(&file).unwrap(), bytes, "nothing is cut");
}
