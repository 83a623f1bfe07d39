//! Example function: a read-only catalog as a JSON API with its own routes.
//!
//! - `GET /items` lists the catalog, `GET /items/{id}` returns one item;
//! - `POST /items` validates a new item and answers 201 with it (nothing is stored: state comes
//!   with the kv host functions);
//! - an unknown path is a 404, a known path with the wrong method a 405, both as JSON errors.
//!
//! Routes match the end of the path, after the `/{tenant}/{function}` prefix when the call came
//! through it, so the same module also serves a declared route such as `/api/items`.

use gojinn::{Request, Response};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct Item<'a> {
    id: u64,
    name: &'a str,
    price_cents: u64,
}

impl<'a> Item<'a> {
    const fn new(id: u64, name: &'a str, price_cents: u64) -> Self {
        Self { id, name, price_cents }
    }
}

static CATALOG: [Item<'static>; 3] =
    [Item::new(1, "lamp", 2_500), Item::new(2, "rug", 12_000), Item::new(3, "vase", 4_200)];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewItem {
    name: String,
    price_cents: u64,
}

const MAX_NAME_LEN: usize = 100;

enum Route<'a> {
    Collection,
    Member(&'a str),
}

#[gojinn::handler]
fn handle(req: Request) -> Response {
    let prefix = format!("/{}/{}", req.tenant(), req.function());
    let path = req.path().strip_prefix(prefix.as_str()).unwrap_or(req.path());
    match (route(path), req.method()) {
        (Some(Route::Collection), "GET") => Response::json(200, &CATALOG),
        (Some(Route::Collection), "POST") => create(&req),
        (Some(Route::Member(id)), "GET") => show(id),
        (Some(Route::Collection), _) => method_not_allowed("GET, POST"),
        (Some(Route::Member(_)), _) => method_not_allowed("GET"),
        (None, _) => Response::error(404, "not_found", format!("no route for {}", req.path())),
    }
}

/// Matches the last one or two path segments: `…/items` or `…/items/{id}`.
fn route(path: &str) -> Option<Route<'_>> {
    let mut segments = path.trim_end_matches('/').rsplit('/');
    match (segments.next(), segments.next()) {
        (Some("items"), _) => Some(Route::Collection),
        (Some(id), Some("items")) => Some(Route::Member(id)),
        _ => None,
    }
}

fn show(id: &str) -> Response {
    let item = id.parse::<u64>().ok().and_then(|id| CATALOG.iter().find(|item| item.id == id));
    match item {
        Some(item) => Response::json(200, item),
        None => Response::error(404, "not_found", format!("no item {id}")),
    }
}

fn create(req: &Request) -> Response {
    let new: NewItem = match req.json() {
        Ok(new) => new,
        Err(error) => return error.into(),
    };
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        let message = format!("name must have 1 to {MAX_NAME_LEN} characters");
        return Response::error(400, "invalid_item", message);
    }
    let id = CATALOG.len() as u64 + 1;
    Response::json(201, &Item::new(id, name, new.price_cents))
}

fn method_not_allowed(allow: &str) -> Response {
    Response::error(405, "method_not_allowed", "method not allowed").with_header("allow", allow)
}
