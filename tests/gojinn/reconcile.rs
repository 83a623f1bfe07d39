//! The reconciler against real backends: idempotent apply (counted writes), prune and `keep`,
//! drift corrected on a real nats-server, a failing tenant not blocking the others, policy
//! denials, `gojinn plan|apply` exit codes, and nodes serving what was applied: a git source
//! followed through the webhook, and a second node following the lease holder over NATS.

use crate::support::nats::NatsServer;
use crate::support::{Node, SpecDir, specs};
use gojinn::reconcile::policy::Policies;
use gojinn::reconcile::{Action, Admitted, Reconciler, ResourceState};
use gojinn::state::State;
use gojinn::state::nats::NatsBackend;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(30);

fn admitted(dir: &SpecDir, defaults: bool) -> Admitted {
    let loaded = gojinn::spec::load_dir(dir.path(), &gojinn::spec::Bounds::default());
    let policies = Policies::load_with(defaults, Some(dir.path())).expect("policies load");
    Admitted::new(loaded, None, &policies).expect("policies evaluate")
}

async fn nats(server: &NatsServer) -> State {
    let backend = NatsBackend::connect(&server.url()).await.expect("connect to nats");
    State::from_backend(Arc::new(backend))
}

/// Two tenants, three functions; `hello` of `beta` marked keep.
fn two_tenants(dir: &SpecDir) {
    dir.module("hello").module("echo");
    dir.write("alpha.yaml", &specs("alpha", "", &[("hello", "hello", ""), ("echo", "echo", "")]));
    let beta = specs("beta", "", &[("hello", "hello", "")])
        .replace("name: hello, tenant: beta", "name: hello, tenant: beta, keep: true");
    dir.write("beta.yaml", &beta);
}

async fn idempotent_apply_prune_and_keep(state: State) {
    let dir = SpecDir::new();
    two_tenants(&dir);
    let reconciler = Reconciler::new(state.clone());

    let first = reconciler.apply(&admitted(&dir, false)).await.expect("apply");
    assert_eq!(first.failures().count(), 0, "{:?}", first.outcomes);
    assert_eq!(first.plan.counts(), [5, 0, 0, 0], "{:#?}", first.plan);
    assert!(first.writes > 0);

    let again = reconciler.apply(&admitted(&dir, false)).await.expect("apply again");
    assert!(again.plan.is_empty(), "{:#?}", again.plan);
    assert_eq!(again.writes, 0, "a second apply of the same specs writes nothing");
    assert!(reconciler.plan(&admitted(&dir, false)).await.unwrap().is_empty());

    // Change a limit: exactly that field is planned.
    dir.write(
        "alpha.yaml",
        &specs("alpha", "", &[("hello", "hello", "limits: { memory: 32Mi }"), ("echo", "echo", "")]),
    );
    let plan = reconciler.plan(&admitted(&dir, false)).await.unwrap();
    assert_eq!(plan.changes.len(), 1, "{plan:#?}");
    assert_eq!(plan.changes[0].action, Action::Update);
    assert_eq!(plan.changes[0].resource.to_string(), "function/alpha/hello");
    assert!(plan.changes[0].fields.iter().any(|f| f.path == "limits.memory"), "{plan:#?}");

    // Remove beta and alpha/echo: echo and nothing of beta's kept function go.
    std::fs::remove_file(dir.path().join("beta.yaml")).unwrap();
    dir.write("alpha.yaml", &specs("alpha", "", &[("hello", "hello", "")]));
    let pruned = reconciler.apply(&admitted(&dir, false)).await.expect("apply prune");
    let deleted: Vec<String> = pruned
        .plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| c.resource.to_string())
        .collect();
    assert_eq!(deleted, ["function/alpha/echo"], "{:#?}", pruned.plan);
    let spared: Vec<String> = pruned.plan.spared.iter().map(|s| s.resource.to_string()).collect();
    assert_eq!(spared, ["tenant/beta", "function/beta/hello"]);
    let records = state.control.records("applied.").await.unwrap();
    assert!(records.contains_key("applied.function/beta/hello"));
    assert!(!records.contains_key("applied.function/alpha/echo"));
    // echo's module is no longer used by anything: collected.
    assert_eq!(pruned.blobs_collected, 1);
    assert_eq!(state.control.blobs().await.unwrap().len(), 1);

    let status = gojinn::reconcile::status::read(&state).await.unwrap();
    let kept = status.resources.iter().find(|r| r.resource.to_string() == "function/beta/hello").unwrap();
    assert_eq!(kept.state, ResourceState::Kept);
    assert!(reconciler.apply(&admitted(&dir, false)).await.unwrap().writes == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_apply_is_idempotent_prunes_and_keeps() {
    let (_dir, state) = crate::support::embedded_state();
    idempotent_apply_prune_and_keep(state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_apply_is_idempotent_prunes_and_keeps() {
    let server = NatsServer::start().await;
    idempotent_apply_prune_and_keep(nats(&server).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_behind_gojinns_back_is_detected_corrected_and_reported() {
    let server = NatsServer::start().await;
    let state = nats(&server).await;
    let dir = SpecDir::new();
    dir.module("hello");
    dir.write("acme.yaml", &specs("acme", "", &[("hello", "hello", "")]));
    let reconciler = Reconciler::new(state.clone());
    reconciler.apply(&admitted(&dir, false)).await.unwrap();

    // By hand: delete the tenant's dead-letter stream and edit the applied function record.
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.delete_stream("GOJINN_DLQ_ACME").await.expect("delete the stream by hand");
    let key = "applied.function/acme/hello";
    let mut record: serde_json::Value =
        serde_json::from_slice(&state.control.records(key).await.unwrap()[key]).unwrap();
    record["spec"]["limits"]["memory"] = serde_json::json!(1 << 30);
    state.control.put_record(key, serde_json::to_vec(&record).unwrap().into()).await.unwrap();

    let plan = reconciler.plan(&admitted(&dir, false)).await.unwrap();
    assert_eq!(plan.changes.len(), 2, "{plan:#?}");
    assert!(plan.changes.iter().all(|c| c.action == Action::Repair), "{plan:#?}");
    let tenant = plan.changes.iter().find(|c| c.resource.to_string() == "tenant/acme").unwrap();
    assert!(tenant.drift.iter().any(|d| d.contains("GOJINN_DLQ_ACME")), "{tenant:#?}");
    let function = plan.changes.iter().find(|c| c.resource.to_string() == "function/acme/hello").unwrap();
    assert!(function.fields.iter().any(|f| f.path == "limits.memory"), "{function:#?}");

    let report = reconciler.apply(&admitted(&dir, false)).await.unwrap();
    assert_eq!(report.failures().count(), 0, "{:?}", report.outcomes);
    js.get_stream("GOJINN_DLQ_ACME").await.expect("the stream is back");
    assert!(reconciler.plan(&admitted(&dir, false)).await.unwrap().is_empty());
    let status = gojinn::reconcile::status::read(&state).await.unwrap();
    let tenant = status.resources.iter().find(|r| r.resource.to_string() == "tenant/acme").unwrap();
    assert!(
        tenant.drift.iter().any(|d| d.contains("GOJINN_DLQ_ACME")),
        "the correction is reported: {tenant:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tenant_does_not_block_the_others() {
    // Replicas 3 cannot be placed on a single server: that tenant fails, the other applies.
    let server = NatsServer::start().await;
    let state = nats(&server).await;
    let dir = SpecDir::new();
    dir.module("hello");
    dir.write("big.yaml", &specs("big", "replicas: 3", &[("hello", "hello", "")]));
    dir.write("small.yaml", &specs("small", "", &[("hello", "hello", "")]));
    let report = Reconciler::new(state.clone()).apply(&admitted(&dir, false)).await.unwrap();
    let failed: Vec<String> = report.failures().map(|(id, _)| id.to_string()).collect();
    assert_eq!(failed, ["tenant/big", "function/big/hello"], "{:?}", report.outcomes);
    let records = state.control.records("applied.").await.unwrap();
    assert!(records.contains_key("applied.function/small/hello"));
    assert!(!records.contains_key("applied.tenant/big"));
    let status = gojinn::reconcile::status::read(&state).await.unwrap();
    let big = status.resources.iter().find(|r| r.resource.to_string() == "tenant/big").unwrap();
    assert_eq!(big.state, ResourceState::Failed);
    assert!(big.message.as_deref().is_some_and(|m| !m.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_function_is_reported_and_nothing_of_it_is_applied() {
    let (_dir, state) = crate::support::embedded_state();
    let dir = SpecDir::new();
    dir.module("hello");
    dir.write(
        "acme.yaml",
        &specs(
            "acme",
            "",
            &[("open", "hello", "grants: { http: { allow: [\"*.example.com:443\"] } }"), ("ok", "hello", "")],
        ),
    );
    let admitted = admitted(&dir, true);
    // Unpinned modules are denied by the default policies too; both messages name the function.
    let denied: Vec<&str> = admitted.denials.iter().map(|d| d.resource.as_str()).collect();
    assert!(denied.contains(&"function/acme/open"), "{:?}", admitted.denials);
    let wildcard =
        admitted.denials.iter().find(|d| d.message.contains("*.example.com:443")).expect("egress denial");
    assert_eq!(wildcard.resource, "function/acme/open");
    let report = Reconciler::new(state.clone()).apply(&admitted).await.unwrap();
    assert!(report.plan.changes.iter().all(|c| c.resource.to_string() != "function/acme/open"));
    let records = state.control.records("applied.function/acme/open").await.unwrap();
    assert!(records.is_empty(), "nothing of a denied function is applied");
    let status = gojinn::reconcile::status::read(&state).await.unwrap();
    let open = status.resources.iter().find(|r| r.resource.to_string() == "function/acme/open").unwrap();
    assert_eq!(open.state, ResourceState::Denied);
    assert!(open.message.as_deref().unwrap().contains("*.example.com:443"));
}

fn gojinn(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gojinn")).args(args).output().expect("run gojinn");
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), format!("{}{stderr}", String::from_utf8_lossy(&output.stdout)))
}

#[test]
fn plan_and_apply_exit_codes_tell_no_changes_from_changes_from_errors() {
    let dir = SpecDir::new();
    dir.module("hello");
    dir.write("acme.yaml", &specs("acme", "", &[("hello", "hello", "")]));
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let specs_dir = dir.path().to_str().unwrap();
    let common = ["--data-dir", data_dir, "--no-default-policies"];
    let run = |verb: &str, extra: &[&str]| {
        let mut args = vec![verb, specs_dir];
        args.extend(common);
        args.extend(extra);
        gojinn(&args)
    };

    let (code, out) = run("plan", &["--output", "json"]);
    assert_eq!(code, 0, "a plan that succeeds exits 0, whatever it shows: {out}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("plan --output json is JSON");
    assert_eq!(json["plan"]["changes"].as_array().unwrap().len(), 2);
    let (code, out) = run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 2, "changes pending, as terraform's -detailed-exitcode says: {out}");
    let (code, out) = run("apply", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("+ tenant/acme"), "{out}");
    let (code, out) = run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 0, "no changes: {out}");
    assert!(out.contains("No changes"), "{out}");

    dir.write("broken.yaml", "apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: { name: x }\n");
    let (code, out) = run("plan", &["--detailed-exitcode"]);
    assert_eq!(code, 1, "an invalid document is an error: {out}");
    assert!(out.contains("broken.yaml"), "{out}");
}

#[test]
fn schema_describes_both_kinds() {
    let (code, out) = gojinn(&["schema"]);
    assert_eq!(code, 0, "{out}");
    let schema: serde_json::Value = serde_json::from_str(&out).expect("the schema is JSON");
    let text = schema.to_string();
    assert!(text.contains("Tenant") && text.contains("Function"), "{text}");
}

/// A git repository in a temp dir, driven with the git CLI.
struct Repo {
    dir: SpecDir,
}

impl Repo {
    fn new() -> Self {
        let repo = Repo { dir: SpecDir::new() };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run git");
        assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

use crate::support::api::admin;

async fn wait_for_commit(node: &Node, commit: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let status: serde_json::Value =
            admin(node, reqwest::Method::GET, "/_gojinn/v1/status").await.json().await.unwrap();
        if status["commit"] == commit {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "commit {commit} not applied: {status:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_follows_a_git_branch_through_the_webhook_and_a_revert_reverts() {
    let repo = Repo::new();
    repo.dir.module("hello").module("echo");
    repo.dir.write("acme.yaml", &specs("acme", "", &[("hello", "hello", "")]));
    let first = repo.commit("hello");

    let data = tempfile::tempdir().unwrap();
    let mut config = Node::config(repo.dir.path(), data.path());
    config.reconcile.git = Some(repo.dir.path().to_str().unwrap().to_string());
    config.reconcile.reference = Some("main".into());
    config.reconcile.default_policies = Some(false);
    config.watch = false;
    let node = Node::start_config(config, data).await;
    wait_for_commit(&node, &first).await;
    assert_eq!(node.get("/acme/hello?name=git").await.status(), 200);
    assert_eq!(node.get("/acme/echo").await.status(), 404);

    // The webhook without the token is refused.
    let anonymous = node.client.post(node.url("/_gojinn/v1/reconcile")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    repo.dir.write("acme.yaml", &specs("acme", "", &[("hello", "hello", ""), ("echo", "echo", "")]));
    let second = repo.commit("echo");
    assert_eq!(admin(&node, reqwest::Method::POST, "/_gojinn/v1/reconcile").await.status(), 202);
    let status = wait_for_commit(&node, &second).await;
    assert!(status["resources"].as_array().unwrap().iter().any(|r| r["resource"] == "function/acme/echo"));
    node.eventually("/acme/echo", WITHIN, |r| r.status() == 200).await;

    repo.git(&["revert", "--no-edit", "HEAD"]);
    let reverted = repo.git(&["rev-parse", "HEAD"]);
    admin(&node, reqwest::Method::POST, "/_gojinn/v1/reconcile").await;
    wait_for_commit(&node, &reverted).await;
    node.eventually("/acme/echo", WITHIN, |r| r.status() == 404).await;
    node.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_reconciles_and_another_serves_what_it_applied() {
    let nats = NatsServer::start().await;
    let leader_specs = SpecDir::new();
    leader_specs.module("hello");
    leader_specs.write("acme.yaml", &specs("acme", "", &[("hello", "hello", "")]));
    // The follower's own spec dir is empty: it serves only what the lease holder applied.
    let follower_specs = SpecDir::new();
    let leader = Node::start_on_nats(leader_specs.path(), &nats.url()).await;
    assert_eq!(leader.get("/acme/hello").await.status(), 200);
    let follower = Node::start_on_nats(follower_specs.path(), &nats.url()).await;
    follower.eventually("/acme/hello", WITHIN, |r| r.status() == 200).await;

    // A change applied by the leader reaches the follower.
    let revision_of = |r: &reqwest::Response| r.headers()["gojinn-revision"].to_str().unwrap().to_string();
    let old = revision_of(&leader.get("/acme/hello").await);
    leader_specs.write("acme.yaml", &specs("acme", "", &[("hello", "hello", "env: { GREETING: hey }")]));
    let changed = leader.eventually("/acme/hello", WITHIN, |r| revision_of(r) != old).await;
    let revision = revision_of(&changed);
    // Told by the watch on the applied state: well before the follower's safety read, which
    // comes every 30 s (the first 30 s after it started, later than this wait ends).
    follower
        .eventually("/acme/hello", Duration::from_secs(10), |r| {
            r.headers().get("gojinn-revision").is_some_and(|v| v.to_str().unwrap() == revision)
        })
        .await;

    // `gojinn apply` takes the same lease: while a node holds it, it refuses.
    let (url, dir) = (nats.url(), leader_specs.path().to_str().unwrap().to_string());
    let (code, out) = tokio::task::spawn_blocking(move || {
        gojinn(&["apply", &dir, "--nats", &url, "--no-default-policies", "--data-dir", "/nonexistent-unused"])
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("reconcile lease"), "{out}");
}
