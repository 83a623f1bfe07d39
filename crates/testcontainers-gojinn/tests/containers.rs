//! The module against a real dockerd: the gojinn image built by deploy/container/build.sh, the
//! example functions built for wasm32-wasip1, real HTTP. `scripts/test-containers.sh` builds both
//! and runs these tests; a missing daemon, image or example is a failure that says so.

use anyhow::{Context, Result, ensure};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testcontainers_gojinn::{Error, Gojinn, RunningGojinn};

const EXAMPLES: [&str; 4] = ["hello", "echo", "json-api", "counter"];

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The examples' spec directory, after checking that their modules are built.
fn examples() -> Result<PathBuf> {
    let dir = examples_dir();
    for name in EXAMPLES {
        let module = dir.join(format!("target/wasm32-wasip1/release/{name}.wasm"));
        ensure!(
            module.is_file(),
            "{} is missing: build the examples (cargo build --release --target wasm32-wasip1 \
             --target-dir examples/target -p hello -p echo -p json-api -p counter) or run \
             scripts/test-containers.sh",
            module.display()
        );
    }
    Ok(dir)
}

/// A spec directory the test may change: the examples' specs and modules, readable by the
/// container's user.
fn writable_examples() -> Result<tempfile::TempDir> {
    let source = examples()?;
    let dir = tempfile::tempdir()?;
    let modules = dir.path().join("target/wasm32-wasip1/release");
    std::fs::create_dir_all(&modules)?;
    std::fs::copy(source.join("specs.yaml"), dir.path().join("specs.yaml"))?;
    for name in EXAMPLES {
        let file = format!("{name}.wasm");
        std::fs::copy(source.join("target/wasm32-wasip1/release").join(&file), modules.join(&file))?;
    }
    make_readable(dir.path())?;
    Ok(dir)
}

fn make_readable(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in walk(dir)? {
        let mode = if entry.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() { found.extend(walk(&path)?) } else { found.push(path) }
    }
    Ok(found)
}

/// GETs `url` until it answers `expected` (status 200), for at most 30 s: followers redeploy
/// what the leader applied within a second or two.
async fn eventually_answers(url: &str, expected: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        match reqwest::get(url).await {
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                if status.is_success() && body == expected {
                    return Ok(());
                }
                last = format!("{status} {body}");
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("{url} never answered {expected:?}; last answer: {last}")
}

async fn post(node: &RunningGojinn, path: &str) -> Result<String> {
    let response = reqwest::Client::new().post(format!("{}{path}", node.base_url())).send().await?;
    ensure!(response.status().is_success(), "POST {path}: {}", response.status());
    Ok(response.text().await?)
}

/// A name no other test run on this Docker host uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{prefix}-{}-{:x}", std::process::id(), nanos.as_nanos())
}

#[tokio::test]
async fn a_node_serves_the_mounted_example_functions_and_guards_its_admin_api() -> Result<()> {
    let node = Gojinn::new().with_specs(examples()?).start().await?;

    eventually_answers(&format!("{}/hello?name=container", node.base_url()), "Hello, container!").await?;

    let status = format!("{}/_gojinn/v1/status", node.base_url());
    let client = reqwest::Client::new();
    let without = client.get(&status).send().await?.status();
    ensure!(without == 401, "the admin API without the token answered {without}");
    let with = client.get(&status).bearer_auth(node.admin_token()).send().await?.status();
    ensure!(with == 200, "the admin API with the module's token answered {with}");
    Ok(())
}

#[tokio::test]
async fn a_kv_value_written_before_a_restart_is_read_after_it_on_the_same_volume() -> Result<()> {
    let mut node = Gojinn::new().with_specs(examples()?).start().await?;
    let counter = "/demo/counter?name=restarts";
    eventually_answers(&format!("{}/hello", node.base_url()), "Hello from Gojinn!").await?;
    ensure!(post(&node, counter).await? == "1");
    ensure!(post(&node, counter).await? == "2");

    node.restart().await?;

    eventually_answers(&format!("{}{counter}", node.base_url()), "2")
        .await
        .context("the counter after the restart")?;
    ensure!(post(&node, counter).await? == "3");
    Ok(())
}

#[tokio::test]
async fn two_nodes_on_one_nats_serve_a_function_applied_through_one() -> Result<()> {
    let network = unique("gojinn-test");
    let nats_name = unique("nats");
    let _nats = testcontainers_gojinn::nats(&network, &nats_name).await?;
    let nats_url = format!("nats://{nats_name}:4222");
    let specs = writable_examples()?;

    // The first node takes the reconcile lease and applies the specs; the second follows.
    let first =
        Gojinn::new().with_specs(specs.path()).with_nats(&nats_url).with_network(&network).start().await?;
    eventually_answers(&format!("{}/hello?name=first", first.base_url()), "Hello, first!").await?;
    let second =
        Gojinn::new().with_specs(specs.path()).with_nats(&nats_url).with_network(&network).start().await?;
    eventually_answers(&format!("{}/hello?name=second", second.base_url()), "Hello, second!").await?;

    // A new function, added to the specs: applied once, served by both.
    let greet = "\n---\napiVersion: gojinn.dev/v1\nkind: Function\nmetadata: { name: greet, tenant: demo }\n\
                 spec:\n  module: { path: target/wasm32-wasip1/release/hello.wasm }\n";
    let specs_file = specs.path().join("specs.yaml");
    let mut text = std::fs::read_to_string(&specs_file)?;
    text.push_str(greet);
    std::fs::write(&specs_file, text)?;

    for node in [&first, &second] {
        let url = format!("{}/demo/greet?name=both", node.base_url());
        if let Err(error) = eventually_answers(&url, "Hello, both!").await {
            anyhow::bail!("{error}\nthe node's log:\n{}", node.logs().await);
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_node_that_never_becomes_ready_is_reported_with_its_last_log_lines() -> Result<()> {
    // No NATS answers at this address: gojinn gives up opening its state backend and exits.
    let outcome = Gojinn::new()
        .with_nats("nats://127.0.0.1:1")
        .with_startup_timeout(Duration::from_secs(30))
        .start()
        .await;

    match outcome {
        Err(Error::NeverReady { outcome, logs, .. }) => {
            ensure!(outcome.starts_with("exited with code"), "outcome: {outcome}");
            ensure!(
                logs.contains("cannot connect to NATS at nats://127.0.0.1:1"),
                "the error's log lines: {logs}"
            );
            Ok(())
        }
        Err(other) => anyhow::bail!("expected NeverReady, got: {other}"),
        Ok(node) => anyhow::bail!("a node without its NATS became ready at {}", node.base_url()),
    }
}

#[tokio::test]
async fn a_missing_image_is_an_error_that_says_how_to_build_it_and_is_never_pulled() -> Result<()> {
    let outcome = Gojinn::new().with_image("gojinn", "not-built-here").start().await;
    match outcome {
        Err(error @ Error::ImageMissing(_)) => {
            let message = error.to_string();
            ensure!(
                message.contains("gojinn:not-built-here") && message.contains("deploy/container/build.sh"),
                "{message}"
            );
            Ok(())
        }
        Err(other) => anyhow::bail!("expected ImageMissing, got: {other}"),
        Ok(_) => anyhow::bail!("an image that was never built started"),
    }
}
