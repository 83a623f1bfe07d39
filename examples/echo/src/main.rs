//! Example function: returns the request body byte-for-byte with the request's content type, and
//! the method in `x-echo-method`. Binary bodies survive the round trip through `body_b64`.

use gojinn::{Request, Response};

#[gojinn::handler]
fn handle(req: Request) -> Response {
    let response = Response::new(200).with_header("x-echo-method", req.method()).with_body(req.body());
    match req.header("content-type") {
        Some(content_type) => response.with_header("content-type", content_type),
        None => response,
    }
}
