//! `host_db_*` through a real guest: parameters, SQL injection attempts, errors, caps, retries,
//! and one database per tenant.

use crate::support::host::{error, node, ok, run, run_one};
use serde_json::{Value, json};

const DB: &str = "grants: { db: true }";

fn exec(sql: &str, params: Value) -> Value {
    json!({"op": "db_exec", "sql": sql, "params": params})
}

fn query(sql: &str, params: Value) -> Value {
    json!({"op": "db_query", "sql": sql, "params": params})
}

#[tokio::test]
async fn host_db_query_and_exec_bind_every_kind_of_parameter() {
    let (_dir, node) = node(&[("acme", &[("state", DB)])]).await;
    let results = run(
        &node,
        "/acme/state",
        json!([
            exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, on_sale, note, data BLOB)", json!([])),
            exec(
                "INSERT INTO items (name, price, on_sale, note, data) VALUES (?, ?, ?, ?, ?), (?, ?, ?, ?, ?)",
                json!(["lamp", 25.5, true, null, {"base64": "AP8="}, "rug", 120, false, "big", null])
            ),
            // `price` has REAL affinity: the integer 120 is stored as 120.0.
            query("SELECT id, name, price, on_sale, note, data FROM items WHERE price > ? ORDER BY id", json!([10])),
            exec("UPDATE items SET price = price * ?", json!([2])),
            query("SELECT count(*) AS n FROM items WHERE name = ?", json!(["lamp"])),
        ]),
    )
    .await;
    assert_eq!(ok(&results[0]), 0);
    assert_eq!(ok(&results[1]), 2, "rows affected");
    assert_eq!(
        ok(&results[2]),
        &json!({
            "columns": ["id", "name", "price", "on_sale", "note", "data"],
            "rows": [[1, "lamp", 25.5, 1, null, {"base64": "AP8="}], [2, "rug", 120.0, 0, "big", null]]
        })
    );
    assert_eq!(ok(&results[3]), 2);
    assert_eq!(ok(&results[4])["rows"], json!([[1]]));
}

#[tokio::test]
async fn host_db_sql_injection_attempts_stay_parameters() {
    let (_dir, node) = node(&[("acme", &[("state", DB)])]).await;
    let evil = "x'); DROP TABLE users; --";
    let results = run(
        &node,
        "/acme/state",
        json!([
            exec("CREATE TABLE users (name TEXT)", json!([])),
            exec("INSERT INTO users (name) VALUES (?)", json!([evil])),
            query("SELECT name FROM users WHERE name = ?", json!(["' OR '1'='1"])),
            query("SELECT name FROM users WHERE name = ?", json!([evil])),
            // Only the first statement of a text is ever compiled: the stacked DROP never runs.
            query("SELECT count(*) FROM users; DROP TABLE users", json!([])),
            query("SELECT count(*) FROM users", json!([])),
        ]),
    )
    .await;
    assert_eq!(ok(&results[2])["rows"], json!([]), "the quote trick matches nothing");
    assert_eq!(ok(&results[3])["rows"], json!([[evil]]), "stored verbatim");
    assert_eq!(ok(&results[5])["rows"], json!([[1]]), "the table is still there");
}

#[tokio::test]
async fn host_db_errors_are_typed() {
    let (_dir, node) = node(&[("acme", &[("state", DB), ("nodb", "")])]).await;
    let results = run(
        &node,
        "/acme/state",
        json!([
            query("SELEC 1", json!([])),
            query("SELECT * FROM missing", json!([])),
            query("SELECT ?", json!([])),
            exec("SELECT 1", json!([])),
            exec("CREATE TABLE t (x UNIQUE)", json!([])),
            exec("INSERT INTO t VALUES (1)", json!([])),
            exec("INSERT INTO t VALUES (1)", json!([])),
            exec("BEGIN", json!([])),
            query("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 20000) SELECT zeroblob(1000) FROM n", json!([])),
        ]),
    )
    .await;
    let codes: Vec<&str> =
        results.iter().map(|r| r.get("error").and_then(Value::as_str).unwrap_or("ok")).collect();
    assert_eq!(
        codes,
        [
            "invalid_argument",
            "invalid_argument",
            "invalid_argument",
            "invalid_argument",
            "ok",
            "ok",
            "invalid_argument",
            "denied",
            "quota"
        ]
    );
    assert!(error(&results[0]).1.contains("syntax error"), "SQLite's own message: {}", results[0]);
    assert!(error(&results[1]).1.contains("no such table: missing"), "{}", results[1]);
    assert!(error(&results[6]).1.contains("UNIQUE constraint failed"), "{}", results[6]);

    let denied = run_one(&node, "/acme/nodb", query("SELECT 1", json!([]))).await;
    let (code, message) = error(&denied);
    assert_eq!(code, "denied");
    assert!(message.contains("grants.db"), "{message}");
}

#[tokio::test]
async fn host_db_an_answer_retried_with_a_bigger_buffer_runs_once() {
    let (_dir, node) = node(&[("acme", &[("state", DB)])]).await;
    let long = "x".repeat(10_000); // the answer outgrows the SDK's first 4 KiB buffer
    let results = run(
        &node,
        "/acme/state",
        json!([
            exec("CREATE TABLE log (line TEXT)", json!([])),
            query("INSERT INTO log (line) VALUES (?) RETURNING line", json!([long])),
            query("SELECT count(*) FROM log", json!([])),
        ]),
    )
    .await;
    assert_eq!(ok(&results[1])["rows"][0][0].as_str().map(str::len), Some(10_000));
    assert_eq!(ok(&results[2])["rows"], json!([[1]]), "one row inserted, not one per buffer size");
}

#[tokio::test]
async fn host_db_each_tenant_has_its_own_database() {
    let (_dir, node) = node(&[("a", &[("state", DB)]), ("b", &[("state", DB)])]).await;
    let setup = |owner: &str| {
        json!([
            exec("CREATE TABLE notes (text TEXT)", json!([])),
            exec("INSERT INTO notes VALUES (?)", json!([owner])),
        ])
    };
    for result in run(&node, "/a/state", setup("a's note")).await {
        ok(&result);
    }
    let missing = run_one(&node, "/b/state", query("SELECT * FROM notes", json!([]))).await;
    assert!(error(&missing).1.contains("no such table"), "b does not see a's table: {missing}");
    for result in run(&node, "/b/state", setup("b's note")).await {
        ok(&result);
    }
    for (tenant, note) in [("a", "a's note"), ("b", "b's note")] {
        let rows =
            run_one(&node, &format!("/{tenant}/state"), query("SELECT text FROM notes", json!([]))).await;
        assert_eq!(ok(&rows)["rows"], json!([[note]]), "{tenant}");
    }

    let a_file = node.data.path().join("sql/a.db");
    assert!(a_file.is_file(), "a's database lives at {}", a_file.display());
    let attach = format!("ATTACH DATABASE '{}' AS a", a_file.display());
    let attached = run_one(&node, "/b/state", exec(&attach, json!([]))).await;
    assert_eq!(error(&attached).0, "denied", "b cannot attach a's file: {attached}");
}

/// Issue 17: through bound parameters, `fts3_tokenizer` read a host address and then registered
/// the guest's bytes as a tokenizer that `CREATE VIRTUAL TABLE` called: the node died.
#[tokio::test]
async fn host_db_fts3_tokenizer_is_refused_through_parameters_and_the_node_keeps_serving() {
    let (_dir, node) = node(&[("acme", &[("state", DB)]), ("other", &[("state", DB)])]).await;
    let results = run(
        &node,
        "/acme/state",
        json!([
            query("SELECT hex(fts3_tokenizer(?1))", json!(["simple"])),
            query("SELECT fts3_tokenizer(?1, ?2)", json!(["evil", {"base64": "QUFBQUFBAAA="}])),
            exec("CREATE VIRTUAL TABLE t USING fts3(body, tokenize=evil)", json!([])),
            query("SELECT fts3_tokenizer('evil', x'4141414141410000')", json!([])),
            query("SELECT load_extension(?1)", json!(["/tmp/evil.so"])),
        ]),
    )
    .await;
    for result in &results {
        assert_eq!(error(result).0, "denied", "-2 for every call: {result}");
    }
    assert!(error(&results[1]).1.contains("fts3_tokenizer"), "{}", results[1]);
    for path in ["/acme/state", "/other/state"] {
        let answer = run_one(&node, path, query("SELECT 1 + 1", json!([]))).await;
        assert_eq!(ok(&answer)["rows"], json!([[2]]), "{path} still answers");
    }
}

/// A value is refused before it is built when it would pass SQLite's length limit (1 MiB):
/// `-3`, the quota code, as for an answer or a database past its cap.
#[tokio::test]
async fn host_db_values_past_the_length_limit_are_quota_errors() {
    let (_dir, node) = node(&[("acme", &[("state", DB)])]).await;
    let max = gojinn::state::sql::MAX_VALUE_BYTES;
    let results = run(
        &node,
        "/acme/state",
        json!([
            query("SELECT length(randomblob(999999999))", json!([])),
            query("SELECT length(randomblob(?1))", json!([999_999_999])),
            query("SELECT length(zeroblob(?1))", json!([999_999_999])),
            // Two hex strings of half the limit each, concatenated.
            query("SELECT length(hex(zeroblob(?1)) || hex(zeroblob(?1)))", json!([max / 4 + 1])),
            query("SELECT length(randomblob(?1))", json!([max])),
            // printf stops at the limit and answers NULL.
            query("SELECT length(printf('%.*c', ?1, 'x'))", json!([999_999_999])),
        ]),
    )
    .await;
    for result in &results[..4] {
        let (code, message) = error(result);
        assert_eq!(code, "quota", "{result}");
        assert!(message.contains("too big") && message.contains(&max.to_string()), "{message}");
    }
    assert_eq!(ok(&results[4])["rows"], json!([[max]]), "a value at the limit is fine");
    assert_eq!(ok(&results[5])["rows"], json!([[null]]));
}
