//! Async jobs on the embedded backend, in-process: the shared scenarios, the admin API's token,
//! ids as capabilities, enqueue limits, the CLI, workers following deploys, and a clean stop.

use crate::jobs::{
    async_calls_succeed_with_the_guests_result, dead_jobs_are_listed_and_redriven, probe_specs,
};
use crate::support::api::{Api, TRACEPARENT, result_body};
use crate::support::{Node, SpecDir, error_code, specs};
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

async fn probe_node(status: u16) -> (SpecDir, Node, Api) {
    let dir = SpecDir::new();
    dir.module("guest-jobprobe");
    probe_specs(&dir, status);
    let node = Node::start(&dir).await;
    let api = Api::of(&node);
    (dir, node, api)
}

#[tokio::test]
async fn async_calls_are_accepted_and_their_status_shows_the_result() {
    let (_dir, _node, api) = probe_node(200).await;
    async_calls_succeed_with_the_guests_result(&api).await;
}

#[tokio::test]
async fn failing_jobs_go_dead_and_a_redrive_runs_them_on_the_fixed_revision() {
    let (dir, _node, api) = probe_node(503).await;
    dead_jobs_are_listed_and_redriven(&dir, &api).await;
}

#[tokio::test]
async fn a_trapping_guest_dies_after_max_deliver_and_a_4xx_answer_succeeds() {
    let dir = SpecDir::new();
    dir.module("guest-trap").module("guest-jobprobe");
    let fast = "jobs: { maxDeliver: 2, backoff: [10ms] }";
    let not_found = format!("env: {{ STATUS: \"404\" }}\n{fast}");
    dir.write(
        "specs.yaml",
        &specs("acme", "", &[("trap", "guest-trap", fast), ("gone", "guest-jobprobe", &not_found)]),
    );
    let node = Node::start(&dir).await;
    let api = Api::of(&node);

    let trap = api.enqueue("/acme/trap", &[], "").await;
    let gone = api.enqueue("/acme/gone", &[], "").await;
    let dead = api.wait_for(&trap, "dead").await;
    assert_eq!(dead["attempts"], 2);
    assert!(dead["error"].as_str().unwrap().contains("trapped"), "{dead:#}");
    let answered = api.wait_for(&gone, "succeeded").await;
    assert_eq!((answered["attempts"].as_u64(), answered["result"]["status"].as_u64()), (Some(1), Some(404)));
}

#[tokio::test]
async fn admin_routes_require_the_bearer_token() {
    let (_dir, node, api) = probe_node(200).await;
    let id = api.enqueue("/acme/probe", &[], "").await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(node.data.path().join("admin.token")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the generated token is readable by its owner only");
    }
    let routes = [
        (Method::GET, "acme/jobs".to_owned()),
        (Method::GET, format!("acme/jobs/{id}")),
        (Method::POST, format!("acme/jobs/{id}/redrive")),
    ];
    for (method, path) in &routes {
        let url = format!("{}/_gojinn/v1/tenants/{path}", api.base);
        let refused = [
            api.http.request(method.clone(), &url).send().await.unwrap(),
            api.http.request(method.clone(), &url).bearer_auth("wrong").send().await.unwrap(),
            api.http
                .request(method.clone(), &url)
                .basic_auth("admin", Some(&api.token))
                .send()
                .await
                .unwrap(),
        ];
        for response in refused {
            assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
            let (status, code, _) = error_code(response).await;
            assert_eq!((status, code.as_str()), (401, "unauthorized"), "{method} {path}");
        }
        let allowed = api.admin(method.clone(), path).await.status();
        assert!(allowed == 200 || allowed == 409, "{method} {path} with the token: {allowed}");
    }
    let wrong_method = api.admin(Method::DELETE, "acme/jobs").await;
    assert_eq!(wrong_method.headers()["allow"], "GET");
    assert_eq!(error_code(wrong_method).await.1, "method_not_allowed");
    let public = api.http.delete(format!("{}/_gojinn/v1/jobs/{id}", api.base)).send().await.unwrap();
    assert_eq!(error_code(public).await.0, 405);
}

#[tokio::test]
async fn unknown_malformed_and_foreign_job_ids_are_404() {
    let (_dir, _node, api) = probe_node(200).await;
    let id = api.enqueue("/acme/probe", &[], "").await;
    let unknown = format!("acme.{}", "0".repeat(32));
    for bad in
        [unknown.as_str(), "nope", "acme.zz", "ghost.0123456789abcdef0123456789abcdef", &id.to_uppercase()]
    {
        let (status, code, _) = error_code(api.job_response(bad).await).await;
        assert_eq!((status, code.as_str()), (404, "no_job"), "{bad}");
    }
    let foreign = api.admin(Method::GET, &format!("other/jobs/{id}")).await;
    assert_eq!(error_code(foreign).await.0, 404, "a job is found only under its own tenant");
    let (status, code, _) = error_code(api.admin(Method::GET, "acme/jobs?state=dead").await).await;
    assert_eq!((status, code.as_str()), (400, "bad_query"));
}

#[tokio::test]
async fn an_async_call_is_routed_capped_and_admitted_like_a_sync_one() {
    let dir = SpecDir::new();
    dir.module("guest-slow");
    let limits = "limits: { maxBody: 16, maxConcurrency: 1, maxQueue: 0, timeout: 5s }";
    dir.write("specs.yaml", &specs("acme", "", &[("slow", "guest-slow", limits)]));
    let node = Node::start(&dir).await;
    let api = Api::of(&node);

    let (status, code, _) = error_code(api.call_async("/acme/slow", &[], &"x".repeat(17)).await).await;
    assert_eq!((status, code.as_str()), (413, "body_too_large"));
    let (status, code, _) = error_code(api.call_async("/acme/none", &[], "").await).await;
    assert_eq!((status, code.as_str()), (404, "no_route"));
    let (status, code, _) =
        error_code(api.call_async("/acme/slow", &[("idempotency-key", "")], "").await).await;
    assert_eq!((status, code.as_str()), (400, "bad_idempotency_key"));

    let busy = tokio::spawn(node.client.get(node.url("/acme/slow?ms=1000")).send());
    node.wait_in_flight("acme", "slow", 1).await;
    let response = api.call_async("/acme/slow", &[], "").await;
    assert_eq!(response.headers()["retry-after"], "1");
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (429, "over_capacity"), "the enqueue is admitted like a call");
    assert_eq!(busy.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn the_cli_lists_shows_and_redrives_jobs() {
    let (dir, node, api) = probe_node(503).await;
    let id = api.enqueue("/acme/probe", &[("traceparent", TRACEPARENT)], "").await;
    api.wait_for(&id, "dead").await;
    let token_file = node.data.path().join("admin.token");
    let cli = |args: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_gojinn"));
        command.arg("jobs").args(args).arg("--url").arg(&api.base).arg("--token-file").arg(&token_file);
        async move {
            let output = command.output().await.expect("run gojinn jobs");
            let stdout = String::from_utf8(output.stdout).unwrap();
            assert!(output.status.success(), "gojinn jobs: {}", String::from_utf8_lossy(&output.stderr));
            stdout
        }
    };

    let listed: Value =
        serde_json::from_str(&cli(&["list", "acme", "--status", "dead", "--output", "json"]).await).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    let table = cli(&["list", "acme"]).await;
    assert!(table.starts_with("ID") && table.contains(&id) && table.contains("dead"), "{table}");
    let shown = cli(&["show", &id]).await;
    assert!(shown.contains("status:    dead") && shown.contains("503"), "{shown}");

    probe_specs(&dir, 200);
    node.eventually("/acme/probe", crate::support::api::WITHIN, |r| r.status() == 200).await;
    let redriven: Value = serde_json::from_str(&cli(&["redrive", &id, "--output", "json"]).await).unwrap();
    assert_eq!(redriven["id"], id.as_str());
    api.wait_for(&id, "succeeded").await;

    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_gojinn"))
        .args(["jobs", "show", &id, "--url", &api.base, "--token-file", "/nonexistent/token"])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("admin token"), "{refused:?}");
}

#[tokio::test]
async fn workers_start_for_functions_deployed_later() {
    let dir = SpecDir::new();
    dir.module("guest-jobprobe");
    dir.write("specs.yaml", &specs("acme", "", &[]));
    let node = Node::start(&dir).await;
    let api = Api::of(&node);
    dir.write("specs.yaml", &specs("acme", "", &[("late", "guest-jobprobe", "")]));
    node.eventually("/acme/late", crate::support::api::WITHIN, |r| r.status() == 200).await;
    let id = api.enqueue("/acme/late", &[], "").await;
    api.wait_for(&id, "succeeded").await;
}

#[tokio::test]
async fn stopping_a_node_finishes_its_running_jobs_and_releases_the_state() {
    let dir = SpecDir::new();
    dir.module("guest-slow");
    dir.write("specs.yaml", &specs("acme", "", &[("slow", "guest-slow", "limits: { timeout: 5s }")]));
    let node = Node::start(&dir).await;
    let api = Api::of(&node);
    let id = api.enqueue("/acme/slow?ms=500", &[], "").await;
    api.wait_for(&id, "running").await;

    let Node { server, data, .. } = node;
    tokio::time::timeout(Duration::from_secs(20), server.stop()).await.expect("stop in time").unwrap();
    let backend = gojinn::state::embedded::EmbeddedBackend::open(&data.path().join("state"))
        .expect("the stopped node let go of its state");
    let key = id.split_once('.').unwrap().1;
    let tenant = gojinn::spec::Name::new("acme").unwrap();
    let job = gojinn::state::Jobs::job(&backend, &tenant, key).await.unwrap().unwrap();
    assert_eq!((job.status, job.attempts), (gojinn::state::JobStatus::Succeeded, 1), "{job:?}");
}

#[tokio::test]
async fn credential_headers_are_not_stored_with_queued_calls_unless_the_function_keeps_them() {
    const DROPPED: &str = "planted-secret-dropped-6f1c2a";
    const KEPT: &str = "planted-secret-kept-93be07";
    let dir = SpecDir::new();
    dir.module("guest-jobprobe");
    let keeper = "jobs: { keepHeaders: [Authorization] }";
    dir.write(
        "specs.yaml",
        &specs("acme", "", &[("probe", "guest-jobprobe", ""), ("keeper", "guest-jobprobe", keeper)]),
    );
    let node = Node::start(&dir).await;
    let api = Api::of(&node);
    let credentials = |secret: &str| {
        [
            ("authorization", format!("Bearer {secret}")),
            ("cookie", format!("session={secret}")),
            ("proxy-authorization", format!("Basic {secret}")),
            ("x-gojinn-key", secret.to_owned()),
            ("x-colour", "blue".to_owned()),
        ]
    };
    let (dropped, kept) = (credentials(DROPPED), credentials(KEPT));
    let dropped = api.enqueue("/acme/probe", &pairs(&dropped), "").await;
    let kept = api.enqueue("/acme/keeper", &pairs(&kept), "").await;

    let seen = |job: Value| -> Vec<String> {
        let headers = result_body(&job)["headers"].as_array().expect("the guest lists its headers").clone();
        headers.iter().map(|name| name.as_str().unwrap().to_owned()).collect()
    };
    let dropped = seen(api.wait_for(&dropped, "succeeded").await);
    assert!(dropped.iter().any(|name| name == "x-colour"), "other headers stay: {dropped:?}");
    for name in ["authorization", "cookie", "proxy-authorization", "x-gojinn-key"] {
        assert!(!dropped.iter().any(|seen| seen == name), "{name} was stored with the job: {dropped:?}");
    }
    let kept = seen(api.wait_for(&kept, "succeeded").await);
    assert!(kept.iter().any(|name| name == "authorization"), "keepHeaders keeps it: {kept:?}");
    assert!(!kept.iter().any(|name| name == "cookie"), "only what keepHeaders names: {kept:?}");

    let store = std::fs::read(node.data.path().join("state/state.redb")).expect("read the store file");
    let holds = |secret: &str| store.windows(secret.len()).any(|window| window == secret.as_bytes());
    assert!(holds(KEPT), "the kept header is at rest, so the search finds a stored credential");
    assert!(!holds(DROPPED), "a credential the function did not keep is in the store file");
}

/// `(name, value)` pairs borrowed from owned values.
fn pairs<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(name, value)| (*name, value.as_str())).collect()
}
