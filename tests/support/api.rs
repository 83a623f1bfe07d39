//! A client of a node's job and admin routes ([`Api`], [`admin`]) and a `gojinn` child process
//! ([`ChildNode`]), shared by the jobs, receipts, MCP, metrics, outage and reconcile tests.

use super::Node;
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
        Self::start_env(specs, data, nats, &[]).await
    }

    /// [`ChildNode::start`] with `env` set in its environment (over its default `RUST_LOG`).
    pub async fn start_env(specs: &Path, data: &Path, nats: Option<&str>, env: &[(&str, &str)]) -> Self {
        Self::start_configured(specs, data, nats, env, None).await
    }

    /// [`ChildNode::start_env`] with the node configuration `config` (YAML, written into
    /// `data`), under the command line's settings.
    pub async fn start_configured(
        specs: &Path,
        data: &Path,
        nats: Option<&str>,
        env: &[(&str, &str)],
        config: Option<&str>,
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = data.join(format!("gojinn-{port}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_gojinn"));
        command.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--specs"]).arg(specs);
        command.arg("--data-dir").arg(data);
        if let Some(url) = nats {
            command.args(["--nats", url]);
        }
        if let Some(yaml) = config {
            std::fs::create_dir_all(data).unwrap();
            let file = data.join("gojinn.yaml");
            std::fs::write(&file, yaml).expect("write the node configuration");
            command.arg("--config").arg(file);
        }
        let output = std::fs::File::create(&log).unwrap();
        let child = command
            .env("RUST_LOG", "info,gojinn::jobs=debug")
            .envs(env.iter().copied())
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

    /// The process's resident memory (`VmRSS`), in bytes.
    pub fn resident_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("read its status");
        let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("a VmRSS line");
        let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmRSS in kB");
        kib * 1024
    }

    /// SIGKILL, as a crash would; waits for the process to be gone.
    pub fn kill_9(mut self) {
        self.child.kill().expect("kill -9 gojinn");
        self.child.wait().expect("reap gojinn");
    }

    /// SIGTERM, as a service manager stops a node; returns its exit status once it has exited.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        self.sigterm();
        self.exited(WITHIN).await
    }

    /// Sends SIGTERM and returns at once.
    pub fn sigterm(&self) {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success(), "kill -TERM");
    }

    /// Waits for the process to exit; fails if it still runs after `within`.
    pub async fn exited(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "gojinn still runs after {within:?}:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the node's log has a line containing `text`; fails after [`WITHIN`].
    pub async fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + WITHIN;
        while !self.log().contains(text) {
            assert!(Instant::now() < deadline, "the log never said {text:?}:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `count` guest instances run on the node (its `gojinn_active_instances`).
    pub async fn wait_active_instances(&self, count: u32) {
        let deadline = Instant::now() + WITHIN;
        let url = format!("{}/_gojinn/metrics", self.api.base);
        let wanted = format!("\ngojinn_active_instances {count}\n");
        loop {
            let metrics = self.api.http.get(&url).send().await.expect("GET metrics").text().await.unwrap();
            if metrics.contains(&wanted) {
                return;
            }
            assert!(Instant::now() < deadline, "never {count} instances running:\n{metrics}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `method` `path` (from `/_gojinn/...`) on `node`, with its admin token.
pub async fn admin(node: &Node, method: reqwest::Method, path: &str) -> reqwest::Response {
    let api = Api::of(node);
    api.http.request(method, node.url(path)).bearer_auth(&api.token).send().await.expect("admin request")
}
