//! Bodies reach the guest and come back byte for byte, text or binary.

use crate::support::{Node, SpecDir, specs};

#[tokio::test]
async fn binary_and_text_bodies_round_trip_through_echo() {
    let dir = SpecDir::new();
    dir.module("echo");
    dir.write(
        "specs.yaml",
        &specs("acme", "", &[("echo", "echo", "limits: { maxBody: 1Mi, maxOutput: 2Mi }")]),
    );
    let node = Node::start(&dir).await;
    let every_byte: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let bodies: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0],
        vec![0xff, 0xfe, 0x00, 0x80],
        every_byte,
        "héllo wörld ✓".as_bytes().to_vec(),
        b"{\"json\": true}".to_vec(),
    ];
    for body in bodies {
        let response = node
            .client
            .post(node.url("/acme/echo/anything?x=1"))
            .header("content-type", "application/octet-stream")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/octet-stream");
        let echoed = response.bytes().await.unwrap();
        assert_eq!(echoed.len(), body.len());
        assert!(echoed[..] == body[..], "body of {} bytes came back changed", body.len());
    }
}

#[tokio::test]
async fn the_json_api_example_serves_its_own_routes() {
    let dir = SpecDir::new();
    dir.module("json-api");
    dir.write(
        "specs.yaml",
        &specs(
            "acme",
            "routePrefixes: [/api]",
            &[("api", "json-api", "routes: [{ path: \"/api/{*rest}\" }]")],
        ),
    );
    let node = Node::start(&dir).await;
    for prefix in ["/acme/api", "/api"] {
        let list = node.get(&format!("{prefix}/items")).await;
        assert_eq!(list.status(), 200, "{prefix}");
        assert!(list.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let items: serde_json::Value = list.json().await.unwrap();
        assert!(items.is_array(), "{items}");
        let missing = node.get(&format!("{prefix}/nowhere")).await;
        assert_eq!(missing.status(), 404, "{prefix}");
    }
}
