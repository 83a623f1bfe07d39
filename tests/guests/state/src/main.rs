//! Test guest: performs the host calls its request body names, in order, and answers a JSON
//! array with one result per call: `{"ok": value}`, or `{"error": code, "message": text}` with
//! the SDK's error code (`denied`, `not_found`, ...). The body is one operation or an array:
//!
//! - `{"op":"kv_get","key":k}` → the value as text, or null; `kv_set` (`key`, `value`, and
//!   `repeat`: store the value that many times over, default 1),
//!   `kv_delete` (`key`), `kv_list` (`prefix`) → keys, `kv_cas` (`key`, `expected` text or
//!   null, `new`) → swapped;
//! - `{"op":"lock","key":k,"ttl_ms":n}` → acquired; `unlock` (`key`) → released;
//! - `{"op":"db_query","sql":s,"params":[..]}` → `{columns, rows}`; `db_exec` → rows changed;
//! - `{"op":"enqueue","function":f,"payload":text}` → the job id;
//! - `{"op":"fetch","method":m,"url":u,"headers":{..},"body":text}` → `{status, headers, body}`;
//! - `{"op":"log","message":text}` → null, the text logged at info level through `host_log`.
//!
//! Host calls made by one request share one call, so a lock taken by an earlier operation is
//! this call's lock.

use gojinn::db::{Value, json};
use gojinn::{Error, Request, Response};
use std::time::Duration;

#[gojinn::handler]
fn handle(req: Request) -> Result<Response, Error> {
    let ops = match req.json::<Value>()? {
        Value::Array(ops) => ops,
        op => vec![op],
    };
    let results: Vec<Value> = ops
        .iter()
        .map(|op| match perform(op) {
            Ok(value) => json!({ "ok": value }),
            Err(error) => json!({ "error": error.code(), "message": error.to_string() }),
        })
        .collect();
    Ok(Response::json(200, &results))
}

fn text(op: &Value, field: &str) -> Result<String, Error> {
    op[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::BadRequest(format!("{field} must be a string")))
}

fn perform(op: &Value) -> Result<Value, Error> {
    let key = || text(op, "key");
    let params = || op["params"].as_array().cloned().unwrap_or_default();
    Ok(match op["op"].as_str().unwrap_or_default() {
        "kv_get" => json!(gojinn::kv::get(&key()?)?.map(|v| String::from_utf8_lossy(&v).into_owned())),
        "kv_set" => {
            let repeat = op["repeat"].as_u64().unwrap_or(1) as usize;
            json!(gojinn::kv::set(&key()?, text(op, "value")?.repeat(repeat).as_bytes())?)
        }
        "kv_delete" => json!(gojinn::kv::delete(&key()?)?),
        "kv_list" => json!(gojinn::kv::list(&text(op, "prefix")?)?),
        "kv_cas" => {
            let expected = op["expected"].as_str().map(str::as_bytes);
            json!(gojinn::kv::cas(&key()?, expected, text(op, "new")?.as_bytes())?)
        }
        "lock" => {
            let ttl = Duration::from_millis(op["ttl_ms"].as_u64().unwrap_or(60_000));
            json!(gojinn::mutex::lock(&key()?, ttl)?)
        }
        "unlock" => json!(gojinn::mutex::unlock(&key()?)?),
        "db_query" => {
            let rows = gojinn::db::query(&text(op, "sql")?, &params())?;
            json!({ "columns": rows.columns(), "rows": rows.rows() })
        }
        "db_exec" => json!(gojinn::db::exec(&text(op, "sql")?, &params())?),
        "enqueue" => json!(gojinn::jobs::enqueue(&text(op, "function")?, text(op, "payload")?.as_bytes())?),
        "fetch" => fetch(op)?,
        "log" => {
            gojinn::log::info(&text(op, "message")?);
            Value::Null
        }
        other => return Err(Error::BadRequest(format!("unknown op {other:?}"))),
    })
}

fn fetch(op: &Value) -> Result<Value, Error> {
    let method = op["method"].as_str().unwrap_or("GET");
    let mut request = gojinn::http::Request::new(method, &text(op, "url")?);
    for (name, value) in op["headers"].as_object().into_iter().flatten() {
        request = request.with_header(name, value.as_str().unwrap_or_default());
    }
    if let Some(body) = op["body"].as_str() {
        request = request.with_body(body);
    }
    let response = request.send()?;
    Ok(json!({
        "status": response.status(),
        "headers": response.headers(),
        "body": String::from_utf8_lossy(response.body()),
    }))
}
