//! Route ownership through a running node: `/{tenant}/...` belongs to that tenant, declared
//! routes live under prefixes the operator grants, and no way of writing a path (exact,
//! parameter, catch-all, letter case, trailing slash) hands one tenant's requests to another.

use crate::support::{Node, SpecDir, specs};
use std::process::Command;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(20);

/// The tenant that answered: the receipt id starts with it (`alpha.<hex>`); `None` without one.
fn answered_by(response: &reqwest::Response) -> Option<String> {
    let receipt = response.headers().get("gojinn-receipt")?.to_str().ok()?;
    receipt.split_once('.').map(|(tenant, _)| tenant.to_owned())
}

/// Alpha owns `/shop` and its namespace; beta tries to take alpha's paths every way there is.
fn alpha_and_a_thief(dir: &SpecDir) {
    dir.module("echo");
    let alpha = specs(
        "alpha",
        "routePrefixes: [/shop]",
        &[("probe", "echo", ""), ("cart", "echo", "routes: [{ path: /shop/cart }]")],
    );
    let beta = specs(
        "beta",
        "",
        &[
            ("exact", "echo", "routes: [{ path: /shop/cart }]"),
            ("param", "echo", "routes: [{ path: \"/{t}/probe\" }]"),
            ("catch-all", "echo", "routes: [{ path: \"/alpha/{*rest}\" }]"),
            ("case", "echo", "routes: [{ path: /ALPHA/probe }]"),
            ("slash", "echo", "routes: [{ path: /shop/ }]"),
        ],
    );
    dir.write("alpha.yaml", &alpha);
    dir.write("beta.yaml", &beta);
}

#[tokio::test]
async fn routes_into_another_tenants_paths_are_refused_and_never_receive_its_requests() {
    let dir = SpecDir::new();
    alpha_and_a_thief(&dir);
    let node = Node::start(&dir).await;
    let errors: Vec<String> = node.server.first_deploy().errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 5, "{errors:#?}");
    for (route, owner) in [
        ("/shop/cart", "\"/shop\", granted to tenant alpha at alpha.yaml:1"),
        ("/{t}/probe", "/alpha/..., the namespace of tenant alpha defined at alpha.yaml:1"),
        ("/alpha/{*rest}", "/alpha/..., the namespace of tenant alpha defined at alpha.yaml:1"),
        ("/ALPHA/probe", "/alpha/..., the namespace of tenant alpha defined at alpha.yaml:1"),
        ("/shop/", "\"/shop\", granted to tenant alpha at alpha.yaml:1"),
    ] {
        let refused = format!("spec.routes: route {route:?} is outside tenant beta's namespace");
        let error = errors.iter().find(|e| e.contains(&refused));
        let error = error.unwrap_or_else(|| panic!("{route} was not refused: {errors:#?}"));
        assert!(error.starts_with("beta.yaml:"), "{error}");
        assert!(error.contains(owner), "{route}: {error}");
    }

    for path in ["/alpha/probe", "/ALPHA/probe", "/shop/cart", "/shop/", "/alpha/elsewhere", "/Alpha/probe"] {
        let response = node.client.post(node.url(path)).body("secret").send().await.unwrap();
        let tenant = answered_by(&response);
        assert_ne!(tenant.as_deref(), Some("beta"), "{path} reached beta");
        match response.status().as_u16() {
            200 => assert_eq!(tenant.as_deref(), Some("alpha"), "{path}"),
            404 => {}
            status => panic!("{path}: unexpected {status}"),
        }
    }
    let probe = node.client.post(node.url("/alpha/probe")).body("hi").send().await.unwrap();
    assert_eq!((probe.status().as_u16(), answered_by(&probe).as_deref()), (200, Some("alpha")));
}

#[tokio::test]
async fn a_tenant_created_after_another_claimed_its_name_takes_its_namespace_back() {
    let dir = SpecDir::new();
    dir.module("echo");
    dir.write(
        "beta.yaml",
        &specs("beta", "routePrefixes: [/shop]", &[("f", "echo", "routes: [{ path: \"/shop/{*rest}\" }]")]),
    );
    let node = Node::start(&dir).await;
    let before = node.post("/shop/hello", "x").await;
    assert_eq!(
        answered_by(&before).as_deref(),
        Some("beta"),
        "beta's grant serves while no tenant is named shop"
    );

    dir.write("shop.yaml", &specs("shop", "", &[("hello", "echo", "")]));
    let after = node.eventually("/shop/hello", WITHIN, |r| answered_by(r).as_deref() == Some("shop")).await;
    assert_eq!(after.status(), 200);
    // Beta's applied route still exists (its document is now invalid, so nothing is pruned),
    // but a path under /shop/ is only ever routed within tenant shop.
    let elsewhere = node.post("/shop/elsewhere", "x").await;
    assert_eq!(elsewhere.status(), 404);
    assert_eq!(answered_by(&elsewhere), None);
}

#[tokio::test]
async fn a_tenant_declaring_routes_without_a_grant_is_told_to_get_one() {
    let dir = SpecDir::new();
    dir.module("echo");
    dir.write(
        "acme.yaml",
        &specs("acme", "", &[("f", "echo", "routes: [{ path: /hello }, { path: /acme/own }]")]),
    );
    let node = Node::start(&dir).await;
    let errors = &node.server.first_deploy().errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    let error = errors[0].to_string();
    assert!(error.starts_with("acme.yaml:"), "{error}");
    assert!(error.contains("route \"/hello\" is outside tenant acme's namespace"), "{error}");
    assert!(error.contains("spec.routePrefixes"), "{error}");
    assert_eq!(node.get("/hello").await.status(), 404);

    dir.write(
        "acme.yaml",
        &specs(
            "acme",
            "routePrefixes: [/hello]",
            &[("f", "echo", "routes: [{ path: /hello }, { path: /acme/own }]")],
        ),
    );
    node.eventually("/hello", WITHIN, |r| r.status() == 200).await;
    assert_eq!(
        node.get("/acme/own").await.status(),
        200,
        "a route in the tenant's own namespace needs no grant"
    );
}

#[test]
fn validate_refuses_every_way_to_collide_naming_both_sides() {
    let fixture = crate::support::repo_root().join("tests/fixtures/specs/route-ownership");
    let output = Command::new(env!("CARGO_BIN_EXE_gojinn"))
        .args(["validate", "--specs"])
        .arg(&fixture)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let errors = String::from_utf8_lossy(&output.stderr);
    for (what, expected) in [
        (
            "exact prefix",
            "routes.yaml:13: spec.routePrefixes: \"/shop\" overlaps \"/shop\", granted to tenant alpha at routes.yaml:2",
        ),
        (
            "trailing slash",
            "routes.yaml:19: spec.routePrefixes: \"/shop/\" overlaps \"/shop\", granted to tenant alpha at routes.yaml:2",
        ),
        (
            "case",
            "routes.yaml:25: spec.routePrefixes: \"/SHOP/cart\" overlaps \"/shop\", granted to tenant alpha at routes.yaml:2",
        ),
        (
            "tenant name",
            "\"/Alpha\" overlaps /alpha/..., the namespace of tenant alpha defined at routes.yaml:2",
        ),
        ("exact route", "spec.routes: route \"/shop/cart\" is outside tenant beta's namespace"),
        ("parameter", "route \"/{section}/home\" is outside"),
        ("catch-all", "route \"/alpha/{*rest}\" is outside"),
        ("case route", "route \"/ALPHA/home\" is outside"),
        ("trailing slash route", "route \"/shop/\" is outside"),
        (
            "no grant",
            "route \"/elsewhere\" is outside tenant beta's namespace (/beta/...) and its granted prefixes (/beta-api); the operator grants prefixes in tenant beta's spec.routePrefixes",
        ),
    ] {
        assert!(errors.contains(expected), "{what}: {expected:?} missing from\n{errors}");
    }
    assert_eq!(errors.lines().count(), 9, "one line per refused document: {errors}");
}
