//! Status tells the truth: a function whose module a node cannot load is `failed` with the
//! error, a denied resource `denied` with the policy's message, an invalid document `invalid`
//! with its file and line, and the applied commit is marked partial when some of it is not
//! served; `gojinn_reconciles_total` and `gojinn_deploy_failures_total` count passes and
//! failed deploys.

use crate::support::{Node, SpecDir, specs};
use gojinn::reconcile::policy::Policies;
use gojinn::reconcile::{Admitted, Reconciler, ResourceState, ResourceStatus, Status};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(30);

async fn admin_status(node: &Node) -> Status {
    let token = std::fs::read_to_string(node.data.path().join("admin.token")).unwrap();
    let response =
        node.client.get(node.url("/_gojinn/v1/status")).bearer_auth(token.trim()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn resource<'a>(status: &'a Status, id: &str) -> &'a ResourceStatus {
    status
        .resources
        .iter()
        .find(|r| r.resource.to_string() == id)
        .unwrap_or_else(|| panic!("{id} missing from {status:#?}"))
}

/// A tenant with a good function and one per kind of module a node cannot load: not
/// WebAssembly, truncated, and asking for more memory than the node allows (the test node
/// allows 128Mi per instance).
fn bad_modules(dir: &SpecDir) {
    dir.module("hello");
    dir.truncated_module("hello", "truncated");
    std::fs::write(dir.path().join("modules/notwasm.wasm"), b"hello, I am text").unwrap();
    dir.write(
        "acme.yaml",
        &specs(
            "acme",
            "",
            &[
                ("hello", "hello", ""),
                ("notwasm", "notwasm", ""),
                ("truncated", "truncated", ""),
                ("greedy", "hello", "limits: { memory: 256Mi }"),
            ],
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_the_node_cannot_load_is_failed_with_its_error_not_applied() {
    let dir = SpecDir::new();
    bad_modules(&dir);
    let node = Node::start(&dir).await;
    assert_eq!(node.get("/acme/hello").await.status(), 200);
    let status = admin_status(&node).await;

    assert_eq!(resource(&status, "function/acme/hello").state, ResourceState::Applied);
    let truncated = resource(&status, "function/acme/truncated");
    assert_eq!(truncated.state, ResourceState::Failed, "{truncated:?}");
    assert!(truncated.message.as_deref().unwrap().contains("truncated.wasm"), "{truncated:?}");
    assert_eq!(truncated.hash, None, "nothing of it was ever applied");
    let greedy = resource(&status, "function/acme/greedy");
    assert_eq!(greedy.state, ResourceState::Failed, "{greedy:?}");
    assert!(greedy.message.as_deref().unwrap().contains("runtime.maxMemoryPerInstance"), "{greedy:?}");
    let notwasm = resource(&status, "function/acme/notwasm");
    assert_eq!(notwasm.state, ResourceState::Invalid, "{notwasm:?}");
    let message = notwasm.message.as_deref().unwrap();
    assert!(
        message.starts_with("acme.yaml:12: spec.module.path:"),
        "file and line of the document: {message}"
    );
    assert!(message.contains("is not a WebAssembly module"), "{message}");
    assert!(status.partial, "{status:#?}");
    for unserved in ["/acme/truncated", "/acme/greedy", "/acme/notwasm"] {
        assert_eq!(node.get(unserved).await.status(), 404, "{unserved}");
    }
}

fn read(dir: &SpecDir, commit: &str) -> Admitted {
    let loaded = gojinn::spec::load_dir(dir.path(), &gojinn::spec::Bounds::default());
    let policies = Policies::load_with(true, Some(dir.path())).expect("policies load");
    Admitted::new(loaded, Some(commit.into()), &policies).expect("policies evaluate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_and_invalid_specs_say_so_and_the_commit_shows_what_is_served() {
    let (_data, state) = crate::support::embedded_state();
    let reconciler = Reconciler::new(state.clone());
    let dir = SpecDir::new();
    dir.module("hello");
    let bytes = std::fs::read(dir.path().join("modules/hello.wasm")).unwrap();
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    // Modules pinned by sha256, as the default policies want.
    let acme = |hello_sha: &str, open_extra: &str| {
        format!(
            "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: {{ name: acme }}\n---\n\
             apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: {{ name: hello, tenant: acme }}\nspec:\n  \
             module: {{ path: modules/hello.wasm, sha256: \"{hello_sha}\" }}\n---\n\
             apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: {{ name: open, tenant: acme }}\nspec:\n  \
             module: {{ path: modules/hello.wasm, sha256: \"{sha256}\" }}\n{open_extra}"
        )
    };
    dir.write("acme.yaml", &acme(&sha256, ""));
    let first = read(&dir, "c1");
    assert!(first.is_clean(), "{:?} {:?}", first.denials, first.invalid);
    reconciler.apply(&first).await.unwrap();
    let status = gojinn::reconcile::status::read(&state).await.unwrap();
    assert_eq!(status.commit.as_deref(), Some("c1"));
    assert!(!status.partial, "{status:#?}");

    // c2: hello's pinned sha256 is wrong, open asks for wildcard egress, and a file is not YAML.
    let egress = "  grants: { http: { allow: [\"*.example.com:443\"] } }\n";
    dir.write("acme.yaml", &acme(&"0".repeat(64), egress));
    dir.write("broken.yaml", "- not\n- a mapping\n");
    let admitted = read(&dir, "c2");
    reconciler.apply(&admitted).await.unwrap();
    let status = gojinn::reconcile::status::read(&state).await.unwrap();

    let hello = resource(&status, "function/acme/hello");
    assert_eq!(hello.state, ResourceState::Invalid, "{hello:?}");
    let message = hello.message.as_deref().unwrap();
    assert!(message.starts_with("acme.yaml:5: spec.module.sha256:"), "file and line: {message}");
    assert_eq!(hello.commit.as_deref(), Some("c1"), "still served at the commit it was applied from");
    let open = resource(&status, "function/acme/open");
    assert_eq!(open.state, ResourceState::Denied, "{open:?}");
    assert!(open.message.as_deref().unwrap().contains("*.example.com:443"), "{open:?}");
    assert_eq!(open.commit.as_deref(), Some("c1"));
    assert_eq!(status.invalid.len(), 1, "{status:#?}");
    assert_eq!(status.invalid[0].location.file.to_str(), Some("broken.yaml"));
    assert_eq!(status.invalid[0].location.line, Some(1));
    assert_eq!(status.commit.as_deref(), Some("c2"));
    assert!(status.partial, "c2 is only partially applied: {status:#?}");
    let text = gojinn::reconcile::render::status_text(&status, false);
    assert!(text.starts_with("Applied commit: c2, partially:"), "{text}");
    assert!(text.contains("invalid  function/acme/hello @c1"), "{text}");
    assert!(text.contains("denied   function/acme/open @c1"), "{text}");
    assert!(text.contains("invalid  broken.yaml:1: a document must be a mapping"), "{text}");

    // Fixed again: everything is applied at c3 and nothing is partial.
    std::fs::remove_file(dir.path().join("broken.yaml")).unwrap();
    dir.write("acme.yaml", &acme(&sha256, ""));
    reconciler.apply(&read(&dir, "c3")).await.unwrap();
    let status = gojinn::reconcile::status::read(&state).await.unwrap();
    assert!(!status.partial && status.invalid.is_empty(), "{status:#?}");
    assert!(status.resources.iter().all(|r| r.state == ResourceState::Applied), "{status:#?}");
}

/// The value of the sample `name{labels}` in a metrics scrape, 0 when absent.
fn sample(text: &str, name_and_labels: &str) -> u64 {
    text.lines().find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_passes_and_failed_deploys_are_counted() {
    let dir = SpecDir::new();
    dir.module("hello");
    dir.write("acme.yaml", &specs("acme", "", &[("hello", "hello", "")]));
    let node = Node::start(&dir).await;
    let text = node.get("/_gojinn/metrics").await.text().await.unwrap();
    assert_eq!(sample(&text, r#"gojinn_reconciles_total{result="applied"}"#), 1, "{text}");
    assert_eq!(sample(&text, r#"gojinn_deploy_failures_total{tenant="acme"}"#), 0, "{text}");

    dir.truncated_module("hello", "truncated");
    dir.write("acme.yaml", &specs("acme", "", &[("hello", "hello", ""), ("truncated", "truncated", "")]));
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let text = node.get("/_gojinn/metrics").await.text().await.unwrap();
        let partial = sample(&text, r#"gojinn_reconciles_total{result="partial"}"#);
        let failed = sample(&text, r#"gojinn_deploy_failures_total{tenant="acme"}"#);
        if partial >= 1 && failed >= 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no partial pass or failed deploy counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(node.get("/acme/hello").await.status(), 200, "the good function keeps serving");
}
