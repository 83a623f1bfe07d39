//! The REST API's OpenAPI document and the routes that describe what is deployed, on a real
//! node over HTTP: the document the node serves validates against the official OpenAPI 3.1
//! schema (vendored in tests/fixtures/openapi), declares the security of every operation, and
//! lists exactly the routes the listener serves (every documented operation is answered by its
//! route, not the 404/405 fallbacks; every other method on a documented path, and every path
//! between documented ones, is); and the tenant and function routes answer what was applied,
//! to the admin token and the tenant's own keys only, with a new revision after a change.

use crate::api_keys::new_key;
use crate::support::api::Api;
use crate::support::{Node, SpecDir, error_code};
use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const SCHEMA: &str = include_str!("../fixtures/openapi/openapi-3.1-schema.json");
const SCHEMA_ID: &str = "https://spec.openapis.org/oas/3.1/schema/2022-10-07";
const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Tenants alpha (keys `ci`, every scope, and `auditor`, receipts only; function `probe` with a
/// route and limits) and beta (a key; function `probe`), with the keys; and the spec dir.
struct Deployed {
    dir: SpecDir,
    alpha: String,
    auditor: String,
    beta: String,
    alpha_line: String,
    auditor_line: String,
    beta_line: String,
}

impl Deployed {
    fn new() -> Self {
        let (alpha, alpha_line) = new_key("alpha", &["--name", "ci"]);
        let (auditor, auditor_line) = new_key("alpha", &["--name", "auditor", "--scope", "receipts"]);
        let (beta, beta_line) = new_key("beta", &[]);
        let dir = SpecDir::new();
        dir.module("guest-jobprobe");
        let deployed = Self { dir, alpha, auditor, beta, alpha_line, auditor_line, beta_line };
        deployed.write("timeout: 2s");
        deployed
    }

    /// The specs, alpha's probe with `limits` besides its memory and rate.
    fn write(&self, limits: &str) {
        let yaml = format!(
            "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: {{ name: alpha }}\nspec:\n  replicas: 1\n  \
             quotas: {{ maxConcurrency: 20 }}\n  apiKeys:\n    {}\n    {}\n---\n\
             apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: {{ name: probe, tenant: alpha }}\nspec:\n  \
             module: {{ path: modules/guest-jobprobe.wasm }}\n  routes: [{{ path: /alpha/api/probe, methods: [GET, POST] }}]\n  \
             limits: {{ memory: 32Mi, requestsPerSecond: 50, {limits} }}\n---\n\
             apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: {{ name: beta }}\nspec:\n  apiKeys:\n    {}\n---\n\
             apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: {{ name: probe, tenant: beta }}\nspec:\n  \
             module: {{ path: modules/guest-jobprobe.wasm }}\n",
            self.alpha_line, self.auditor_line, self.beta_line
        );
        self.dir.write("specs.yaml", &yaml);
    }
}

/// GET `path` on `base` with `credential` as `X-Gojinn-Key` (or the admin token as a bearer).
async fn get(api: &Api, path: &str, key: Option<&str>) -> reqwest::Response {
    let request = api.http.get(format!("{}{path}", api.base));
    let request = match key {
        Some(key) => request.header("x-gojinn-key", key),
        None => request.bearer_auth(&api.token),
    };
    request.send().await.expect("GET")
}

async fn json(api: &Api, path: &str, key: Option<&str>) -> Value {
    let response = get(api, path, key).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// The document a listener serves, with no credential.
async fn document(api: &Api) -> Value {
    let response = api.http.get(format!("{}/_gojinn/v1/openapi.json", api.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

/// Each documented path with the methods it lists.
fn operations(document: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .map(|(path, item)| {
            let methods = item.as_object().unwrap().keys().map(|m| m.to_uppercase());
            (path.clone(), methods.filter(|m| METHODS.contains(&m.as_str()) || m == "HEAD").collect())
        })
        .collect()
}

/// A documented path with its parameters filled in: alpha's, its function probe, a job id.
fn filled(path: &str) -> String {
    path.replace("{tenant}", "alpha").replace("{function}", "probe").replace("{id}", "alpha.0123456789abcdef")
}

/// Whether a response is the router's own: a 404 `no_route` or a 405.
async fn fallback(response: reqwest::Response) -> Option<(u16, String)> {
    let status = response.status().as_u16();
    let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body: Value = response.json().await.unwrap_or_default();
    match (status, body["code"].as_str()) {
        (404, Some("no_route")) => Some((404, String::new())),
        (405, _) => Some((405, allow)),
        _ => None,
    }
}

/// Every (method, path) `document` lists is answered by its route, every other method on a
/// documented path is the 405 naming the listed ones, and every path between documented ones
/// that is not documented is the 404 `no_route`: the listener serves exactly the document.
async fn assert_served_exactly(api: &Api, document: &Value) {
    let operations = operations(document);
    let mut wrong = Vec::new();
    let mut between = BTreeSet::new();
    for (path, methods) in &operations {
        let url = format!("{}{}", api.base, filled(path));
        for method in METHODS {
            let request = api.http.request(Method::from_bytes(method.as_bytes()).unwrap(), &url);
            let answered = fallback(request.bearer_auth(&api.token).body("{}").send().await.unwrap()).await;
            let listed = methods.contains(method);
            let allow = methods.iter().filter(|m| *m != "HEAD").cloned().collect::<Vec<_>>().join(", ");
            match (&answered, listed) {
                (None, true) => {}
                (Some((405, allowed)), false) if *allowed == allow => {}
                _ => wrong.push(format!("{method} {path}: listed {listed}, router answered {answered:?}")),
            }
        }
        let segments: Vec<&str> = path.split('/').collect();
        for end in 2..segments.len() {
            between.insert(segments[..end].join("/"));
        }
    }
    for path in between.iter().filter(|path| !operations.contains_key(*path)) {
        let url = format!("{}{}", api.base, filled(path));
        let answered = fallback(api.http.get(&url).bearer_auth(&api.token).send().await.unwrap()).await;
        if answered != Some((404, String::new())) {
            wrong.push(format!("GET {path} is not documented but answered {answered:?}"));
        }
    }
    assert!(wrong.is_empty(), "the listener and its document differ:\n{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_served_document_is_openapi_3_1_and_lists_exactly_the_routes_served() {
    let deployed = Deployed::new();
    let node = Node::start(&deployed.dir).await;
    let api = Api::of(&node);
    let document = document(&api).await;

    // The official OpenAPI 3.1 schema (draft 2020-12) accepts it.
    let mut compiler = boon::Compiler::new();
    let mut schemas = boon::Schemas::new();
    compiler.add_resource(SCHEMA_ID, serde_json::from_str(SCHEMA).unwrap()).unwrap();
    let index = compiler.compile(SCHEMA_ID, &mut schemas).unwrap();
    if let Err(error) = schemas.validate(&document, index) {
        panic!("the document is not valid OpenAPI 3.1: {error:#}");
    }
    assert_eq!(document["openapi"], "3.1.0");

    // Every operation says who may call it, naming declared schemes only; every one that takes
    // a credential lists its 401; every path parameter is declared; every operation id is one.
    let schemes: BTreeSet<&str> =
        document["components"]["securitySchemes"].as_object().unwrap().keys().map(String::as_str).collect();
    for scheme in ["admin_token", "tenant_key", "tenant_key_header", "github_signature", "gitlab_token"] {
        assert!(schemes.contains(scheme), "{scheme} is declared");
    }
    let mut ids = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            let security =
                operation["security"].as_array().unwrap_or_else(|| panic!("{at} declares its security"));
            for requirement in security {
                for scheme in requirement.as_object().unwrap().keys() {
                    assert!(schemes.contains(scheme.as_str()), "{at}: {scheme} is not declared");
                }
            }
            if !security.is_empty() {
                assert!(operation["responses"].get("401").is_some(), "{at} lists its 401");
            }
            let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
            for name in path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')) {
                let declared = parameters.iter().any(|p| p["name"] == name && p["in"] == "path");
                assert!(declared, "{at}: path parameter {name} is declared");
            }
            assert!(ids.insert(operation["operationId"].as_str().unwrap().to_owned()), "{at}: a unique id");
        }
    }
    let public = [
        "/_gojinn/health",
        "/_gojinn/ready",
        "/_gojinn/metrics",
        "/_gojinn/v1/jobs/{id}",
        "/_gojinn/v1/openapi.json",
    ];
    for path in public {
        assert_eq!(document["paths"][path]["get"]["security"], serde_json::json!([]), "{path} is public");
    }
    let tenants = &document["paths"]["/_gojinn/v1/tenants/{tenant}/functions/{function}"]["get"];
    assert!(tenants["responses"]["404"]["description"].as_str().unwrap().contains("no_function"));
    assert_eq!(
        tenants["responses"]["404"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Error"
    );
    let error = &document["components"]["schemas"]["Error"];
    assert_eq!(error["required"], serde_json::json!(["code", "message"]), "{error}");
    let description = document["info"]["description"].as_str().unwrap();
    assert!(description.contains("Function invocation paths"), "{description}");

    assert_served_exactly(&api, &document).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_admin_listen_the_operator_listener_documents_exactly_what_it_serves() {
    let deployed = Deployed::new();
    let data = tempfile::tempdir().unwrap();
    let mut config = Node::config(deployed.dir.path(), data.path());
    config.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    let node = Node::start_config(config, data).await;
    let operator = Api::new(format!("http://{}", node.server.admin_addr().unwrap()), node.data.path());
    let functions = Api::of(&node);
    let document = document(&operator).await;
    let paths = operations(&document);
    assert!(paths.contains_key("/_gojinn/v1/tenants/{tenant}/functions"), "{paths:?}");
    assert!(!paths.contains_key("/_gojinn/v1/jobs/{id}"), "the job status URL is the functions listener's");
    assert_served_exactly(&operator, &document).await;
    let (status, code, _) = error_code(
        functions.http.get(format!("{}/_gojinn/v1/openapi.json", functions.base)).send().await.unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "no_route"), "the document is on the operator listener only");
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_and_functions_show_what_was_applied_to_the_admin_and_the_tenants_own_keys() {
    let deployed = Deployed::new();
    let node = Node::start(&deployed.dir).await;
    let api = Api::of(&node);

    // The admin token lists every tenant, a page at a time.
    let all = json(&api, "/_gojinn/v1/tenants", None).await;
    let names: Vec<&str> =
        all["tenants"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "beta"], "{all}");
    assert!(all.get("next").is_none(), "{all}");
    let first = json(&api, "/_gojinn/v1/tenants?limit=1", None).await;
    assert_eq!(
        (first["tenants"][0]["name"].as_str(), first["next"].as_str()),
        (Some("alpha"), Some("alpha"))
    );
    let second = json(&api, "/_gojinn/v1/tenants?limit=1&after=alpha", None).await;
    assert_eq!(second["tenants"][0]["name"], "beta", "{second}");
    assert!(second.get("next").is_none(), "{second}");
    let (status, code, message) = error_code(get(&api, "/_gojinn/v1/tenants?limit=0", None).await).await;
    assert_eq!((status, code.as_str()), (400, "bad_query"), "{message}");

    // Alpha's key, whatever its scope, sees alpha: keys by name and scopes, never a digest.
    for key in [&deployed.alpha, &deployed.auditor] {
        let response = get(&api, "/_gojinn/v1/tenants/alpha", Some(key)).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        for secret in [&deployed.alpha, &deployed.auditor] {
            let digest = hex::encode(Sha256::digest(secret.as_bytes()));
            assert!(!text.contains(&digest) && !text.contains(secret.as_str()), "{text}");
        }
        let tenant: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(tenant["name"], "alpha");
        assert_eq!(tenant["replicas"], 1);
        assert_eq!(tenant["limits"]["max_concurrency"], 20);
        assert_eq!(tenant["status"]["state"], "applied", "{tenant}");
        assert_eq!(tenant["hash"].as_str().unwrap().len(), 64);
        let keys = serde_json::json!([
            { "name": "ci", "scopes": ["invoke", "jobs", "receipts", "mcp"] },
            { "name": "auditor", "scopes": ["receipts"] },
        ]);
        assert_eq!(tenant["api_keys"], keys, "{tenant}");
    }

    // The function: its revision, what this node serves, the module's sha256, limits, routes.
    let module = std::fs::read(deployed.dir.path().join("modules/guest-jobprobe.wasm")).unwrap();
    let function = json(&api, "/_gojinn/v1/tenants/alpha/functions/probe", Some(&deployed.auditor)).await;
    assert_eq!((function["tenant"].as_str(), function["name"].as_str()), (Some("alpha"), Some("probe")));
    assert_eq!(function["module_sha256"], hex::encode(Sha256::digest(&module)));
    assert_eq!(function["served_revision"], function["revision"], "{function}");
    assert_eq!(function["status"]["state"], "applied");
    let limits = &function["limits"];
    assert_eq!(
        (limits["memory_bytes"].as_u64(), limits["timeout_ms"].as_u64()),
        (Some(32 << 20), Some(2000))
    );
    assert_eq!(limits["requests_per_second"], 50);
    assert_eq!(
        function["routes"],
        serde_json::json!([{ "path": "/alpha/api/probe", "methods": ["GET", "POST"] }])
    );
    let listed = json(&api, "/_gojinn/v1/tenants/alpha/functions", Some(&deployed.alpha)).await;
    assert_eq!(listed["functions"], serde_json::json!([function.clone()]), "{listed}");

    // Another tenant's key is refused; unknown names are the one error shape's 404s.
    for path in [
        "/_gojinn/v1/tenants/alpha",
        "/_gojinn/v1/tenants/alpha/functions",
        "/_gojinn/v1/tenants/alpha/functions/probe",
    ] {
        let (status, code, message) = error_code(get(&api, path, Some(&deployed.beta)).await).await;
        assert_eq!((status, code.as_str()), (403, "forbidden"), "{path}: {message}");
    }
    let (status, code, _) = error_code(get(&api, "/_gojinn/v1/tenants", Some(&deployed.alpha)).await).await;
    assert_eq!((status, code.as_str()), (403, "forbidden"), "the list is the admin's");
    for (path, expected) in [
        ("/_gojinn/v1/tenants/gamma", "no_tenant"),
        ("/_gojinn/v1/tenants/gamma/functions", "no_tenant"),
        ("/_gojinn/v1/tenants/alpha/functions/nope", "no_function"),
        ("/_gojinn/v1/tenants/alpha/functions/NOPE", "no_function"),
    ] {
        let (status, code, message) = error_code(get(&api, path, None).await).await;
        assert_eq!((status, code.as_str()), (404, expected), "{path}: {message}");
        assert!(!message.is_empty());
    }

    // A changed spec, applied: a new revision and hash, served.
    deployed.write("timeout: 3s");
    let deadline = Instant::now() + Duration::from_secs(30);
    let changed = loop {
        let now = json(&api, "/_gojinn/v1/tenants/alpha/functions/probe", None).await;
        if now["revision"] != function["revision"] && now["served_revision"] == now["revision"] {
            break now;
        }
        assert!(Instant::now() < deadline, "the change was not applied within 30s: {now}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(changed["hash"], function["hash"]);
    assert_eq!(changed["limits"]["timeout_ms"], 3000);
    assert_eq!(changed["module_sha256"], function["module_sha256"]);
}
