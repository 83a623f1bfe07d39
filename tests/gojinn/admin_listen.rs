//! `admin.listen`: the operator's surfaces (admin API, reconcile webhook, MCP, metrics) on an
//! address of their own, none of them on the functions' address, no function on theirs; health
//! and readiness on both, and an async call's status URL with the functions.

use crate::support::api::Api;
use crate::support::{Node, SpecDir, error_code, specs};
use reqwest::Method;
use serde_json::json;

/// hello as `/acme/hello`, served by a node with `admin.listen` on a free loopback port.
async fn start() -> (SpecDir, Node, Api, Api) {
    let dir = SpecDir::new();
    dir.module("hello");
    dir.write("specs.yaml", &specs("acme", "", &[("hello", "hello", "")]));
    let data = tempfile::tempdir().unwrap();
    let mut config = Node::config(dir.path(), data.path());
    config.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    let node = Node::start_config(config, data).await;
    let admin_addr = node.server.admin_addr().expect("the node names its admin address");
    assert_ne!(admin_addr, node.server.addr());
    let functions = Api::of(&node);
    let operator = Api::new(format!("http://{admin_addr}"), node.data.path());
    (dir, node, functions, operator)
}

/// `method` `path` on `api`'s address with the admin token.
async fn send(api: &Api, method: Method, path: &str) -> reqwest::Response {
    let request = api.http.request(method, format!("{}{path}", api.base)).bearer_auth(&api.token);
    request.send().await.expect("request")
}

#[tokio::test]
async fn the_operator_surfaces_answer_on_the_admin_address_only_and_functions_on_theirs() {
    let (_dir, _node, functions, operator) = start().await;
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": { "name": "test", "version": "1" } }
    });
    let operator_routes = [
        (Method::GET, "/_gojinn/v1/status", 200),
        (Method::GET, "/_gojinn/v1/tenants/acme/jobs", 200),
        (Method::POST, "/_gojinn/v1/reconcile", 202),
        (Method::GET, "/_gojinn/metrics", 200),
    ];
    for (method, path, expected) in operator_routes {
        let answered = send(&operator, method.clone(), path).await;
        assert_eq!(answered.status(), expected, "{method} {path} on admin.listen");
        let (status, code, message) = error_code(send(&functions, method.clone(), path).await).await;
        assert_eq!((status, code.as_str()), (404, "no_route"), "{method} {path} on listen: {message}");
    }
    let mcp = |api: &Api| {
        api.http
            .post(format!("{}/_gojinn/mcp", api.base))
            .bearer_auth(&api.token)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize)
    };
    let answered = mcp(&operator).send().await.unwrap();
    assert_eq!(answered.status(), 200, "MCP on admin.listen");
    let answered: serde_json::Value = answered.json().await.unwrap();
    assert_eq!(answered["result"]["serverInfo"]["name"], "gojinn");
    let (status, code, _) = error_code(mcp(&functions).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "no_route"), "MCP on listen");

    let unauthenticated =
        operator.http.get(format!("{}/_gojinn/v1/status", operator.base)).send().await.unwrap();
    assert_eq!(error_code(unauthenticated).await.0, 401, "the admin address still needs the token");

    let hello = send(&functions, Method::GET, "/acme/hello").await;
    assert_eq!(hello.status(), 200, "functions on listen");
    let (status, code, _) = error_code(send(&operator, Method::GET, "/acme/hello").await).await;
    assert_eq!((status, code.as_str()), (404, "no_route"), "no function on admin.listen");

    for api in [&functions, &operator] {
        for path in ["/_gojinn/health", "/_gojinn/ready"] {
            assert_eq!(
                api.http.get(format!("{}{path}", api.base)).send().await.unwrap().status(),
                200,
                "{path}"
            );
        }
    }
}

#[tokio::test]
async fn an_async_calls_status_url_is_served_with_the_functions() {
    let (_dir, _node, functions, operator) = start().await;
    let id = functions.enqueue("/acme/hello", &[], "").await;
    let status_path = format!("/_gojinn/v1/jobs/{id}");
    let done = functions.wait_for(&id, "succeeded").await;
    assert_eq!(done["status"], "succeeded");
    let (status, code, _) = error_code(send(&operator, Method::GET, &status_path).await).await;
    assert_eq!((status, code.as_str()), (404, "no_route"), "the capability URL is the callers', on listen");
}

#[tokio::test]
async fn an_admin_address_in_use_is_refused_before_anything_is_written() {
    let dir = SpecDir::new();
    dir.write("specs.yaml", "");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let mut config = Node::config(dir.path(), &data_dir);
    config.admin.listen = Some(taken.local_addr().unwrap());
    let error = gojinn::server::Server::start(config).await.err().expect("the admin port is taken");
    let text = error.to_string();
    assert!(text.starts_with(&format!("cannot listen on {}: ", taken.local_addr().unwrap())), "{text}");
    assert!(!data_dir.exists(), "nothing written");
}
