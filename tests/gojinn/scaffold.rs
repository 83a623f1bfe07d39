//! `gojinn new` scaffolds a function that builds for wasm32-wasip1 and serves.

use crate::support::{Node, guest_target_dir, repo_root};
use std::process::Command;

#[tokio::test]
async fn a_scaffolded_function_builds_and_answers() {
    let parent = tempfile::tempdir().unwrap();
    let project = parent.path().join("greeter");
    let status = Command::new(env!("CARGO_BIN_EXE_gojinn"))
        .args(["new", "greeter", "--path"])
        .arg(&project)
        .status()
        .unwrap();
    assert!(status.success());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&project)
        .args(["build", "--release", "--target", "wasm32-wasip1", "--target-dir"])
        .arg(guest_target_dir().join("scaffold"))
        .status()
        .unwrap();
    assert!(status.success(), "the scaffolded project builds");
    let built = guest_target_dir().join("scaffold/wasm32-wasip1/release/greeter.wasm");
    let module = project.join("target/wasm32-wasip1/release/greeter.wasm");
    std::fs::create_dir_all(module.parent().unwrap()).unwrap();
    std::fs::copy(built, &module).unwrap();

    let node = Node::start_with(&project, tempfile::tempdir().unwrap()).await;
    assert!(node.server.first_deploy().errors.is_empty(), "{:?}", node.server.first_deploy().errors);
    let response = node.get("/demo/greeter?name=you").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "Hello, you!\n");
    assert!(repo_root().join("sdk/rust/Cargo.toml").is_file());
}
