//! Example function: answers `Hello from Gojinn!`, or `Hello, NAME!` for `?name=NAME`, and logs
//! the greeting through the host.

use gojinn::{Request, Response};

#[gojinn::handler]
fn handle(req: Request) -> Response {
    let greeting = match req.query("name") {
        Some(name) if !name.is_empty() => format!("Hello, {name}!"),
        _ => "Hello from Gojinn!".to_owned(),
    };
    gojinn::log::info(&format!("greeting: {greeting}"));
    Response::text(200, greeting)
}
