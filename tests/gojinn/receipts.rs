//! Receipts: every execution (sync calls, failures, each job attempt) gets a signed receipt that
//! its response names and the audit log holds; `gojinn audit verify` (the real binary) passes on
//! an untouched log, names the receipt a tampering broke, follows a key rotation, and verifies
//! the one log two nodes sharing NATS write concurrently.

use crate::jobs::probe_specs;
use crate::support::api::Api;
use crate::support::nats::NatsServer;
use crate::support::{Node, SpecDir, specs};
use gojinn::config::{AuditSettings, BackendKind, Durability};
use serde_json::Value;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;

pub const RECEIPT: &str = "gojinn-receipt";

/// hello, a guest that traps and one that loops past a short timeout, for tenant acme.
fn spec_dir() -> SpecDir {
    let dir = SpecDir::new();
    dir.module("hello").module("guest-trap").module("guest-loop");
    let functions = [
        ("hello", "hello", ""),
        ("trap", "guest-trap", ""),
        ("spin", "guest-loop", "limits: { timeout: 200ms }"),
    ];
    dir.write("specs.yaml", &specs("acme", "", &functions));
    dir
}

/// A node on `specs` keeping its data in `data`, with `audit` settings and optionally NATS.
async fn start(specs: &Path, data: tempfile::TempDir, audit: AuditSettings, nats: Option<&str>) -> Node {
    let mut config = Node::config(specs, data.path());
    config.audit = audit;
    if let Some(url) = nats {
        config.state.backend = BackendKind::Nats;
        config.state.nats_url = url.to_owned();
    }
    let node = Node::start_config(config, data).await;
    assert!(node.server.first_deploy().errors.is_empty(), "{:?}", node.server.first_deploy().errors);
    node
}

fn audit(node: &str) -> AuditSettings {
    AuditSettings { node: Some(node.into()), ..AuditSettings::default() }
}

/// Stops a node (its recorder flushes and checkpoints); keeps its data dir.
pub async fn stop(node: Node) -> tempfile::TempDir {
    let Node { server, data, .. } = node;
    server.stop().await.expect("stop node");
    data
}

/// Calls `path`; returns the status and the receipt id the response names.
pub async fn call(node: &Node, path: &str) -> (u16, String) {
    let response = node.get(path).await;
    let receipt = response.headers().get(RECEIPT).map(|v| v.to_str().unwrap().to_owned());
    let receipt =
        receipt.unwrap_or_else(|| panic!("{path} answered {} without a receipt", response.status()));
    (response.status().as_u16(), receipt)
}

/// `GET /_gojinn/v1/{path}` with the admin token.
async fn admin(node: &Node, path: &str) -> reqwest::Response {
    crate::support::api::admin(node, reqwest::Method::GET, &format!("/_gojinn/v1/{path}")).await
}

async fn receipt(node: &Node, id: &str) -> Value {
    let response = admin(node, &format!("receipts/{id}")).await;
    assert_eq!(response.status(), 200, "receipt {id}");
    response.json().await.unwrap()
}

/// `gojinn audit verify --tenant acme` with `args`.
fn verify(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gojinn"))
        .args(["audit", "verify", "--tenant", "acme"])
        .args(args)
        .output()
        .expect("run gojinn audit verify")
}

/// Verifies the embedded log of `data` with `--output json`; returns the exit code and report.
fn verify_data_dir(data: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["--data-dir", data.to_str().unwrap(), "--output", "json"];
    args.extend_from_slice(extra);
    verify_json(&args)
}

/// Verifies acme's log in NATS at `url` with the key in `key` and `--output json`; returns the
/// exit code and report.
pub fn verify_nats(url: &str, key: &Path) -> (i32, Value) {
    verify_json(&["--nats", url, "--key-file", key.to_str().unwrap(), "--output", "json"])
}

/// `gojinn audit verify --tenant acme --output json` with `args`: the exit code and report.
fn verify_json(args: &[&str]) -> (i32, Value) {
    let output = verify(args);
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "not JSON: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().expect("exited"), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sync_call_returns_a_receipt_that_is_in_the_log_failures_included() {
    let dir = spec_dir();
    let node = start(dir.path(), tempfile::tempdir().unwrap(), audit("node-a"), None).await;
    let (status, ok) = call(&node, "/acme/hello?name=receipts").await;
    assert_eq!(status, 200);
    let (status, trapped) = call(&node, "/acme/trap").await;
    assert_eq!(status, 500);
    let (status, timed_out) = call(&node, "/acme/spin").await;
    assert_eq!(status, 504);

    let shown = receipt(&node, &ok).await;
    assert_eq!(shown["id"], ok.as_str());
    assert_eq!(shown["chain"], "node-a");
    let execution = &shown["execution"];
    assert_eq!((execution["status"].as_str(), execution["http_status"].as_u64()), (Some("ok"), Some(200)));
    assert_eq!((execution["tenant"].as_str(), execution["function"].as_str()), (Some("acme"), Some("hello")));
    assert_eq!((execution["trigger"].as_str(), execution["attempt"].as_u64()), (Some("http"), Some(1)));
    assert_eq!(execution["module_sha256"].as_str().unwrap().len(), 64);
    assert_ne!(execution["input_sha256"], execution["output_sha256"]);
    for (id, code, http) in [(&trapped, "trap", 500), (&timed_out, "timeout", 504)] {
        let execution = receipt(&node, id).await["execution"].clone();
        assert_eq!(
            (execution["status"].as_str(), execution["http_status"].as_u64()),
            (Some(code), Some(http))
        );
    }
    assert_eq!(admin(&node, "receipts/acme.00000000000000000000000000000000").await.status(), 404);

    let listed: Value = admin(&node, "tenants/acme/receipts?limit=10").await.json().await.unwrap();
    let ids: Vec<&str> =
        listed["receipts"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [&ok, &trapped, &timed_out]);
    let started = shown["execution"]["started_ms"].as_u64().unwrap();
    let path = format!("tenants/acme/receipts?from={}&to={}&limit=1", started, started + 1);
    let only: Value = admin(&node, &path).await.json().await.unwrap();
    assert_eq!(only["receipts"][0]["id"], ok.as_str());
    let unauthorized = node.client.get(node.url("/_gojinn/v1/tenants/acme/receipts")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401, "the admin token is required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_job_attempt_gets_a_receipt_with_its_attempt_number() {
    let dir = SpecDir::new();
    dir.module("guest-jobprobe");
    probe_specs(&dir, 503);
    let node = start(dir.path(), tempfile::tempdir().unwrap(), audit("node-a"), None).await;
    let api = Api::of(&node);
    let job = api.enqueue("/acme/probe", &[], "").await;
    api.wait_for(&job, "dead").await;

    let listed: Value = admin(&node, "tenants/acme/receipts").await.json().await.unwrap();
    let attempts: Vec<(u64, &str, u64)> = listed["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["execution"])
        .map(|e| {
            (
                e["attempt"].as_u64().unwrap(),
                e["trigger"].as_str().unwrap(),
                e["http_status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(attempts, [(1, "job", 503), (2, "job", 503)], "{listed:#}");
    assert!(listed["receipts"].as_array().unwrap().iter().all(|r| r["execution"]["job_id"] == job.as_str()));
}

/// Overwrites, deletes or swaps records of the embedded audit log of a stopped node: acme's
/// chain log, `state/audit/acme.log`, an 8-byte magic then frames of the record's length (u32,
/// little endian), the CRC-32 of those 4 bytes and the record, and the record; then zeros (the
/// space the file grows ahead of its records).
mod tamper {
    use std::path::{Path, PathBuf};

    const MAGIC_LEN: usize = 8;

    fn path(data: &Path) -> PathBuf {
        data.join("state/audit/acme.log")
    }

    /// The whole log, record 1 first.
    pub fn all(data: &Path) -> Vec<Vec<u8>> {
        let file = std::fs::read(path(data)).expect("read the stopped node's audit log");
        let mut records = Vec::new();
        let mut rest = &file[MAGIC_LEN..];
        while rest.len() >= 8 && rest[..8] != [0; 8] {
            let length = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            records.push(rest[8..8 + length].to_vec());
            rest = &rest[8 + length..];
        }
        records
    }

    /// Replaces the whole log with `records`, numbered from 1.
    pub fn replace(data: &Path, records: &[Vec<u8>]) {
        let mut file = std::fs::read(path(data)).expect("read the stopped node's audit log");
        file.truncate(MAGIC_LEN);
        for record in records {
            let length = u32::try_from(record.len()).unwrap().to_le_bytes();
            let mut checksum = crc32fast::Hasher::new();
            checksum.update(&length);
            checksum.update(record);
            file.extend_from_slice(&length);
            file.extend_from_slice(&checksum.finalize().to_le_bytes());
            file.extend_from_slice(record);
        }
        std::fs::write(path(data), file).expect("write the stopped node's audit log");
    }

    pub fn read(data: &Path, sequence: u64) -> Vec<u8> {
        all(data).swap_remove(sequence as usize - 1)
    }

    pub fn write(data: &Path, sequence: u64, record: &[u8]) {
        let mut records = all(data);
        records[sequence as usize - 1] = record.to_vec();
        replace(data, &records);
    }

    /// Deletes record `sequence`; the ones after it move up.
    pub fn delete(data: &Path, sequence: u64) {
        let mut records = all(data);
        records.remove(sequence as usize - 1);
        replace(data, &records);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_passes_on_an_untouched_log_and_names_the_receipt_a_tampering_broke() {
    let dir = spec_dir();
    let node = start(dir.path(), tempfile::tempdir().unwrap(), audit("node-a"), None).await;
    let mut ids = Vec::new();
    for path in ["/acme/hello", "/acme/trap", "/acme/hello", "/acme/hello"] {
        ids.push(call(&node, path).await.1);
    }
    // The keys and the admin token are in the node's data dir; the log comes through its API.
    let through_api = verify(&["--url", &node.url(""), "--data-dir", node.data.path().to_str().unwrap()]);
    let said = |output: &Output| {
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
    };
    assert!(through_api.status.success(), "{}", said(&through_api));
    let data = stop(node).await;

    let (code, report) = verify_data_dir(data.path(), &[]);
    assert_eq!(
        (code, report["ok"].as_bool(), report["checked"].as_u64()),
        (0, Some(true), Some(4)),
        "{report:#}"
    );
    assert_eq!(report["checkpoints"], 1, "written on stop: {report:#}");

    // Sync durability, one call at a time: record n is receipt n (from 1), then the checkpoint.
    let original: Vec<Vec<u8>> = (1..=5).map(|sequence| tamper::read(data.path(), sequence)).collect();
    let restore = || tamper::replace(data.path(), &original);

    let modified =
        String::from_utf8(original[1].clone()).unwrap().replace("\"http_status\":500", "\"http_status\":200");
    tamper::write(data.path(), 2, modified.as_bytes());
    assert_found(data.path(), Some(&ids[1]), "bad_signature");
    restore();

    tamper::delete(data.path(), 3);
    assert_found(data.path(), Some(&ids[3]), "deleted");
    restore();

    tamper::write(data.path(), 2, &original[2]);
    tamper::write(data.path(), 3, &original[1]);
    assert_found(data.path(), Some(&ids[2]), "reordered");
    restore();

    // The last receipt: nothing follows it but the checkpoint, which shows the cut.
    tamper::delete(data.path(), 4);
    assert_found(data.path(), None, "truncated");
    restore();

    let text = verify(&["--data-dir", data.path().to_str().unwrap()]);
    assert!(text.status.success());
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("4 receipt(s)"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
}

/// Verifies a tampered embedded log: exit 1, the first bad entry being receipt `id` (when
/// given) with a problem of `kind`.
fn assert_found(data: &Path, id: Option<&str>, kind: &str) {
    let (code, report) = verify_data_dir(data, &[]);
    assert_eq!((code, report["first_bad"]["problem"]["kind"].as_str()), (1, Some(kind)), "{report:#}");
    if let Some(id) = id {
        assert_eq!(report["first_bad"]["subject"]["id"], id, "{report:#}");
    }
}

/// A key file holding `byte` 32 times, hex.
fn key_file(dir: &Path, name: &str, byte: u8) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, hex::encode([byte; 32])).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_key_rotation_old_and_new_receipts_verify_and_without_the_old_key_they_are_unknown() {
    let dir = spec_dir();
    let keys = tempfile::tempdir().unwrap();
    let (old, new) = (key_file(keys.path(), "old.key", 1), key_file(keys.path(), "new.key", 2));
    let before = AuditSettings { key_file: Some(old.clone()), ..audit("node-a") };
    let node = start(dir.path(), tempfile::tempdir().unwrap(), before, None).await;
    let first = call(&node, "/acme/hello").await.1;
    let data = stop(node).await;

    let after = AuditSettings {
        key_file: Some(new.clone()),
        previous_key_files: vec![old.clone()],
        ..audit("node-a")
    };
    let node = start(dir.path(), data, after, None).await;
    call(&node, "/acme/hello").await;
    let data = stop(node).await;

    let (old, new) = (old.to_str().unwrap(), new.to_str().unwrap());
    let (code, report) = verify_data_dir(data.path(), &["--key-file", new, "--previous-key-file", old]);
    assert_eq!((code, report["checked"].as_u64()), (0, Some(2)), "{report:#}");
    let (code, report) = verify_data_dir(data.path(), &["--key-file", new]);
    assert_eq!(
        (code, report["first_bad"]["subject"]["id"].as_str()),
        (1, Some(first.as_str())),
        "{report:#}"
    );
    assert_eq!(report["first_bad"]["problem"]["kind"], "unknown_key", "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sharing_nats_write_one_log_that_verifies() {
    let nats = NatsServer::start().await;
    let dir = spec_dir();
    let key = tempfile::tempdir().unwrap();
    let shared = key_file(key.path(), "audit.key", 3);
    let settings = |id: &str| AuditSettings { key_file: Some(shared.clone()), ..audit(id) };
    let a = start(dir.path(), tempfile::tempdir().unwrap(), settings("node-a"), Some(&nats.url())).await;
    let b = start(dir.path(), tempfile::tempdir().unwrap(), settings("node-b"), Some(&nats.url())).await;
    let calls = (0..40).map(|i| {
        let (node, path) =
            (if i % 2 == 0 { &a } else { &b }, if i % 5 == 0 { "/acme/trap" } else { "/acme/hello" });
        call(node, path)
    });
    let receipts = futures::future::join_all(calls).await;
    assert_eq!(receipts.len(), 40);
    stop(a).await;
    stop(b).await;

    let output = verify(&["--nats", &nats.url(), "--key-file", shared.to_str().unwrap(), "--output", "json"]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(output.status.success(), "{report:#}");
    assert_eq!((report["checked"].as_u64(), report["chains"].as_u64()), (Some(40), Some(2)), "{report:#}");
    assert_eq!(report["checkpoints"], 2, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_async_durability_receipts_are_appended_after_the_response() {
    let dir = spec_dir();
    let settings = AuditSettings { durability: Durability::Async, ..audit("node-a") };
    let node = start(dir.path(), tempfile::tempdir().unwrap(), settings, None).await;
    let ids: Vec<String> = futures::future::join_all((0..20).map(|_| call(&node, "/acme/hello")))
        .await
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    let data = stop(node).await;
    let (code, report) = verify_data_dir(data.path(), &[]);
    assert_eq!((code, report["checked"].as_u64()), (0, Some(ids.len() as u64)), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_and_shown_receipts_are_sent_as_stored_so_each_verifies_alone() {
    let dir = spec_dir();
    let node = start(dir.path(), tempfile::tempdir().unwrap(), audit("node-a"), None).await;
    let ids = [call(&node, "/acme/hello?name=a").await.1, call(&node, "/acme/trap").await.1];
    let keys = gojinn::audit::read_keyring(&node.data.path().join("audit.key"), &[], false).unwrap();

    let listed = admin(&node, "tenants/acme/receipts").await.text().await.unwrap();
    let listed: HashMap<String, Vec<Box<RawValue>>> = serde_json::from_str(&listed).unwrap();
    let listed = &listed["receipts"];
    assert_eq!(listed.len(), 2);
    for (raw, id) in listed.iter().zip(&ids) {
        assert_eq!(gojinn::audit::verify_receipt(&keys, "acme", raw.get()), Ok(()), "{}", raw.get());
        let shown = admin(&node, &format!("receipts/{id}")).await.text().await.unwrap();
        assert_eq!(shown, raw.get(), "one receipt, the same bytes");
    }
    let other = gojinn::audit::Keyring::new(gojinn::audit::MasterKey::from_bytes(vec![9; 32]), vec![]);
    assert!(gojinn::audit::verify_receipt(&other, "acme", listed[0].get()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_with_a_key_that_verifies_nothing_exits_2_asking_whether_the_key_is_wrong() {
    let dir = spec_dir();
    let node = start(dir.path(), tempfile::tempdir().unwrap(), audit("node-a"), None).await;
    call(&node, "/acme/hello").await;
    call(&node, "/acme/hello").await;
    let data = stop(node).await;
    let keys = tempfile::tempdir().unwrap();
    let wrong = key_file(keys.path(), "wrong.key", 7);
    let output =
        verify(&["--data-dir", data.path().to_str().unwrap(), "--key-file", wrong.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no receipt verified with the given key(s): wrong key?"), "{stderr}");
    assert_eq!(verify(&["--data-dir", data.path().to_str().unwrap()]).status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_an_outage_stored_twice_in_a_row_verifies_counted_once_and_a_later_copy_is_a_replay() {
    let dir = spec_dir();
    let node = start(dir.path(), tempfile::tempdir().unwrap(), audit("node-a"), None).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(call(&node, "/acme/hello").await.1);
    }
    let data = stop(node).await;
    // Sync, one call at a time: records 1 to 3 are the receipts, 4 the checkpoint. An appender
    // before the idempotent append stored record 2 again when its acknowledgement was lost.
    let original = tamper::all(data.path());
    let repeated = [&original[..2], &original[1..]].concat();
    tamper::replace(data.path(), &repeated);
    let (code, report) = verify_data_dir(data.path(), &[]);
    assert_eq!(
        (code, report["checked"].as_u64(), report["repeated"].as_u64()),
        (0, Some(3), Some(1)),
        "{report:#}"
    );
    let text = verify(&["--data-dir", data.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("stored twice in a row by a retried append"));

    // Listed once, and the node resumes its chain after it.
    let node = start(dir.path(), data, audit("node-a"), None).await;
    ids.push(call(&node, "/acme/hello").await.1);
    let listed: Value = admin(&node, "tenants/acme/receipts").await.json().await.unwrap();
    let listed: Vec<&str> =
        listed["receipts"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(listed, ids);
    let data = stop(node).await;
    assert_eq!(verify_data_dir(data.path(), &[]).0, 0);

    // The same copy after the chain's next receipt is a replay.
    let replayed = [&original[..3], &original[1..2], &original[3..]].concat();
    tamper::replace(data.path(), &replayed);
    assert_found(data.path(), Some(&ids[1]), "replayed");
}
