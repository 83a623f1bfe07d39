//! Compiled modules are kept under the data dir, so a restart does not compile again, and a
//! damaged artifact is recompiled rather than trusted.

use crate::support::{Node, SpecDir, specs};

fn artifacts(data: &std::path::Path) -> Vec<std::path::PathBuf> {
    let dir = data.join("modules");
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn a_restart_reuses_compiled_modules_and_recompiles_damaged_ones() {
    let dir = SpecDir::new();
    dir.module("hello");
    dir.write("specs.yaml", &specs("acme", "", &[("hello", "hello", "")]));
    let node = Node::start(&dir).await;
    assert_eq!(node.get("/acme/hello").await.status(), 200);
    let data = node.data;
    node.server.stop().await.unwrap();
    let compiled = artifacts(data.path());
    assert_eq!(compiled.len(), 1, "one artifact per module");
    let modified = std::fs::metadata(&compiled[0]).unwrap().modified().unwrap();

    let node = Node::start_with(dir.path(), data).await;
    assert_eq!(node.get("/acme/hello").await.status(), 200);
    assert_eq!(
        std::fs::metadata(&compiled[0]).unwrap().modified().unwrap(),
        modified,
        "the artifact was reused, not rewritten"
    );
    let data = node.data;
    node.server.stop().await.unwrap();

    let mut bytes = std::fs::read(&compiled[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&compiled[0], &bytes).unwrap();
    let node = Node::start_with(dir.path(), data).await;
    assert_eq!(node.get("/acme/hello").await.status(), 200, "a damaged artifact is recompiled");
    assert_ne!(std::fs::read(&compiled[0]).unwrap(), bytes, "and rewritten");
}

#[tokio::test]
async fn modules_dropped_from_a_full_memory_cache_are_loaded_again_on_their_next_call() {
    let dir = SpecDir::new();
    dir.module("hello").module("echo");
    dir.write("specs.yaml", &specs("acme", "", &[("hello", "hello", ""), ("echo", "echo", "")]));
    let data = tempfile::tempdir().unwrap();
    let mut config = Node::config(dir.path(), data.path());
    // Room for less than one module: each module cached evicts the other.
    config.runtime.module_cache_bytes = gojinn::spec::ByteSize(1);
    let node = Node::start_config(config, data).await;
    for round in 0..3 {
        let hello = node.get("/acme/hello").await;
        assert_eq!(hello.status(), 200, "hello, round {round}");
        assert_eq!(hello.text().await.unwrap(), "Hello from Gojinn!");
        let echo = node.client.post(node.url("/acme/echo")).body("ping").send().await.unwrap();
        assert_eq!(echo.status(), 200, "echo, round {round}");
    }
    assert_eq!(artifacts(node.data.path()).len(), 2, "each module compiled once, then loaded from disk");
}
