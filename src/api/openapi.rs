//! The OpenAPI 3.1 document of a listener's routes, `GET /_gojinn/v1/openapi.json`. It is not
//! written by hand: every route is declared once, with `#[utoipa::path]` on its handler, and
//! registered through utoipa-axum's `OpenApiRouter`, which adds the handler to the axum router
//! and its operation to the document together; [`document`] adds what no route says (the API's
//! description, the security schemes, the default security). [`strict`] makes a documented
//! route answer any other method with the one 405 of [`crate::failure`]. The edge composes
//! the routes and serves the document of exactly what its listener serves ([`routes`]).

use crate::failure::allow_methods;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use std::sync::Arc;
use utoipa::openapi::path::PathItem;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, SecurityRequirement};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

/// Where the document is served.
pub const PATH: &str = "/_gojinn/v1/openapi.json";

/// The admin bearer token (`admin.tokenFile`): opens every route.
pub const ADMIN_TOKEN: &str = "admin_token";
/// A tenant's API key as `Authorization: Bearer`.
pub const TENANT_KEY: &str = "tenant_key";
/// A tenant's API key as `X-Gojinn-Key`.
pub const TENANT_KEY_HEADER: &str = "tenant_key_header";
/// GitHub's `X-Hub-Signature-256` over the reconcile webhook's body.
pub const GITHUB_SIGNATURE: &str = "github_signature";
/// GitLab's `X-Gitlab-Token`.
pub const GITLAB_TOKEN: &str = "gitlab_token";

const DESCRIPTION: &str = "The routes this Gojinn listener serves under /_gojinn: the admin and \
    tenant REST API, the reconcile webhook, MCP, health, readiness, metrics and the job status \
    URL (each where the listener serves it: with admin.listen set, the job status URL is on the \
    functions listener and the rest on the operator listener). Function invocation paths \
    (/{tenant}/{function}/... and the routes tenants declare) are the tenants' own and are not \
    listed here.\n\n\
    Every error answer is the one JSON body {\"code\", \"message\"} (schema Error), with the \
    status and code each operation lists. On every listed path, a method the path does not \
    serve is 405 method_not_allowed with Allow; a path under /_gojinn that no route serves is \
    404 no_route. A request the server's bounds refuse before it is routed (connections, header \
    size, URL length) is answered by those bounds (431, 414) and not listed per operation.\n\n\
    Security: the admin token opens every route that takes a credential; a tenant's API key \
    (as Authorization: Bearer or X-Gojinn-Key) opens that tenant's routes where the operation \
    lists it, with the scope it names. No credential, or one that is neither the admin token \
    nor any tenant's key, is 401 unauthorized (WWW-Authenticate: Bearer); a tenant's key where \
    it does not open is 403 forbidden. Operations with an empty security list are public.";

/// The document of `paths` (what the routes declared), with the API's description, its
/// security schemes and the default security (the admin token).
fn document(mut paths: OpenApi) -> OpenApi {
    paths.info = InfoBuilder::new()
        .title("Gojinn")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(DESCRIPTION))
        .build();
    let components = paths.components.get_or_insert_with(Default::default);
    let bearer = |what: &str| {
        SecurityScheme::Http(
            HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(what)).build(),
        )
    };
    let header = |name: &str, what: &str| {
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(name, what)))
    };
    components
        .add_security_scheme(ADMIN_TOKEN, bearer("The admin token (admin.tokenFile): opens every route."));
    components.add_security_scheme(
        TENANT_KEY,
        bearer("A tenant's API key (spec.apiKeys): opens that tenant's routes where the operation lists it."),
    );
    components.add_security_scheme(
        TENANT_KEY_HEADER,
        header("X-Gojinn-Key", "A tenant's API key, as this header instead of Authorization: Bearer."),
    );
    components.add_security_scheme(
        GITHUB_SIGNATURE,
        header(
            "X-Hub-Signature-256",
            "sha256=<hex HMAC-SHA256 of the raw body under reconcile.webhook.secretFile>, as GitHub signs a webhook.",
        ),
    );
    components.add_security_scheme(
        GITLAB_TOKEN,
        header("X-Gitlab-Token", "The secret of reconcile.webhook.secretFile, as GitLab sends it."),
    );
    paths.security = Some(vec![SecurityRequirement::new(ADMIN_TOKEN, Vec::<String>::new())]);
    paths
}

/// `routes` made by [`routes!`], answering any method its operations do not name with the one
/// 405 `method_not_allowed`, `Allow` listing those they do.
pub fn strict<S: Clone + Send + Sync + 'static>(routes: UtoipaMethodRouter<S>) -> UtoipaMethodRouter<S> {
    let (schemas, paths, method_router) = routes;
    let mut methods: Vec<&str> = paths.paths.values().flat_map(methods).collect();
    methods.sort_unstable();
    methods.dedup();
    (schemas, paths, allow_methods(method_router, methods.join(", ")))
}

/// The methods `item` has operations for, as HTTP names them.
fn methods(item: &PathItem) -> impl Iterator<Item = &'static str> + '_ {
    [
        ("GET", &item.get),
        ("HEAD", &item.head),
        ("POST", &item.post),
        ("PUT", &item.put),
        ("PATCH", &item.patch),
        ("DELETE", &item.delete),
        ("OPTIONS", &item.options),
        ("TRACE", &item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.is_some().then_some(method))
}

/// The document, serialized once.
#[derive(Clone)]
struct Served(Arc<str>);

/// The route that serves the document of `paths`, the routes of a listener, to which it adds
/// itself.
pub fn routes(paths: OpenApi) -> axum::Router {
    let own: OpenApiRouter<Served> = OpenApiRouter::new().routes(strict(routes!(openapi)));
    let (router, mut own_paths) = own.split_for_parts();
    own_paths.merge(paths);
    let text = serde_json::to_string(&document(own_paths)).expect("the document serializes");
    router.with_state(Served(text.into()))
}

/// `GET /_gojinn/v1/openapi.json` → this document.
#[utoipa::path(
    get,
    path = PATH,
    operation_id = "openapi_document",
    tag = "meta",
    summary = "This OpenAPI 3.1 document",
    description = "The document of every route this listener serves: generate a client from it.",
    security(),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = inline(serde_json::Value))),
)]
async fn openapi(State(Served(text)): State<Served>) -> Response {
    let mut response = text.to_string().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[utoipa::path(get, path = "/probe", security(), responses((status = 200, description = "ok")))]
    async fn probe() {}

    #[tokio::test]
    async fn a_documented_route_answers_any_other_method_with_the_one_405() {
        let (router, paths) = OpenApiRouter::<()>::new().routes(strict(routes!(probe))).split_for_parts();
        assert_eq!(paths.paths.paths.keys().collect::<Vec<_>>(), ["/probe"]);
        for method in [http::Method::PUT, http::Method::DELETE, http::Method::POST] {
            let request = http::Request::builder().method(method.clone()).uri("/probe");
            let answer =
                router.clone().oneshot(request.body(axum::body::Body::empty()).unwrap()).await.unwrap();
            assert_eq!(answer.status(), 405, "{method}");
            assert_eq!(answer.headers()[header::ALLOW], "GET", "{method}");
        }
        let get = http::Request::get("/probe").body(axum::body::Body::empty()).unwrap();
        assert_eq!(router.oneshot(get).await.unwrap().status(), 200);
    }

    #[test]
    fn the_document_declares_every_scheme_and_asks_for_the_admin_token_by_default() {
        let document = serde_json::to_value(document(OpenApi::default())).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let schemes = &document["components"]["securitySchemes"];
        assert_eq!(schemes[ADMIN_TOKEN]["scheme"], "bearer");
        assert_eq!(schemes[TENANT_KEY]["scheme"], "bearer");
        assert_eq!(schemes[TENANT_KEY_HEADER]["name"], "X-Gojinn-Key");
        assert_eq!(schemes[GITHUB_SIGNATURE]["name"], "X-Hub-Signature-256");
        assert_eq!(schemes[GITLAB_TOKEN]["name"], "X-Gitlab-Token");
        assert_eq!(document["security"], serde_json::json!([{ ADMIN_TOKEN: [] }]));
    }
}
