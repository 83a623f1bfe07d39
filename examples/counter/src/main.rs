//! Example function: named counters in the tenant's key-value store, under `counters/`.
//!
//! - `GET ?name=visits` answers the counter's value (0 when it was never counted);
//! - `POST ?name=visits` adds one and answers the new value.
//!
//! Increments are a compare-and-set loop, so concurrent calls never lose a count. The spec grants
//! `kv: { read: ["counters/*"], write: ["counters/*"] }` and nothing else.

use gojinn::{Error, Request, Response};

#[gojinn::handler]
fn handle(req: Request) -> Result<Response, Error> {
    let name = req.query("name").unwrap_or("hits");
    let key = format!("counters/{name}");
    let count = match req.method() {
        "POST" => increment(&key)?,
        _ => read(&key)?.unwrap_or(0),
    };
    Ok(Response::text(200, count.to_string()))
}

fn read(key: &str) -> Result<Option<u64>, Error> {
    match gojinn::kv::get(key)? {
        None => Ok(None),
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            text.parse().map(Some).map_err(|_| Error::Internal(format!("{key} holds {text:?}, not a count")))
        }
    }
}

fn increment(key: &str) -> Result<u64, Error> {
    loop {
        let current = read(key)?;
        let next = current.unwrap_or(0) + 1;
        let expected = current.map(|n| n.to_string());
        if gojinn::kv::cas(key, expected.as_deref().map(str::as_bytes), next.to_string().as_bytes())? {
            return Ok(next);
        }
    }
}
