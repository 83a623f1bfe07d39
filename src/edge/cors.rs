//! A tenant's CORS policy (`spec.cors`) at the edge, through tower-http's CORS layer: built once
//! per tenant at each deploy ([`layer`]), and put around every request routed to one of the
//! tenant's functions ([`answer`]). A preflight is answered by the layer alone: before the route's
//! method check and the API key check, without the guest, without a receipt. Every other
//! response, errors included (a 401 without a key), carries the policy's headers, or a browser
//! would hide it from the calling script. An origin the policy does not allow gets no CORS
//! headers, and the browser keeps the response from the script. A bare `OPTIONS` (no preflight)
//! goes to the function as any method does. Nothing here runs a function.

use crate::spec::{CORS_WILDCARD, Cors};
use axum::body::Body;
use axum::response::Response;
use http::{HeaderName, HeaderValue, Method, Request, header};
use std::convert::Infallible;
use std::future::Future;
use tower::{Layer, ServiceExt, service_fn};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer, ExposeHeaders};

/// A tenant's policy as tower-http's layer. The spec was checked when resolved (every `"*"`
/// alone and never with credentials); should a record slip past that, credentials are left off
/// rather than the layer refusing to serve.
pub fn layer(policy: &Cors) -> CorsLayer {
    let any_origin = policy.allow_origins.iter().any(|o| o.0 == CORS_WILDCARD);
    let any_method = policy.allow_methods.iter().any(|m| m.0 == CORS_WILDCARD);
    let any_header = policy.allow_headers.iter().any(|h| h.0 == CORS_WILDCARD);
    let any_exposed = policy.expose_headers.iter().any(|h| h.0 == CORS_WILDCARD);
    let origins = if any_origin {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(policy.allow_origins.iter().filter_map(|o| HeaderValue::from_str(&o.0).ok()))
    };
    let methods = if any_method {
        AllowMethods::any()
    } else {
        AllowMethods::list(
            policy.allow_methods.iter().filter_map(|m| Method::from_bytes(m.0.as_bytes()).ok()),
        )
    };
    let names = |names: &[crate::spec::CorsHeader]| {
        names.iter().filter_map(|h| HeaderName::from_bytes(h.0.as_bytes()).ok()).collect::<Vec<_>>()
    };
    let headers =
        if any_header { AllowHeaders::any() } else { AllowHeaders::list(names(&policy.allow_headers)) };
    let exposed =
        if any_exposed { ExposeHeaders::any() } else { ExposeHeaders::list(names(&policy.expose_headers)) };
    let wildcard = any_origin || any_method || any_header || any_exposed;
    let mut layer = CorsLayer::new()
        .allow_origin(origins)
        .allow_methods(methods)
        .allow_headers(headers)
        .expose_headers(exposed)
        .allow_credentials(policy.allow_credentials && !wildcard);
    if let Some(max_age) = policy.max_age {
        layer = layer.max_age(max_age.0);
    }
    layer
}

/// Whether a request to a tenant with a policy goes through it: every request but a bare
/// `OPTIONS`, which tower-http would answer as a preflight though it is none.
pub fn applies(request: &Request<Body>) -> bool {
    request.method() != Method::OPTIONS || is_preflight(request)
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
fn is_preflight(request: &Request<Body>) -> bool {
    let headers = request.headers();
    request.method() == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The response to `request` under a tenant's policy `cors`: a preflight's from the layer alone
/// (`serve` is not called), any other request's from `serve`, with the policy's headers added.
/// The layer was built at deploy; putting it around one request clones it, which copies its
/// reference-counted header values, not the policy.
pub async fn answer<Serve, Served>(cors: &CorsLayer, request: Request<Body>, mut serve: Serve) -> Response
where
    Serve: FnMut(Request<Body>) -> Served,
    Served: Future<Output = Response>,
{
    let inner = service_fn(move |request| {
        let served = serve(request);
        async move { Ok::<_, Infallible>(served.await) }
    });
    match cors.layer(inner).oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
