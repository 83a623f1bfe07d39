//! CORS per tenant on a real node: a tenant's `spec.cors` answers preflights at the edge (allowed
//! and denied origins, methods and headers; a declared route that lists no OPTIONS), without
//! running the guest or writing a receipt, and without an API key for a tenant with keys; an
//! actual call's response carries the policy's headers, a 401 included; a tenant without `cors`
//! is served exactly as before.

use crate::api_keys::new_key;
use crate::support::{Node, SpecDir};
use reqwest::{Method, Response};
use serde_json::Value;

const ALLOWED: &str = "https://app.example";
const DENIED: &str = "https://evil.example";

/// A node serving `web` (a CORS policy for [`ALLOWED`]), `locked` (the same policy and an API
/// key) and `plain` (no policy), each with the jobprobe guest as `probe` at `/{tenant}/probe`
/// and at the declared route `/{tenant}/api` (POST only); and locked's key.
async fn node() -> (Node, String, SpecDir) {
    let (key, key_line) = new_key("locked", &[]);
    let dir = SpecDir::new();
    dir.module("guest-jobprobe");
    let cors = "  cors:\n    allowOrigins: [https://app.example, 'http://localhost:5173']\n    \
                allowMethods: [GET, POST]\n    allowHeaders: [Content-Type, x-trace]\n    \
                exposeHeaders: [gojinn-receipt]\n    maxAge: 10m\n    allowCredentials: true\n";
    let mut yaml = String::new();
    for (tenant, spec) in [
        ("web", cors.to_owned()),
        ("locked", format!("{cors}  apiKeys:\n    {key_line}\n")),
        ("plain", String::new()),
    ] {
        yaml.push_str(&format!(
            "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: {{ name: {tenant} }}\nspec:\n  replicas: 1\n{spec}---\n\
             apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: {{ name: probe, tenant: {tenant} }}\n\
             spec: {{ module: {{ path: modules/guest-jobprobe.wasm }}, routes: [{{ path: /{tenant}/api, methods: [POST] }}] }}\n---\n"
        ));
    }
    dir.write("specs.yaml", &yaml);
    let node = Node::start(&dir).await;
    (node, key, dir)
}

/// A preflight to `path` from `origin` for `method` with `headers` (`Access-Control-Request-*`).
async fn preflight(node: &Node, path: &str, origin: &str, method: &str, headers: &str) -> Response {
    let mut request = node
        .client
        .request(Method::OPTIONS, node.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method);
    if !headers.is_empty() {
        request = request.header("access-control-request-headers", headers);
    }
    request.send().await.unwrap()
}

/// The value of `name` on `response`, if any.
fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// Whether `response`'s `Vary` names `Origin`.
fn varies_by_origin(response: &Response) -> bool {
    response
        .headers()
        .get_all("vary")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .any(|name| name.trim().eq_ignore_ascii_case("origin"))
}

/// The ids of `tenant`'s receipts.
async fn receipts(node: &Node, tenant: &str) -> Vec<String> {
    let path = format!("/_gojinn/v1/tenants/{tenant}/receipts");
    let listed: Value = crate::support::api::admin(node, Method::GET, &path).await.json().await.unwrap();
    let listed = listed["receipts"].as_array().unwrap_or_else(|| panic!("{listed}"));
    listed.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_preflight_is_answered_at_the_edge_as_the_policy_says_without_the_guest() {
    let (node, _key, _specs) = node().await;
    for path in ["/web/probe", "/web/api"] {
        // Allowed origin, method and headers; the declared route lists only POST, yet the
        // preflight is answered, not refused with 405.
        let allowed = preflight(&node, path, ALLOWED, "POST", "content-type,x-trace").await;
        assert!(allowed.status().is_success(), "{path}: {}", allowed.status());
        assert_eq!(header(&allowed, "access-control-allow-origin"), Some(ALLOWED), "{path}");
        assert_eq!(header(&allowed, "access-control-allow-methods"), Some("GET,POST"), "{path}");
        assert_eq!(header(&allowed, "access-control-allow-headers"), Some("content-type,x-trace"), "{path}");
        assert_eq!(header(&allowed, "access-control-max-age"), Some("600"), "{path}");
        assert_eq!(header(&allowed, "access-control-allow-credentials"), Some("true"), "{path}");
        assert!(varies_by_origin(&allowed), "{path}: {:?}", allowed.headers());
        assert_eq!(header(&allowed, "gojinn-receipt"), None, "{path}: the guest ran");

        // An origin not listed: no CORS headers, so the browser keeps the answer from the page.
        let denied = preflight(&node, path, DENIED, "POST", "").await;
        assert_eq!(header(&denied, "access-control-allow-origin"), None, "{path}");
        assert_eq!(header(&denied, "access-control-allow-credentials"), Some("true"), "{path}");
        assert_eq!(header(&denied, "gojinn-receipt"), None, "{path}");

        // A method or a header not listed: the answer lists only what is allowed, and the
        // browser, finding DELETE or x-secret missing, does not send the call.
        let method = preflight(&node, path, ALLOWED, "DELETE", "").await;
        assert_eq!(header(&method, "access-control-allow-methods"), Some("GET,POST"), "{path}");
        let headers = preflight(&node, path, ALLOWED, "POST", "x-secret").await;
        assert_eq!(header(&headers, "access-control-allow-headers"), Some("content-type,x-trace"), "{path}");
    }
    assert_eq!(receipts(&node, "web").await, Vec::<String>::new(), "a preflight ran the guest");

    // The actual call from the allowed origin: the guest's answer with the policy's headers.
    let call = node.client.post(node.url("/web/probe")).header("origin", ALLOWED).send().await.unwrap();
    assert_eq!(call.status(), 200);
    assert_eq!(header(&call, "access-control-allow-origin"), Some(ALLOWED));
    assert_eq!(header(&call, "access-control-allow-credentials"), Some("true"));
    assert_eq!(header(&call, "access-control-expose-headers"), Some("gojinn-receipt"));
    assert!(varies_by_origin(&call), "{:?}", call.headers());
    let receipt = header(&call, "gojinn-receipt").expect("a receipt").to_owned();
    assert_eq!(receipts(&node, "web").await, [receipt], "one call, one receipt; no preflight's");

    // From another origin: served (CORS is the browser's to enforce), without the headers.
    let other = node.client.post(node.url("/web/api")).header("origin", DENIED).send().await.unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(header(&other, "access-control-allow-origin"), None);

    // A bare OPTIONS (no preflight) goes to the function, as any method does.
    let bare = node.client.request(Method::OPTIONS, node.url("/web/probe")).send().await.unwrap();
    assert_eq!(bare.status(), 200);
    assert!(header(&bare, "gojinn-receipt").is_some(), "the guest answers a bare OPTIONS");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_with_keys_answers_the_preflight_without_a_key_and_its_401_carries_cors_headers() {
    let (node, key, _specs) = node().await;
    let allowed = preflight(&node, "/locked/probe", ALLOWED, "POST", "x-gojinn-key").await;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(header(&allowed, "access-control-allow-origin"), Some(ALLOWED));

    // The call without a key is refused, and the page can read why.
    let refused = node.client.post(node.url("/locked/probe")).header("origin", ALLOWED).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(header(&refused, "access-control-allow-origin"), Some(ALLOWED));
    assert_eq!(header(&refused, "access-control-allow-credentials"), Some("true"));
    assert!(varies_by_origin(&refused), "{:?}", refused.headers());
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized", "{body}");

    // A wrong method on the declared route: 405, readable too.
    let wrong = node.client.get(node.url("/locked/api")).header("origin", ALLOWED).send().await.unwrap();
    assert_eq!(wrong.status(), 405);
    assert_eq!(header(&wrong, "access-control-allow-origin"), Some(ALLOWED));

    let call = node
        .client
        .post(node.url("/locked/probe"))
        .header("origin", ALLOWED)
        .header("x-gojinn-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), 200);
    assert_eq!(header(&call, "access-control-allow-origin"), Some(ALLOWED));
    let receipt = header(&call, "gojinn-receipt").expect("a receipt").to_owned();
    assert_eq!(receipts(&node, "locked").await, [receipt], "no receipt for the preflight or the 401");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_without_cors_is_served_as_before() {
    let (node, _key, _specs) = node().await;
    // A preflight is an OPTIONS like any other: the function answers it, with no CORS headers.
    let options = preflight(&node, "/plain/probe", ALLOWED, "POST", "").await;
    assert_eq!(options.status(), 200);
    assert!(header(&options, "gojinn-receipt").is_some(), "the guest answers");
    assert_eq!(header(&options, "access-control-allow-origin"), None);
    // A declared route that does not list OPTIONS refuses it.
    let route = preflight(&node, "/plain/api", ALLOWED, "POST", "").await;
    assert_eq!(route.status(), 405);
    assert_eq!(header(&route, "allow"), Some("POST"));
    assert_eq!(header(&route, "access-control-allow-origin"), None);
    let call = node.client.post(node.url("/plain/probe")).header("origin", ALLOWED).send().await.unwrap();
    assert_eq!(call.status(), 200);
    assert_eq!(header(&call, "access-control-allow-origin"), None);
    assert!(!varies_by_origin(&call), "{:?}", call.headers());
}
