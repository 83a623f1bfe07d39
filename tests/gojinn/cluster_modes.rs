//! The modes table (README "Cluster modes and failures"): what a call, a KV write and read, a SQL
//! call, an enqueue and a receipt do for a tenant in AP mode (`replicas: 1`) and one in CP mode
//! (`replicas: 3`) when a stream's leader dies, a minority or a majority of nats-servers is down,
//! or a gojinn node is cut off from NATS. Each test starts a 3-node nats-server cluster and two
//! nodes, `a` with async receipts and `b` with sync receipts, causes one failure, tries every
//! operation on both nodes for both tenants and compares what it saw with what the table says,
//! printing it (`--nocapture`).
//!
//! A tenant with one replica has each of its streams on one server, chosen by JetStream: an
//! operation is answered when the streams it needs are on servers that are up, and refused with
//! `unavailable` when one is not. The tests look up where the streams are and expect accordingly.

use crate::support::api::Api;
use crate::support::link::Link;
use crate::support::nats::NatsCluster;
use crate::support::{Node, SpecDir, specs};
use gojinn::config::{AuditSettings, Durability, NodeConfig};
use gojinn::spec::{Name, Span};
use gojinn::state::names;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a node waits for NATS before a call that needs it is refused (`state.timeout`).
const STATE_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest any operation may take to be answered or refused: the function's timeout (1 s),
/// then, with a sync receipt, two appends of the receipt, each bounded by [`STATE_TIMEOUT`].
const OPERATION_BOUND: Duration = Duration::from_secs(6);
/// How long the cluster may take to serve again after a failure is repaired or a leader dies.
const RESUME_WITHIN: Duration = Duration::from_secs(60);

const TENANTS: [&str; 2] = ["ap", "cp"];
/// Every failure is probed twice: the first round may leave a tenant's receipts failing, which
/// must change nothing the second round sees of the other tenant.
const ROUNDS: [&str; 2] = ["first round", "second round"];

/// What the tests try, on each node for each tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Operation {
    /// hello, which needs no state: its receipt is all it needs of NATS.
    Call,
    KvWrite,
    KvRead,
    /// A SQL statement on the tenant's database on the node.
    Sql,
    /// An async call, queued as a job.
    Enqueue,
}

const OPERATIONS: [Operation; 5] =
    [Operation::Call, Operation::KvWrite, Operation::KvRead, Operation::Sql, Operation::Enqueue];

/// A tenant's stream (or bucket) an operation may need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stream {
    Kv,
    Jobs,
    JobState,
    Audit,
}

impl Stream {
    fn name(self, tenant: &Name) -> String {
        match self {
            Stream::Kv => format!("KV_{}", names::kv_bucket(tenant)),
            Stream::Jobs => names::jobs_stream(tenant),
            Stream::JobState => format!("KV_{}", names::job_state_bucket(tenant)),
            Stream::Audit => names::audit_stream(tenant),
        }
    }
}

impl Operation {
    /// The streams it needs on a node with `durability`: a sync receipt needs the audit stream.
    fn needs(self, durability: Durability) -> BTreeSet<Stream> {
        let mut needs: BTreeSet<Stream> = match self {
            Operation::Call | Operation::Sql => BTreeSet::new(),
            Operation::KvWrite | Operation::KvRead => [Stream::Kv].into(),
            // An enqueue has no receipt; the job's attempts do.
            Operation::Enqueue => return [Stream::Jobs, Stream::JobState].into(),
        };
        if durability == Durability::Sync {
            needs.insert(Stream::Audit);
        }
        needs
    }
}

/// What an operation got.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Answered,
    Unavailable,
    Other(String),
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Answered => f.write_str("answered"),
            Seen::Unavailable => f.write_str("unavailable"),
            Seen::Other(what) => f.write_str(what),
        }
    }
}

/// Where an operation ran: node `a` (async receipts) or `b` (sync), and the tenant.
type Cell = (&'static str, &'static str, Operation);

/// Tenants `ap` (replicas 1) and `cp` (replicas 3), each with hello, `state` (the guest-state
/// test guest, with every KV grant and a database) and `slow` (which sleeps as long as asked),
/// for jobs.
fn mode_specs() -> SpecDir {
    let dir = SpecDir::new();
    dir.module("hello").module("guest-state").module("guest-slow");
    let functions = [
        ("hello", "hello", ""),
        ("state", "guest-state", r#"grants: { kv: { read: ["*"], write: ["*"] }, db: true }"#),
        ("slow", "guest-slow", "limits: { timeout: 10s }\njobs: { ackWait: 3s, backoff: [100ms] }"),
    ];
    let yaml =
        format!("{}---\n{}", specs("ap", "replicas: 1", &functions), specs("cp", "replicas: 3", &functions));
    dir.write("specs.yaml", &yaml);
    dir
}

/// The two nodes, sharing one audit key.
struct Nodes {
    a: Node,
    b: Node,
    key: tempfile::TempDir,
}

impl Nodes {
    /// Nodes `a` and `b` on NATS at `urls.0` and `urls.1`.
    async fn start(specs: &Path, urls: (&str, &str)) -> Self {
        let key = tempfile::tempdir().unwrap();
        let key_file = key.path().join("audit.key");
        std::fs::write(&key_file, "5".repeat(64)).unwrap();
        std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let start = |name: &'static str, url: &str, durability| {
            let data = tempfile::tempdir().unwrap();
            let mut config: NodeConfig = Node::nats_config(specs, data.path(), url);
            config.state.timeout = Span(STATE_TIMEOUT);
            config.audit = AuditSettings {
                node: Some(name.into()),
                durability,
                key_file: Some(key_file.clone()),
                ..AuditSettings::default()
            };
            Node::start_config(config, data)
        };
        let a = start("node-a", urls.0, Durability::Async).await;
        let b = start("node-b", urls.1, Durability::Sync).await;
        for node in [&a, &b] {
            assert!(node.server.first_deploy().errors.is_empty(), "{:?}", node.server.first_deploy().errors);
        }
        Self { a, b, key }
    }

    fn each(&self) -> [(&'static str, &Node, Durability); 2] {
        [("a", &self.a, Durability::Async), ("b", &self.b, Durability::Sync)]
    }

    /// Tries every operation on both nodes for both tenants.
    async fn try_all(&self) -> BTreeMap<Cell, (Seen, Duration)> {
        self.try_tenants(&TENANTS).await
    }

    /// Tries every operation on both nodes for `tenants`.
    async fn try_tenants(&self, tenants: &[&'static str]) -> BTreeMap<Cell, (Seen, Duration)> {
        let mut seen = BTreeMap::new();
        for (label, node, _) in self.each() {
            for &tenant in tenants {
                for operation in OPERATIONS {
                    seen.insert((label, tenant, operation), try_operation(node, tenant, operation).await);
                }
            }
        }
        seen
    }

    /// Queues a job of each tenant that sleeps for a second and a half, through node `a`, and
    /// waits until each runs: jobs the failure that comes next finds running.
    async fn start_jobs(&self) -> Vec<String> {
        let api = Api::of(&self.a);
        let mut ids = Vec::new();
        for tenant in TENANTS {
            ids.push(api.enqueue(&format!("/{tenant}/slow?sleep=1500"), &[], "").await);
        }
        for id in &ids {
            api.wait_for(id, "running").await;
        }
        ids
    }

    /// Waits until the jobs `start_jobs` queued have succeeded, once the failure is over: a job
    /// running when it came finishes (again, if its first attempt's end could not be recorded).
    /// Deliveries that could not be recorded while it lasted are no attempts, so none of them
    /// is dead-lettered.
    async fn jobs_succeed(&self, ids: &[String]) {
        let api = Api::of(&self.a);
        for (tenant, id) in TENANTS.iter().zip(ids) {
            let deadline = Instant::now() + RESUME_WITHIN;
            let job = loop {
                let job: Value = api.job_response(id).await.json().await.unwrap_or(Value::Null);
                if job["status"] == "succeeded" || job["status"] == "dead" {
                    break job;
                }
                assert!(Instant::now() < deadline, "job {id} of {tenant} did not end: {job:#}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            println!(
                "  the job of {tenant} running when it came: {} after {} attempt(s)",
                job["status"], job["attempts"]
            );
            assert_eq!(job["status"], "succeeded", "{job:#}");
        }
    }

    /// Waits until both nodes are connected to NATS again (readiness 200).
    async fn until_connected(&self) {
        for (_, node, _) in self.each() {
            let deadline = Instant::now() + RESUME_WITHIN;
            loop {
                let response = node.get("/_gojinn/ready").await;
                if response.status() == 200 {
                    break;
                }
                let body = response.text().await.unwrap_or_default();
                assert!(Instant::now() < deadline, "not ready within {RESUME_WITHIN:?}: {body}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Tries every operation until all are answered; fails after [`RESUME_WITHIN`]. Returns how
    /// long that took and what each refused attempt saw (never anything but `unavailable`).
    async fn until_all_answered(&self, since: Instant) -> Duration {
        let deadline = Instant::now() + RESUME_WITHIN;
        loop {
            let seen = self.try_all().await;
            check_bounded(&seen);
            let refused: Vec<_> = seen.iter().filter(|(_, (seen, _))| *seen != Seen::Answered).collect();
            if refused.is_empty() {
                return since.elapsed();
            }
            for (cell, (seen, _)) in &refused {
                assert_eq!(*seen, Seen::Unavailable, "{cell:?} while the cluster recovers");
            }
            assert!(Instant::now() < deadline, "not all answered within {RESUME_WITHIN:?}: {refused:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs `operation` for `tenant` on `node`: what it got and how long it took.
async fn try_operation(node: &Node, tenant: &str, operation: Operation) -> (Seen, Duration) {
    let started = Instant::now();
    let path = format!("/{tenant}/state");
    let state = |ops: Value| node.post(&path, ops.to_string());
    let response = match operation {
        Operation::Call => node.get(&format!("/{tenant}/hello")).await,
        Operation::KvWrite => state(json!([{ "op": "kv_set", "key": "k", "value": "v" }])).await,
        Operation::KvRead => state(json!([{ "op": "kv_get", "key": "k" }])).await,
        Operation::Sql => {
            state(json!([
                { "op": "db_exec", "sql": "CREATE TABLE IF NOT EXISTS t (x INTEGER)" },
                { "op": "db_exec", "sql": "INSERT INTO t VALUES (?)", "params": [1] },
            ]))
            .await
        }
        Operation::Enqueue => Api::of(node).call_async(&format!("/{tenant}/hello"), &[], "").await,
    };
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let took = started.elapsed();
    let seen = match (status, &body) {
        (200 | 202, Value::Array(answers)) if answers.iter().all(|a| a.get("ok").is_some()) => Seen::Answered,
        (200, Value::Array(answers)) if answers.iter().any(|a| a["error"] == "unavailable") => {
            Seen::Unavailable
        }
        (200, _) if operation == Operation::Call => Seen::Answered,
        (202, _) if operation == Operation::Enqueue => Seen::Answered,
        (503, body) if body["code"] == "unavailable" => Seen::Unavailable,
        _ => Seen::Other(format!("{status} {body}")),
    };
    (seen, took)
}

/// No operation took longer than [`OPERATION_BOUND`] to be answered or refused.
fn check_bounded(seen: &BTreeMap<Cell, (Seen, Duration)>) {
    for (cell, (seen, took)) in seen {
        assert!(*took < OPERATION_BOUND, "{cell:?}: {seen} after {took:?}");
    }
}

/// Prints what was seen, one line per node and tenant.
fn print(title: &str, seen: &BTreeMap<Cell, (Seen, Duration)>) {
    println!("{title}:");
    for (label, durability) in [("a", "async"), ("b", "sync")] {
        for tenant in TENANTS {
            let line: Vec<String> = OPERATIONS
                .iter()
                .map(|operation| {
                    let (seen, took) = &seen[&(label, tenant, *operation)];
                    format!("{operation:?} {seen} ({} ms)", took.as_millis())
                })
                .collect();
            println!("  node {label} ({durability} receipts), {tenant}: {}", line.join(", "));
        }
    }
}

/// What the table says each cell sees: answered when every stream the operation needs is up
/// (`up(tenant, stream)`), unavailable when one is not.
fn expected(up: impl Fn(&str, Stream) -> bool) -> BTreeMap<Cell, Seen> {
    let mut expected = BTreeMap::new();
    for (label, durability) in [("a", Durability::Async), ("b", Durability::Sync)] {
        for tenant in TENANTS {
            for operation in OPERATIONS {
                let answered = operation.needs(durability).into_iter().all(|stream| up(tenant, stream));
                let seen = if answered { Seen::Answered } else { Seen::Unavailable };
                expected.insert((label, tenant, operation), seen);
            }
        }
    }
    expected
}

fn without_times(seen: &BTreeMap<Cell, (Seen, Duration)>) -> BTreeMap<Cell, Seen> {
    seen.iter().map(|(cell, (seen, _))| (*cell, seen.clone())).collect()
}

/// A 3-node nats-server cluster and the two nodes on it, serving [`mode_specs`] (kept alive by
/// the returned directory).
async fn on_the_cluster() -> (NatsCluster, SpecDir, Nodes) {
    let cluster = NatsCluster::start().await;
    let dir = mode_specs();
    let seeds = cluster.seeds();
    let nodes = Nodes::start(dir.path(), (&seeds, &seeds)).await;
    (cluster, dir, nodes)
}

/// Where each of a tenant's streams leads: the index of its leader's server (`n<index>`).
async fn leaders(cluster: &NatsCluster, tenant: &str) -> BTreeMap<Stream, usize> {
    let jetstream = jetstream(cluster).await;
    let tenant = Name::new(tenant).unwrap();
    let mut leaders = BTreeMap::new();
    for stream in [Stream::Kv, Stream::Jobs, Stream::JobState, Stream::Audit] {
        let deadline = Instant::now() + RESUME_WITHIN;
        let leader = loop {
            let info =
                jetstream.get_stream(stream.name(&tenant)).await.unwrap().info().await.unwrap().clone();
            if let Some(leader) = info.cluster.and_then(|c| c.leader) {
                break leader;
            }
            assert!(Instant::now() < deadline, "{stream:?} of {tenant} has no leader");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        leaders.insert(stream, leader.trim_start_matches('n').parse().unwrap());
    }
    leaders
}

async fn jetstream(cluster: &NatsCluster) -> async_nats::jetstream::Context {
    let seeds: Vec<String> = cluster.url().split(',').map(str::to_owned).collect();
    async_nats::jetstream::new(async_nats::connect(seeds.as_slice()).await.unwrap())
}

/// Moves the leadership of each of `tenant`'s streams that `server` leads to another server
/// (a stepdown with a preferred placement), so that stopping `server` costs no election.
async fn move_leaders_off(cluster: &NatsCluster, tenant: &str, server: usize) {
    let jetstream = jetstream(cluster).await;
    let name = Name::new(tenant).unwrap();
    let other = format!("n{}", (server + 1) % 3);
    for (stream, leader) in leaders(cluster, tenant).await {
        if leader == server {
            let subject = format!("STREAM.LEADER.STEPDOWN.{}", stream.name(&name));
            let answer: Value =
                jetstream.request(subject, &json!({ "placement": { "preferred": other } })).await.unwrap();
            assert_eq!(answer["success"], true, "{answer}");
        }
    }
    let deadline = Instant::now() + RESUME_WITHIN;
    while leaders(cluster, tenant).await.values().any(|leader| *leader == server) {
        assert!(Instant::now() < deadline, "{tenant}'s leaders did not leave n{server}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (a) A stream's leader dies: the server leading the CP tenant's KV stream, made to hold the AP
/// tenant's KV stream's only copy too. CP: operations are answered again once a new leader is
/// elected (refused with `unavailable` until then, never hung); AP: what needs a stream on that
/// server is refused until it returns. Acknowledged writes are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_streams_leader_dies() {
    let (mut cluster, _dir, nodes) = on_the_cluster().await;
    let before = nodes.try_all().await;
    assert_eq!(without_times(&before), expected(|_, _| true), "everything answered first");

    let ap = leaders(&cluster, "ap").await;
    let server = ap[&Stream::Kv];
    let cp = Name::new("cp").unwrap();
    let kv = Stream::Kv.name(&cp);
    let deadline = Instant::now() + RESUME_WITHIN;
    while leaders(&cluster, "cp").await[&Stream::Kv] != server {
        let subject = format!("STREAM.LEADER.STEPDOWN.{kv}");
        let preferred = json!({ "placement": { "preferred": format!("n{server}") } });
        let _: Value = jetstream(&cluster).await.request(subject, &preferred).await.unwrap();
        assert!(Instant::now() < deadline, "cp's KV leader never moved to n{server}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let jobs = nodes.start_jobs().await;
    let killed = Instant::now();
    cluster.kill(server);
    nodes.until_connected().await;
    let ap_expected = expected(|tenant, stream| tenant != "ap" || ap[&stream] != server);
    for round in ROUNDS {
        let down = nodes.try_all().await;
        print(
            &format!("the leader of cp's KV stream, holding ap's KV stream, dies (n{server}), {round}"),
            &down,
        );
        check_bounded(&down);
        // AP: refused exactly where a stream it needs was on the dead server.
        for (cell, seen) in without_times(&down).into_iter().filter(|((_, tenant, _), _)| *tenant == "ap") {
            assert_eq!(seen, ap_expected[&cell], "{cell:?}, {round}");
        }
        // CP: answered, or refused until a new leader serves.
        for (cell, seen) in without_times(&down).into_iter().filter(|((_, tenant, _), _)| *tenant == "cp") {
            assert!(seen == Seen::Answered || seen == Seen::Unavailable, "{cell:?}: {seen}, {round}");
        }
    }
    let deadline = Instant::now() + RESUME_WITHIN;
    loop {
        let cp_seen = nodes.try_tenants(&["cp"]).await;
        check_bounded(&cp_seen);
        if cp_seen.values().all(|(seen, _)| *seen == Seen::Answered) {
            break;
        }
        assert!(Instant::now() < deadline, "cp not answered again within {RESUME_WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  cp answered again by {:?} after the kill (an upper bound: probes come seconds apart)",
        killed.elapsed()
    );

    let returned = Instant::now();
    cluster.restart(server).await;
    let took = nodes.until_all_answered(returned).await;
    println!("  n{server} back: everything answered after {took:?}");
    nodes.jobs_succeed(&jobs).await;
    for (label, node, _) in nodes.each() {
        for tenant in TENANTS {
            let (status, body) = kv_get(node, tenant).await;
            assert_eq!(
                (status, body),
                (200, json!([{ "ok": "v" }])),
                "{label} {tenant}: the acknowledged write"
            );
        }
    }
}

/// (b) A minority (one of three servers) down, leading none of the CP tenant's streams: CP
/// answers everything at once; AP as its streams' places say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_minority_of_servers_is_down() {
    let (mut cluster, _dir, nodes) = on_the_cluster().await;
    // The server holding the fewest of ap's streams.
    let ap = leaders(&cluster, "ap").await;
    let server = (0..3).min_by_key(|server| ap.values().filter(|leader| *leader == server).count()).unwrap();
    move_leaders_off(&cluster, "cp", server).await;

    let jobs = nodes.start_jobs().await;
    cluster.kill(server);
    nodes.until_connected().await;
    let up = |tenant: &str, stream: Stream| tenant == "cp" || ap[&stream] != server;
    for round in ROUNDS {
        let down = nodes.try_all().await;
        print(
            &format!("one of three servers down (n{server}), leading none of cp's streams, {round}"),
            &down,
        );
        check_bounded(&down);
        assert_eq!(without_times(&down), expected(up), "{round}");
    }

    let returned = Instant::now();
    cluster.restart(server).await;
    let took = nodes.until_all_answered(returned).await;
    println!("  n{server} back: everything answered after {took:?}");
    nodes.jobs_succeed(&jobs).await;
}

/// (c) A majority (two of three servers) down, the one left holding the AP tenant's KV stream:
/// CP refuses what needs its streams (no quorum) within the bound, and answers again with no
/// manual step once they return; AP keeps answering what needs only streams on the server left
/// (KV reads may be refused: see below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_majority_of_servers_is_down() {
    let (mut cluster, _dir, nodes) = on_the_cluster().await;
    let ap = leaders(&cluster, "ap").await;
    let left = ap[&Stream::Kv];
    let downed: Vec<usize> = (0..3).filter(|server| *server != left).collect();

    let jobs = nodes.start_jobs().await;
    for server in &downed {
        cluster.kill(*server);
    }
    nodes.until_connected().await;
    let up = |tenant: &str, stream: Stream| tenant == "ap" && ap[&stream] == left;
    for round in ROUNDS {
        let down = nodes.try_all().await;
        let title =
            format!("two of three servers down (n{} and n{}; n{left} left), {round}", downed[0], downed[1]);
        print(&title, &down);
        check_bounded(&down);
        // A KV read goes through JetStream's API to the stream's leader (no direct gets): the
        // server left alone may answer an AP read at first and refuse it later, and a CP
        // stream's leader that was left may answer reads until it notices it lost its quorum
        // and steps down. Either, never anything else; every other cell is as the rule says.
        let (mut seen, mut wanted) = (without_times(&down), expected(up));
        for cell in [("a", "ap"), ("b", "ap"), ("a", "cp"), ("b", "cp")]
            .map(|(node, tenant)| (node, tenant, Operation::KvRead))
        {
            let read = seen.remove(&cell).unwrap();
            assert!(read == Seen::Answered || read == Seen::Unavailable, "{cell:?}: {read}, {round}");
            wanted.remove(&cell);
        }
        assert_eq!(seen, wanted, "{round}");
    }

    let returned = Instant::now();
    for server in &downed {
        cluster.restart(*server).await;
    }
    let took = nodes.until_all_answered(returned).await;
    println!("  the servers back: everything answered after {took:?}");
    nodes.jobs_succeed(&jobs).await;
}

/// (d) A gojinn node cut off from NATS (both nodes here, each through a link that is cut; the
/// cluster is whole): for either mode, what needs no stream is answered (with an async receipt,
/// queued), everything else refused at once with `unavailable`; once the links are mended the
/// queued receipts are appended and both chains verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_node_is_cut_off_from_nats() {
    let cluster = NatsCluster::start().await;
    let dir = mode_specs();
    let server = cluster.seeds().split(',').next().unwrap().to_owned();
    let (mut to_a, mut to_b) = (Link::open(&server).await, Link::open(&server).await);
    let nodes = Nodes::start(dir.path(), (&to_a.url(), &to_b.url())).await;
    let before = nodes.try_all().await;
    assert_eq!(without_times(&before), expected(|_, _| true), "everything answered first");

    let jobs = nodes.start_jobs().await;
    to_a.cut();
    to_b.cut();
    for (label, node, _) in nodes.each() {
        let deadline = Instant::now() + RESUME_WITHIN;
        while node.get("/_gojinn/ready").await.status() != 503 {
            assert!(Instant::now() < deadline, "node {label} never noticed the cut");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for round in ROUNDS {
        let cut = nodes.try_all().await;
        print(&format!("both nodes cut off from NATS, {round}"), &cut);
        assert_eq!(without_times(&cut), expected(|_, _| false), "{round}");
        for (cell, (seen, took)) in &cut {
            if *seen == Seen::Unavailable {
                assert!(*took < Duration::from_secs(1), "{cell:?} refused after {took:?}, not at once");
            }
        }
    }

    let mended = Instant::now();
    to_a.mend().await;
    to_b.mend().await;
    let took = nodes.until_all_answered(mended).await;
    println!("  links mended: everything answered after {took:?}");
    nodes.jobs_succeed(&jobs).await;
    let Nodes { a, b, key } = nodes;
    crate::receipts::stop(a).await;
    crate::receipts::stop(b).await;
    for tenant in TENANTS {
        let verify = std::process::Command::new(env!("CARGO_BIN_EXE_gojinn"))
            .args(["audit", "verify", "--tenant", tenant, "--nats", &cluster.url(), "--output", "json"])
            .arg("--key-file")
            .arg(key.path().join("audit.key"))
            .output()
            .expect("run gojinn audit verify");
        let report: Value = serde_json::from_slice(&verify.stdout).expect("a JSON report");
        println!("  gojinn audit verify --tenant {tenant} --nats: {}, {report}", verify.status);
        assert!(verify.status.success(), "{report:#}");
    }
}

async fn kv_get(node: &Node, tenant: &str) -> (u16, Value) {
    let response =
        node.post(&format!("/{tenant}/state"), json!([{ "op": "kv_get", "key": "k" }]).to_string()).await;
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}
