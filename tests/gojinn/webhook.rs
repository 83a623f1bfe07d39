//! The reconcile webhook as git hosts call it, over real HTTP against a real node: GitHub's
//! `X-Hub-Signature-256` and GitLab's `X-Gitlab-Token` with the configured secret queue a pass;
//! a bad or missing one is 401; the admin token keeps working; a configured secret file that
//! does not exist stops the node from starting.

use crate::support::{Node, SpecDir, error_code, specs};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(20);
const SECRET: &str = "correct horse battery staple";
const WEBHOOK: &str = "/_gojinn/v1/reconcile";
/// What GitHub sends on a push, in short.
const PUSH: &str = r#"{"ref":"refs/heads/main","after":"0123456789abcdef0123456789abcdef01234567"}"#;

/// A node serving `hello` that reconciles only when asked (no watch), with `secret` in its
/// `reconcile.webhook.secretFile`, and its spec directory.
async fn node(secret: Option<&str>) -> (SpecDir, Node) {
    let dir = SpecDir::new();
    dir.module("hello").module("echo");
    dir.write("acme.yaml", &specs("acme", "", &[("hello", "hello", "")]));
    let data = tempfile::tempdir().unwrap();
    let mut config = Node::config(dir.path(), data.path());
    config.watch = false;
    if let Some(secret) = secret {
        let file = data.path().join("webhook.secret");
        std::fs::write(&file, format!("{secret}\n")).unwrap();
        config.reconcile.webhook.secret_file = Some(file);
    }
    (dir, Node::start_config(config, data).await)
}

/// Adds `echo` to the specs: served only once a pass has run.
fn add_echo(dir: &SpecDir) {
    dir.write("acme.yaml", &specs("acme", "", &[("hello", "hello", ""), ("echo", "echo", "")]));
}

fn github_signature(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post(node: &Node, headers: &[(&str, &str)], body: &str) -> reqwest::Response {
    let mut request = node.client.post(node.url(WEBHOOK)).body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn assert_refused(response: reqwest::Response, case: &str) {
    let (status, code, message) = error_code(response).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"), "{case}: {message}");
    assert!(message.contains("X-Hub-Signature-256"), "{case}: the message says what is accepted: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_signature_of_the_body_queues_a_pass_and_a_bad_or_missing_one_is_refused() {
    let (dir, node) = node(Some(SECRET)).await;
    assert_eq!(node.get("/acme/echo").await.status(), 404);
    add_echo(&dir);

    let wrong_secret = github_signature("another secret", PUSH);
    assert_refused(post(&node, &[("x-hub-signature-256", &wrong_secret)], PUSH).await, "another secret")
        .await;
    let of_another_body = github_signature(SECRET, "{}");
    assert_refused(post(&node, &[("x-hub-signature-256", &of_another_body)], PUSH).await, "another body")
        .await;
    assert_refused(post(&node, &[("x-hub-signature-256", "sha256=00")], PUSH).await, "malformed").await;
    assert_refused(post(&node, &[], PUSH).await, "no signature").await;

    let signature = github_signature(SECRET, PUSH);
    let accepted =
        post(&node, &[("x-hub-signature-256", &signature), ("x-github-event", "push")], PUSH).await;
    assert_eq!(accepted.status(), 202);
    assert_eq!(accepted.json::<serde_json::Value>().await.unwrap(), serde_json::json!({ "queued": true }));
    node.eventually("/acme/echo", WITHIN, |r| r.status() == 200).await;
    node.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_token_equal_to_the_secret_queues_a_pass_and_another_is_refused() {
    let (dir, node) = node(Some(SECRET)).await;
    add_echo(&dir);

    assert_refused(post(&node, &[("x-gitlab-token", "correct horse")], PUSH).await, "another token").await;
    assert_refused(post(&node, &[("x-gitlab-token", "")], PUSH).await, "an empty token").await;
    assert_refused(post(&node, &[], PUSH).await, "no token").await;

    let accepted = post(&node, &[("x-gitlab-token", SECRET), ("x-gitlab-event", "Push Hook")], PUSH).await;
    assert_eq!(accepted.status(), 202);
    node.eventually("/acme/echo", WITHIN, |r| r.status() == 200).await;
    node.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_still_opens_the_webhook_and_without_a_secret_nothing_else_does() {
    let (dir, node) = node(None).await;
    add_echo(&dir);
    let anyone = github_signature("", PUSH);
    assert_refused(post(&node, &[("x-hub-signature-256", &anyone)], PUSH).await, "no secret configured")
        .await;
    assert_refused(post(&node, &[("x-gitlab-token", "")], PUSH).await, "no secret configured").await;

    let token = std::fs::read_to_string(node.data.path().join("admin.token")).unwrap();
    let bearer = format!("Bearer {}", token.trim());
    assert_eq!(post(&node, &[("authorization", &bearer)], "").await.status(), 202);
    node.eventually("/acme/echo", WITHIN, |r| r.status() == 200).await;
    node.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_webhook_secret_file_that_does_not_exist_stops_the_node_from_starting() {
    let dir = SpecDir::new();
    let data = tempfile::tempdir().unwrap();
    let mut config = Node::config(dir.path(), &data.path().join("data"));
    let missing = data.path().join("no-such.secret");
    config.reconcile.webhook.secret_file = Some(missing.clone());
    let error = gojinn::server::Server::start(config).await.err().expect("the node must not start");
    let message = error.to_string();
    assert!(message.contains("webhook secret") && message.contains(missing.to_str().unwrap()), "{message}");
    assert!(!data.path().join("data").exists(), "nothing written before the secret was read");
}
