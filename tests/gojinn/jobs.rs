//! Async jobs over real HTTP with real guests: helpers every jobs test shares (a client of the
//! job and admin routes, a `gojinn` child process), and the scenarios that run on both state
//! backends (`jobs_embedded`, `jobs_nats`). Waiting is always a poll against a deadline.

use crate::support::{Node, SpecDir, specs};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for a job to reach a status.
pub const WITHIN: Duration = Duration::from_secs(30);
pub const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A node's job and admin routes.
pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: String, data_dir: &Path) -> Self {
        let token =
            std::fs::read_to_string(data_dir.join("admin.token")).expect("the node wrote its admin token");
        Self { base, token: token.trim().to_owned(), http: reqwest::Client::new() }
    }

    pub fn of(node: &Node) -> Self {
        Self::new(node.url(""), node.data.path())
    }

    /// Sends `body` to `path` asking for an async call, with extra `headers`.
    pub async fn call_async(&self, path: &str, headers: &[(&str, &str)], body: &str) -> reqwest::Response {
        let mut request = self.http.post(format!("{}{path}", self.base)).body(body.to_owned());
        if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("prefer")) {
            request = request.header("x-gojinn-async", "true");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("POST")
    }

    /// Queues an async call; asserts the 202 and its Location, returns the job id.
    pub async fn enqueue(&self, path: &str, headers: &[(&str, &str)], body: &str) -> String {
        let response = self.call_async(path, headers, body).await;
        assert_eq!(response.status(), 202, "{path}: {:?}", response.text().await);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let id = response.json::<Value>().await.unwrap()["job_id"].as_str().expect("a job_id").to_owned();
        assert_eq!(location, format!("/_gojinn/v1/jobs/{id}"));
        id
    }

    pub async fn job_response(&self, id: &str) -> reqwest::Response {
        self.http.get(format!("{}/_gojinn/v1/jobs/{id}", self.base)).send().await.expect("GET job")
    }

    /// Polls the job until its status is `status`; fails at once if it ends otherwise.
    pub async fn wait_for(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + WITHIN;
        loop {
            let response = self.job_response(id).await;
            assert_eq!(response.status(), 200, "job {id}");
            let job: Value = response.json().await.unwrap();
            if job["status"] == status {
                return job;
            }
            let ended = ["succeeded", "dead"].contains(&job["status"].as_str().unwrap_or_default());
            assert!(!ended, "job {id} ended otherwise than {status}: {job:#}");
            assert!(Instant::now() < deadline, "job {id} not {status} within {WITHIN:?}: {job:#}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// An admin request with the token.
    pub async fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        let url = format!("{}/_gojinn/v1/tenants/{path}", self.base);
        self.http.request(method, url).bearer_auth(&self.token).send().await.expect("admin request")
    }
}

/// The guest's response envelope body of a succeeded job, as JSON.
pub fn result_body(job: &Value) -> Value {
    serde_json::from_str(job["result"]["body"].as_str().expect("a text body")).expect("a JSON body")
}

/// The `gojinn` binary serving a spec dir, as a child process.
pub struct ChildNode {
    child: Child,
    pub api: Api,
    log: PathBuf,
}

impl ChildNode {
    /// Starts `gojinn serve` on a free port with `data` (and NATS at `nats`, if given); returns
    /// once it answers `/_gojinn/ready`.
    pub async fn start(specs: &Path, data: &Path, nats: Option<&str>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = data.join(format!("gojinn-{port}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_gojinn"));
        command.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--specs"]).arg(specs);
        command.arg("--data-dir").arg(data);
        if let Some(url) = nats {
            command.args(["--nats", url]);
        }
        let output = std::fs::File::create(&log).unwrap();
        let child = command
            .env("RUST_LOG", "info,gojinn::jobs=debug")
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("start gojinn");
        let base = format!("http://127.0.0.1:{port}");
        let mut node =
            Self { child, api: Api { base, token: String::new(), http: reqwest::Client::new() }, log };
        node.wait_ready().await;
        node.api = Api::new(node.api.base.clone(), data);
        node
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("{}/_gojinn/ready", self.api.base);
        loop {
            if self.api.http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gojinn exited ({status}) before it was ready:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "gojinn not ready within a minute:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, as a crash would; waits for the process to be gone.
    pub fn kill_9(mut self) {
        self.child.kill().expect("kill -9 gojinn");
        self.child.wait().expect("reap gojinn");
    }

    /// SIGTERM, as a service manager stops a node; returns its exit status once it has exited.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success(), "kill -TERM");
        let deadline = Instant::now() + WITHIN;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "gojinn did not exit after SIGTERM:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One function of guest-jobprobe, answering `status`, with fast retries.
pub fn probe_specs(dir: &SpecDir, status: u16) {
    let function = format!(
        "env: {{ STATUS: \"{status}\" }}\njobs: {{ maxDeliver: 2, backoff: [50ms] }}\nlimits: {{ timeout: 2s }}"
    );
    dir.write("specs.yaml", &specs("acme", "", &[("probe", "guest-jobprobe", &function)]));
}

/// Scenario on `probe_specs(dir, 200)`: 202 with Location, the guest's result once succeeded,
/// Prefer: respond-async acknowledged, and one job per idempotency key.
pub async fn async_calls_succeed_with_the_guests_result(api: &Api) {
    let id = api.enqueue("/acme/probe", &[("traceparent", TRACEPARENT)], "payload").await;
    assert!(id.starts_with("acme.") && id.len() == "acme.".len() + 32, "{id}");
    let job = api.wait_for(&id, "succeeded").await;
    assert_eq!((job["attempts"].as_u64(), job["error"].as_str()), (Some(1), None), "{job:#}");
    assert_eq!((job["tenant"].as_str(), job["function"].as_str()), (Some("acme"), Some("probe")));
    assert!(job["created_ms"].as_u64() <= job["updated_ms"].as_u64());
    assert_eq!(job["result"]["status"], 200);
    let seen = result_body(&job);
    assert_eq!(seen["job_id"], id.as_str(), "the guest saw its job id");
    assert_eq!(seen["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "the trace goes on in the job");
    assert_eq!(seen["body"], "payload");

    let response = api.call_async("/acme/probe", &[("prefer", "respond-async")], "").await;
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["preference-applied"], "respond-async");

    let key = [("idempotency-key", "order-42")];
    let first = api.enqueue("/acme/probe", &key, "once").await;
    let again = api.enqueue("/acme/probe", &key, "once").await;
    assert_eq!(first, again, "the same key is the same job");
    assert_ne!(first, api.enqueue("/acme/probe", &[("idempotency-key", "order-43")], "").await);
    let job = api.wait_for(&first, "succeeded").await;
    assert_eq!(job["attempts"], 1, "the deduplicated job ran once: {job:#}");
}

/// Scenario on `probe_specs(dir, 503)`: a failing job is retried, then dead and listed as dead;
/// fixed by a redeploy and redriven, it runs again on the new revision and succeeds.
pub async fn dead_jobs_are_listed_and_redriven(dir: &SpecDir, api: &Api) {
    let id = api.enqueue("/acme/probe", &[], "").await;
    let dead = api.wait_for(&id, "dead").await;
    assert_eq!(dead["attempts"], 2, "maxDeliver 2: {dead:#}");
    assert!(dead["error"].as_str().unwrap().contains("503"), "{dead:#}");

    let listed = api.admin(reqwest::Method::GET, "acme/jobs?status=dead").await;
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().await.unwrap();
    let ids: Vec<&str> = listed["jobs"].as_array().unwrap().iter().filter_map(|j| j["id"].as_str()).collect();
    assert_eq!(ids, [id.as_str()]);
    let succeeded = api.admin(reqwest::Method::GET, "acme/jobs?status=succeeded").await;
    assert_eq!(succeeded.json::<Value>().await.unwrap()["jobs"], serde_json::json!([]));

    probe_specs(dir, 200);
    let deadline = Instant::now() + WITHIN;
    while api.http.get(format!("{}/acme/probe", api.base)).send().await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "the fixed revision was not deployed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let redriven = api.admin(reqwest::Method::POST, &format!("acme/jobs/{id}/redrive")).await;
    assert_eq!(redriven.status(), 202);
    let job = api.wait_for(&id, "succeeded").await;
    assert_eq!(job["attempts"], 1, "a redrive starts counting again: {job:#}");
    assert_eq!(job["result"]["status"], 200);

    let again = api.admin(reqwest::Method::POST, &format!("acme/jobs/{id}/redrive")).await;
    assert_eq!(again.status(), 409, "only a dead job can be redriven");
}

/// guest-slow serving `/acme/slow` with a timeout of 3s and the shortest ack wait (1s, so 4s).
pub fn slow_specs() -> SpecDir {
    let dir = SpecDir::new();
    dir.module("guest-slow");
    let function = "limits: { timeout: 3s }\njobs: { ackWait: 1s, maxDeliver: 3, backoff: [50ms] }";
    dir.write("specs.yaml", &specs("acme", "", &[("slow", "guest-slow", function)]));
    dir
}

/// Scenario on `slow_specs`: a job running when its node is killed with SIGKILL runs again on
/// the restarted node and succeeds, its record showing the redelivery.
pub async fn a_job_outlives_a_kill_9_of_its_node(nats: Option<&str>) {
    let dir = slow_specs();
    let data = tempfile::tempdir().unwrap();

    let node = ChildNode::start(dir.path(), data.path(), nats).await;
    let id = node.api.enqueue("/acme/slow?ms=1500", &[], "").await;
    let running = node.api.wait_for(&id, "running").await;
    assert_eq!(running["attempts"], 1);
    node.kill_9();

    let node = ChildNode::start(dir.path(), data.path(), nats).await;
    let job = node.api.wait_for(&id, "succeeded").await;
    assert_eq!(
        job["attempts"],
        2,
        "the attempt cut short by the kill, then one to success: {job:#}\n{}",
        node.log()
    );
    assert_eq!(job["error"], Value::Null);
    assert_eq!(job["result"]["body"], "slept 1500");
}
