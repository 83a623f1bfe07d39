//! `gojinn dev cluster` as a user runs it: three nats-servers and three gojinn nodes on
//! loopback, their URLs printed, the spec directory served by every node through the shared
//! NATS, one SIGTERM stopping every process (the nodes gracefully); and the refusals (a port
//! taken, nats-server missing) before anything starts.

use crate::support::{SpecDir, specs};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

/// Longest wait for three nats-servers and three nodes to be ready, or for all to stop.
const WITHIN: Duration = Duration::from_secs(180);

fn dev_cluster(cluster_dir: &Path, specs: &Path, port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gojinn"));
    command.args(["dev", "cluster", "--nodes", "3", "--nats-port", "0", "--port"]).arg(port.to_string());
    command.arg("--dir").arg(cluster_dir).arg("--specs").arg(specs);
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    command
}

/// The URL the printed line of process `name` (`gojinn node 1`, `nats-server 2`) names.
fn url_of<'a>(printed: &'a [String], name: &str) -> &'a str {
    let line =
        printed.iter().find(|line| line.trim_start().starts_with(&format!("{name} "))).unwrap_or_else(|| {
            panic!("no line for {name} in:\n{}", printed.join("\n"));
        });
    line.trim_start()[name.len()..].split_whitespace().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_serve_the_specs_and_one_sigterm_stops_every_process() {
    let dir = SpecDir::new();
    dir.module("hello");
    dir.write("specs.yaml", &specs("acme", "", &[("hello", "hello", "")]));
    let cluster_dir = tempfile::tempdir().unwrap();
    let mut cluster =
        dev_cluster(cluster_dir.path(), dir.path(), 0).spawn().expect("start gojinn dev cluster");
    let mut stdout = BufReader::new(cluster.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let started = tokio::time::timeout(WITHIN, async {
        while let Some(line) = stdout.next_line().await.unwrap() {
            let last = line.starts_with("Ctrl-C");
            printed.push(line);
            if last {
                return true;
            }
        }
        false
    })
    .await;
    if started != Ok(true) {
        let _ = cluster.start_kill();
        let mut errors = String::new();
        cluster.stderr.take().unwrap().read_to_string(&mut errors).await.unwrap();
        panic!("the cluster did not start ({started:?}):\n{}\n{errors}", printed.join("\n"));
    }

    let token = std::fs::read_to_string(cluster_dir.path().join("admin.token")).unwrap();
    let http = reqwest::Client::new();
    let nodes: Vec<String> =
        (1..=3).map(|n| url_of(&printed, &format!("gojinn node {n}")).to_owned()).collect();
    let servers: Vec<String> =
        (1..=3).map(|n| url_of(&printed, &format!("nats-server {n}")).to_owned()).collect();
    for node in &nodes {
        // A node that did not apply the specs itself serves them once it has read what the one
        // that did wrote to NATS.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let hello = http.get(format!("{node}/acme/hello")).send().await.unwrap();
            if hello.status() == 200 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{node} does not serve the specs: {}",
                hello.status()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let status =
            http.get(format!("{node}/_gojinn/v1/status")).bearer_auth(token.trim()).send().await.unwrap();
        assert_eq!(status.status(), 200, "{node} takes the cluster's admin token");
    }

    let sent =
        std::process::Command::new("kill").args(["-TERM", &cluster.id().unwrap().to_string()]).status();
    assert!(sent.unwrap().success());
    let exited = tokio::time::timeout(WITHIN, cluster.wait()).await.expect("stopped in time").unwrap();
    let mut rest = Vec::new();
    while let Some(line) = stdout.next_line().await.unwrap() {
        rest.push(line);
    }
    assert!(exited.success(), "{exited}: {rest:?}");
    assert_eq!(rest.last().map(String::as_str), Some("stopped"), "{rest:?}");
    for n in 1..=3 {
        let log = std::fs::read_to_string(cluster_dir.path().join(format!("node-{n}.log"))).unwrap();
        assert!(
            log.contains("stopped: receipts appended and checkpointed"),
            "node {n} stopped gracefully:\n{log}"
        );
    }
    for url in nodes.iter().chain(&servers) {
        let address = url.split("://").nth(1).unwrap();
        let refused = tokio::net::TcpStream::connect(address).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "{url} closed");
    }
}

#[tokio::test]
async fn a_taken_port_or_a_missing_nats_server_is_refused_before_anything_starts() {
    let dir = SpecDir::new();
    dir.write("specs.yaml", "");
    let cluster_dir = tempfile::tempdir().unwrap();
    let cluster_dir = cluster_dir.path().join("cluster");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let output = dev_cluster(&cluster_dir, dir.path(), port).output().await.unwrap();
    let errors = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{errors}");
    assert!(errors.contains(&format!("error: port {port} (gojinn node 1) is taken: ")), "{errors}");
    assert!(!cluster_dir.exists(), "nothing written");

    let output = dev_cluster(&cluster_dir, dir.path(), 0).env("PATH", "").output().await.unwrap();
    let errors = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{errors}");
    assert!(errors.contains("error: nats-server is not on PATH: install a current one"), "{errors}");
    assert!(!cluster_dir.exists(), "nothing written");
}
