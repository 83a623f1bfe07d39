//! The sandbox: no filesystem, no arguments, no host environment beyond the declared `env`, a
//! real random source.

use crate::support::{Node, SpecDir, specs};

#[tokio::test]
async fn a_guest_sees_only_its_declared_env_and_real_randomness() {
    // SAFETY: set before the node starts and read by no other thread of this test.
    unsafe { std::env::set_var("GOJINN_TEST_HOST_SECRET", "must-not-leak") };
    let dir = SpecDir::new();
    dir.module("guest-env");
    dir.write("specs.yaml", &specs("acme", "", &[("env", "guest-env", "env: { GREETING: hi, MODE: test }")]));
    let node = Node::start(&dir).await;
    let mut randoms = Vec::new();
    for _ in 0..2 {
        let seen: serde_json::Value = node.get("/acme/env").await.json().await.unwrap();
        assert_eq!(
            seen["env"],
            serde_json::json!({ "GREETING": "hi", "MODE": "test" }),
            "only the declared env"
        );
        assert_eq!(seen["args"], 0, "no arguments");
        assert_eq!(seen["etc_passwd_opens"], false, "no filesystem");
        randoms.push(seen["random"].as_str().unwrap().to_owned());
    }
    assert_ne!(randoms[0], randoms[1], "each call gets fresh randomness");
    assert_ne!(randoms[0], "0".repeat(32));
}
