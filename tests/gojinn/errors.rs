//! Every limit and every failure maps to its status and stable error code.

use crate::support::{Node, SpecDir, error_code, specs};

async fn node_with(functions: &[(&str, &str, &str)]) -> (SpecDir, Node) {
    let dir = SpecDir::new();
    for (_, module, _) in functions {
        dir.module(module);
    }
    // `/greet` is granted for the declared-route test.
    dir.write("specs.yaml", &specs("acme", "routePrefixes: [/greet]", functions));
    let node = Node::start(&dir).await;
    assert!(node.server.first_deploy().errors.is_empty(), "{:?}", node.server.first_deploy().errors);
    (dir, node)
}

#[tokio::test]
async fn a_guest_that_loops_is_stopped_at_its_timeout_with_504() {
    let (_dir, node) = node_with(&[("spin", "guest-loop", "limits: { timeout: 200ms }")]).await;
    let (status, code, message) = error_code(node.get("/acme/spin").await).await;
    assert_eq!((status, code.as_str()), (504, "timeout"));
    assert!(message.contains("200ms"), "{message}");
}

#[tokio::test]
async fn a_memory_bomb_hits_its_cap_with_500_memory_exhausted() {
    let (_dir, node) = node_with(&[("bomb", "guest-membomb", "limits: { memory: 16Mi, timeout: 5s }")]).await;
    let (status, code, message) = error_code(node.get("/acme/bomb").await).await;
    assert_eq!((status, code.as_str()), (500, "memory_exhausted"));
    assert!(message.contains(&(16u64 << 20).to_string()), "{message}");
}

#[tokio::test]
async fn output_past_the_cap_is_502_on_stdout_and_stderr() {
    let (_dir, node) = node_with(&[
        ("flood", "guest-flood", "limits: { maxOutput: 64Ki, timeout: 5s }"),
        ("errflood", "guest-stderrflood", "limits: { maxOutput: 64Ki, timeout: 5s }"),
    ])
    .await;
    for (path, stream) in [("/acme/flood", "stdout"), ("/acme/errflood", "stderr")] {
        let (status, code, message) = error_code(node.get(path).await).await;
        assert_eq!((status, code.as_str()), (502, "output_too_large"), "{path}");
        assert!(message.contains(stream) && message.contains("65536"), "{message}");
    }
}

#[tokio::test]
async fn a_trap_is_500_trap_and_a_stack_overflow_is_500_stack_overflow() {
    let (_dir, node) =
        node_with(&[("trap", "guest-trap", ""), ("deep", "guest-stackoverflow", "limits: { timeout: 5s }")])
            .await;
    let (status, code, _) = error_code(node.get("/acme/trap").await).await;
    assert_eq!((status, code.as_str()), (500, "trap"));
    let (status, code, _) = error_code(node.get("/acme/deep").await).await;
    assert_eq!((status, code.as_str()), (500, "stack_overflow"));
}

#[tokio::test]
async fn output_that_is_not_an_envelope_is_502_invalid_response() {
    let (_dir, node) = node_with(&[("bad", "guest-badjson", "")]).await;
    let (status, code, message) = error_code(node.get("/acme/bad").await).await;
    assert_eq!((status, code.as_str()), (502, "invalid_response"));
    assert!(message.contains("not a response envelope"), "{message}");
}

#[tokio::test]
async fn a_body_over_the_cap_is_413_with_or_without_content_length() {
    let (_dir, node) = node_with(&[("echo", "echo", "limits: { maxBody: 1Ki }")]).await;
    let (status, code, _) = error_code(node.post("/acme/echo", vec![b'x'; 1025]).await).await;
    assert_eq!((status, code.as_str()), (413, "body_too_large"));

    let chunks = futures::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 512])));
    let response = node
        .client
        .post(node.url("/acme/echo"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (413, "body_too_large"));

    let ok = node.post("/acme/echo", vec![b'z'; 1024]).await;
    assert_eq!(ok.status(), 200, "a body of exactly the cap is accepted");
}

#[tokio::test]
async fn unknown_paths_are_404_no_route() {
    let (_dir, node) = node_with(&[("hello", "hello", "")]).await;
    for path in ["/acme/nope", "/other/hello", "/", "/_gojinn/nothing", "/ACME/hello"] {
        let (status, code, _) = error_code(node.get(path).await).await;
        assert_eq!((status, code.as_str()), (404, "no_route"), "{path}");
    }
}

#[tokio::test]
async fn a_declared_route_answers_its_methods_and_405s_the_others() {
    let (_dir, node) = node_with(&[("hello", "hello", "routes: [{ path: /greet, methods: [GET] }]")]).await;
    assert_eq!(node.get("/greet").await.status(), 200);
    let response = node.post("/greet", "x").await;
    assert_eq!(response.headers()["allow"], "GET");
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (405, "method_not_allowed"));
}

#[tokio::test]
async fn invalid_modules_are_rejected_at_deploy_with_the_reason() {
    let dir = SpecDir::new();
    let modules = dir.path().join("modules");
    std::fs::write(modules.join("garbage.wasm"), b"not wasm at all").unwrap();
    let unknown_import = wat::parse_str(
        r#"(module (import "gojinn" "host_teleport" (func (param i32) (result i64)))
                   (import "gojinn" "host_kv_scan" (func (param i32 i32 i32 i32) (result i64)))
                   (memory (export "memory") 1) (func (export "_start")))"#,
    )
    .unwrap();
    std::fs::write(modules.join("unknown.wasm"), unknown_import).unwrap();
    let library = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
    std::fs::write(modules.join("library.wasm"), library).unwrap();
    dir.write(
        "specs.yaml",
        &specs(
            "acme",
            "",
            &[("garbage", "garbage", ""), ("unknown", "unknown", ""), ("library", "library", "")],
        ),
    );
    let node = Node::start(&dir).await;
    let errors: Vec<String> = node.server.first_deploy().errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors[0].contains("specs.yaml:") && errors[0].contains("is not a WebAssembly module"),
        "{}",
        errors[0]
    );
    assert!(
        !errors.iter().any(|e| e.contains("not wasm at all")),
        "module bytes are never quoted: {errors:#?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("gojinn::host_teleport") && e.contains("gojinn::host_kv_scan")),
        "{errors:#?}"
    );
    assert!(errors.iter().any(|e| e.contains("no `_start`")), "{errors:#?}");
    let (status, code, _) = error_code(node.get("/acme/garbage").await).await;
    assert_eq!((status, code.as_str()), (404, "no_route"));
}
