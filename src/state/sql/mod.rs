//! SQL for guests (`host_db_query`, `host_db_exec`): one libSQL database file per tenant,
//! `dataDir/sql/<tenant>.db`, opened once and shared by that tenant's functions, never by two
//! tenants. Parameters and results travel as JSON (see [`params_from_json`] and
//! [`TenantDb::query`]).
//!
//! What a guest may do is narrowed on every connection by [`sandbox`]: SQLite's defensive flags,
//! low limits (a value or row of at most [`MAX_VALUE_BYTES`]), and an authorizer that allows
//! listed functions, virtual-table modules and PRAGMAs only, and refuses `ATTACH`, transactions
//! and temporary objects; `max_page_count` caps a database at [`MAX_DB_BYTES`]. Only the first
//! statement of the SQL text is compiled and run; SQLite ignores anything after it.
//!
//! libSQL's local API is synchronous behind async signatures, so all of it runs on tokio's
//! blocking pool; a call whose guest goes away (timeout, disconnect) interrupts its statement.
//!
//! Not here yet: an embedded replica of a remote libSQL primary (DESIGN section 5). It needs the
//! `replication` feature and per-tenant primary URLs and tokens in the node config.

mod sandbox;

pub use sandbox::{MAX_SQL_BYTES, MAX_VALUE_BYTES};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use libsql::{Connection, Database, Value};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Largest query answer (the JSON document), in bytes.
pub const MAX_RESULT_BYTES: usize = 10 << 20;
/// Largest database of one tenant; a write past it fails with a quota error.
pub const MAX_DB_BYTES: u64 = 1 << 30;
/// Page size of new databases (SQLite's default), for the page cap.
const PAGE_BYTES: u64 = 4096;
/// Statements of one tenant running at once, hence its connections. Others wait their turn
/// (within their call's timeout). A statement whose call ended keeps its place until it stops:
/// SQLite interrupts between steps, and a single step of a few functions (`instr`, `replace`,
/// `trim` with a character set) can take long on values near [`MAX_VALUE_BYTES`]. So one tenant
/// holds at most this many blocking threads and this many result rows in memory.
const MAX_STATEMENTS: usize = 4;
/// How long a statement waits for another connection's write lock before failing as busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page cache of one connection, in KiB (SQLite's default, made explicit): it also bounds the
/// memory a sort or a materialized subquery takes before it spills to a temporary file.
const CACHE_KIB: u32 = 2048;

/// Why a SQL call failed. The host maps each variant to a guest error code.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// Bad SQL, bad parameters, a constraint violation: SQLite's message.
    #[error("{0}")]
    Invalid(String),
    /// The authorizer refused the statement.
    #[error("{0}")]
    Denied(String),
    /// The answer or the database grew past its cap.
    #[error("{0}")]
    TooLarge(String),
    /// The database is locked by other writers, or was interrupted.
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Internal(String),
}

impl From<libsql::Error> for SqlError {
    fn from(error: libsql::Error) -> Self {
        match error {
            libsql::Error::SqliteFailure(code, message) => match code & 0xff {
                // A function the authorizer refuses fails as a plain error with this message.
                _ if message.starts_with("not authorized to use function") => Self::Denied(format!(
                    "{message}: guests may call SQLite's core, aggregate, window, date, JSON and FTS5 \
                     functions only"
                )),
                libsql::ffi::SQLITE_AUTH => Self::Denied(format!(
                    "{message}: guests may not ATTACH, DETACH, VACUUM, open transactions, create \
                     temporary objects or virtual tables other than {}, or change PRAGMAs",
                    sandbox::MODULES.join(" and ")
                )),
                libsql::ffi::SQLITE_FULL => {
                    Self::TooLarge(format!("{message}: a tenant database holds at most {MAX_DB_BYTES} bytes"))
                }
                libsql::ffi::SQLITE_TOOBIG => Self::TooLarge(format!(
                    "{message}: values and rows are limited to {MAX_VALUE_BYTES} bytes, SQL text to \
                     {MAX_SQL_BYTES}"
                )),
                // Also how SQLite refuses a statement that compiles past its instruction limit.
                libsql::ffi::SQLITE_NOMEM => {
                    Self::TooLarge(format!("{message}: the statement needs more than SQLite's limits allow"))
                }
                libsql::ffi::SQLITE_BUSY | libsql::ffi::SQLITE_LOCKED | libsql::ffi::SQLITE_INTERRUPT => {
                    Self::Busy(message)
                }
                libsql::ffi::SQLITE_IOERR | libsql::ffi::SQLITE_CANTOPEN => Self::Internal(message),
                _ => Self::Invalid(message),
            },
            libsql::Error::ExecuteReturnedRows => {
                Self::Invalid("the statement returns rows: run it with host_db_query".into())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Opens tenants' databases under one directory and hands out the open one while any function
/// of the tenant holds it.
pub struct SqlManager {
    dir: PathBuf,
    open: Mutex<HashMap<String, Weak<TenantDb>>>,
}

impl SqlManager {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir, open: Mutex::default() }
    }

    /// The database of `tenant`, created on first use. Blocking (file I/O): call it while
    /// deploying, never on the async executor.
    pub fn open(&self, tenant: &crate::spec::Name) -> Result<Arc<TenantDb>, SqlError> {
        let mut open = self.open.lock().expect("sql manager lock");
        if let Some(db) = open.get(tenant.as_str()).and_then(Weak::upgrade) {
            return Ok(db);
        }
        create_private_dir(&self.dir)?;
        // Tenant names are DNS labels, so the file name cannot leave the directory.
        let path = self.dir.join(format!("{tenant}.db"));
        sandbox::install()?;
        let db = ready(libsql::Builder::new_local(&path).build())??;
        let db = Arc::new(TenantDb {
            db,
            idle: Mutex::default(),
            statements: Arc::new(Semaphore::new(MAX_STATEMENTS)),
        });
        let first = db.connect()?;
        db.idle.lock().expect("idle connections lock").push(first);
        open.retain(|_, db| db.strong_count() > 0);
        open.insert(tenant.as_str().to_owned(), Arc::downgrade(&db));
        Ok(db)
    }
}

fn create_private_dir(dir: &std::path::Path) -> Result<(), SqlError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| SqlError::Internal(format!("cannot create {}: {e}", dir.display())))
}

/// One tenant's database: the file and a few idle connections to it.
pub struct TenantDb {
    db: Database,
    idle: Mutex<Vec<Connection>>,
    /// One permit per statement running, see [`MAX_STATEMENTS`].
    statements: Arc<Semaphore>,
}

impl TenantDb {
    /// Runs one statement that returns rows and answers
    /// `{"columns":[names],"rows":[[values],..]}`, at most [`MAX_RESULT_BYTES`] long. Values are
    /// JSON null, integers, floats, strings, and `{"base64": "..."}` for blobs.
    pub async fn query(self: &Arc<Self>, sql: String, params: Vec<Value>) -> Result<Vec<u8>, SqlError> {
        self.with_connection(move |conn| {
            let statement = prepare(conn, &sql, params.len())?;
            let mut rows = ready(statement.query(params))??;
            let columns: Vec<&str> =
                (0..rows.column_count()).map(|i| rows.column_name(i).unwrap_or_default()).collect();
            let mut out = br#"{"columns":"#.to_vec();
            serde_json::to_writer(&mut out, &columns).map_err(|e| SqlError::Internal(e.to_string()))?;
            out.extend_from_slice(br#","rows":["#);
            let width = rows.column_count();
            let mut count = 0usize;
            while let Some(row) = ready(rows.next())?? {
                count += 1;
                out.extend_from_slice(if count == 1 { b"[" } else { b",[" });
                for i in 0..width {
                    if i > 0 {
                        out.push(b',');
                    }
                    let value = to_json(row.get_value(i)?)?;
                    serde_json::to_writer(&mut out, &value).map_err(|e| SqlError::Internal(e.to_string()))?;
                    // Checked value by value, so a wide row never builds a huge answer first.
                    if out.len() + 3 > MAX_RESULT_BYTES {
                        return Err(SqlError::TooLarge(format!(
                            "the answer passed {MAX_RESULT_BYTES} bytes at row {count}; select fewer rows or \
                             columns"
                        )));
                    }
                }
                out.push(b']');
            }
            out.extend_from_slice(b"]}");
            Ok(out)
        })
        .await
    }

    /// Runs one statement that returns no rows; answers the number of rows it changed.
    pub async fn exec(self: &Arc<Self>, sql: String, params: Vec<Value>) -> Result<u64, SqlError> {
        self.with_connection(move |conn| {
            let statement = prepare(conn, &sql, params.len())?;
            let changed = ready(statement.execute(params))??;
            Ok(changed as u64)
        })
        .await
    }

    /// Runs `work` on a connection of its own on the blocking pool, once fewer than
    /// [`MAX_STATEMENTS`] of the tenant's run. If the caller stops waiting, the statement is
    /// interrupted and the connection is not reused.
    async fn with_connection<T, F>(self: &Arc<Self>, work: F) -> Result<T, SqlError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, SqlError> + Send + 'static,
    {
        let running = Arc::new(Running(Mutex::new(Slot::Waiting)));
        let _interrupt = InterruptOnDrop(running.clone());
        let permit = self.statements.clone().acquire_owned().await;
        let permit = permit.map_err(|e| SqlError::Internal(format!("statement permits: {e}")))?;
        let this = self.clone();
        let task = tokio::task::spawn_blocking(move || {
            // Released when the statement stops, even if its call ended long before.
            let _permit = permit;
            let conn = this.checkout()?;
            if !running.start(&conn) {
                this.checkin(conn);
                return Err(SqlError::Busy("the call ended before its statement started".into()));
            }
            let result = work(&conn);
            // A connection left inside a transaction would leak it into the next call.
            if running.finish() && conn.is_autocommit() {
                this.checkin(conn);
            }
            result
        });
        task.await.map_err(|e| SqlError::Internal(format!("SQL task failed: {e}")))?
    }

    fn checkout(&self) -> Result<Connection, SqlError> {
        let idle = self.idle.lock().expect("idle connections lock").pop();
        match idle {
            Some(conn) => Ok(conn),
            None => self.connect(),
        }
    }

    fn checkin(&self, conn: Connection) {
        let mut idle = self.idle.lock().expect("idle connections lock");
        if idle.len() < MAX_STATEMENTS {
            idle.push(conn);
        }
    }

    /// A new connection (hardened as SQLite opens it, see [`sandbox::install`]) with the page
    /// cap, the cache size and the authorizer in place. Blocking.
    fn connect(&self) -> Result<Connection, SqlError> {
        let conn = self.db.connect()?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL lets readers run while one connection writes (a no-op once the file is in WAL mode).
        ready(conn.query("PRAGMA journal_mode = WAL", ()))??;
        ready(conn.query(&format!("PRAGMA max_page_count = {}", MAX_DB_BYTES / PAGE_BYTES), ()))??;
        ready(conn.query(&format!("PRAGMA cache_size = -{CACHE_KIB}"), ()))??;
        // Sorts and subqueries past the cache spill to a file, never to more memory.
        ready(conn.query("PRAGMA temp_store = FILE", ()))??;
        conn.authorizer(Some(Arc::new(sandbox::authorize)))?;
        Ok(conn)
    }
}

/// Compiles `sql` and checks that it takes exactly `given` parameters.
fn prepare(conn: &Connection, sql: &str, given: usize) -> Result<libsql::Statement, SqlError> {
    if sql.trim().is_empty() {
        return Err(SqlError::Invalid("the SQL text is empty".into()));
    }
    let statement = ready(conn.prepare(sql))??;
    let wanted = statement.parameter_count();
    if wanted != given {
        return Err(SqlError::Invalid(format!("the statement takes {wanted} parameter(s); {given} given")));
    }
    Ok(statement)
}

/// Where a statement is: the connection to interrupt while it runs, and whether the caller left.
enum Slot {
    Waiting,
    Running(Connection),
    Done,
    Abandoned,
}

struct Running(Mutex<Slot>);

impl Running {
    /// Marks the statement as running on `conn`; false if the caller already left.
    fn start(&self, conn: &Connection) -> bool {
        let mut slot = self.0.lock().expect("slot lock");
        let waiting = matches!(*slot, Slot::Waiting);
        if waiting {
            *slot = Slot::Running(conn.clone());
        }
        waiting
    }

    /// Marks the statement as done; false if it was interrupted.
    fn finish(&self) -> bool {
        let mut slot = self.0.lock().expect("slot lock");
        let ran = matches!(*slot, Slot::Running(_));
        *slot = Slot::Done;
        ran
    }

    fn abandon(&self) {
        let mut slot = self.0.lock().expect("slot lock");
        if let Slot::Running(conn) = &*slot {
            let _ = conn.interrupt();
        }
        if !matches!(*slot, Slot::Done) {
            *slot = Slot::Abandoned;
        }
    }
}

/// Interrupts the statement when the call waiting for it goes away (the guest's timeout).
struct InterruptOnDrop(Arc<Running>);

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        self.0.abandon();
    }
}

/// Parses the parameters of a call: a JSON array of null, booleans (bound as 0 or 1), integers,
/// floats, strings, and `{"base64": "..."}` for blobs. Empty input means no parameters.
pub fn params_from_json(bytes: &[u8]) -> Result<Vec<Value>, SqlError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let values: Vec<serde_json::Value> = serde_json::from_slice(bytes)
        .map_err(|e| SqlError::Invalid(format!("parameters must be a JSON array: {e}")))?;
    values.into_iter().enumerate().map(|(i, value)| from_json(value).map_err(|e| at_param(i, e))).collect()
}

fn at_param(index: usize, message: String) -> SqlError {
    SqlError::Invalid(format!("parameter {}: {message}", index + 1))
}

fn from_json(value: serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as Json;
    Ok(match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Integer(i64::from(b)),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::Integer(i),
            (None, Some(f)) if n.is_f64() => Value::Real(f),
            _ => return Err(format!("{n} does not fit a 64-bit integer")),
        },
        Json::String(s) => Value::Text(s),
        Json::Object(map) => match map.get("base64") {
            Some(Json::String(b64)) if map.len() == 1 => {
                Value::Blob(BASE64.decode(b64).map_err(|e| format!("invalid base64: {e}"))?)
            }
            _ => return Err(r#"an object must be {"base64": "..."} (a blob)"#.into()),
        },
        Json::Array(_) => return Err("arrays cannot be bound; pass a JSON string instead".into()),
    })
}

fn to_json(value: Value) -> Result<serde_json::Value, SqlError> {
    use serde_json::Value as Json;
    Ok(match value {
        Value::Null => Json::Null,
        Value::Integer(i) => Json::from(i),
        Value::Real(f) => serde_json::Number::from_f64(f)
            .map(Json::Number)
            .ok_or_else(|| SqlError::Invalid(format!("the result holds {f}, which JSON cannot carry")))?,
        Value::Text(s) => Json::String(s),
        Value::Blob(bytes) => serde_json::json!({ "base64": BASE64.encode(bytes) }),
    })
}

/// Takes the output of a libSQL future that completes on its first poll, as every call of the
/// local (file) database does: it does its work synchronously. Runs on blocking threads only.
fn ready<F: Future>(future: F) -> Result<F::Output, SqlError> {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => Err(SqlError::Internal("a libSQL call did not complete synchronously".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Name;

    /// A statement that runs until it is interrupted.
    const ENDLESS: &str =
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";

    pub(super) fn manager() -> (tempfile::TempDir, SqlManager) {
        let dir = tempfile::tempdir().unwrap();
        let manager = SqlManager::new(dir.path().join("sql"));
        (dir, manager)
    }

    pub(super) fn name(raw: &str) -> Name {
        Name::new(raw).unwrap()
    }

    pub(super) async fn rows(
        db: &Arc<TenantDb>,
        sql: &str,
        params: &str,
    ) -> Result<serde_json::Value, SqlError> {
        let answer = db.query(sql.into(), params_from_json(params.as_bytes())?).await?;
        Ok(serde_json::from_slice(&answer).unwrap())
    }

    #[tokio::test]
    async fn values_round_trip_through_json() {
        let (_dir, manager) = manager();
        let db = manager.open(&name("acme")).unwrap();
        let created = db.exec("CREATE TABLE t (a, b, c, d, e)".into(), Vec::new()).await.unwrap();
        assert_eq!(created, 0);
        let params = params_from_json(br#"[null, true, 42, 1.5, {"base64": "AP8="}]"#).unwrap();
        assert_eq!(db.exec("INSERT INTO t VALUES (?, ?, ?, ?, ?)".into(), params).await.unwrap(), 1);
        let answer = rows(&db, "SELECT a, b, c, d, e, 'x' AS f FROM t", "").await.unwrap();
        assert_eq!(
            answer,
            serde_json::json!({"columns": ["a", "b", "c", "d", "e", "f"],
                               "rows": [[null, 1, 42, 1.5, {"base64": "AP8="}, "x"]]})
        );
    }

    #[tokio::test]
    async fn one_database_per_tenant_shared_while_held() {
        let (dir, manager) = manager();
        let a = manager.open(&name("a")).unwrap();
        assert!(Arc::ptr_eq(&a, &manager.open(&name("a")).unwrap()));
        a.exec("CREATE TABLE only_a (x)".into(), Vec::new()).await.unwrap();
        let b = manager.open(&name("b")).unwrap();
        let error = rows(&b, "SELECT * FROM only_a", "").await.unwrap_err();
        assert!(matches!(&error, SqlError::Invalid(m) if m.contains("no such table")), "{error:?}");
        assert!(dir.path().join("sql/a.db").is_file() && dir.path().join("sql/b.db").is_file());
    }

    #[tokio::test]
    async fn parameters_are_counted_and_checked() {
        let (_dir, manager) = manager();
        let db = manager.open(&name("acme")).unwrap();
        let error = rows(&db, "SELECT ?", "[]").await.unwrap_err();
        assert!(matches!(&error, SqlError::Invalid(m) if m.contains("1 parameter")), "{error:?}");
        for (params, expected) in [
            ("{}", "JSON array"),
            ("[[1]]", "arrays cannot be bound"),
            (r#"[{"x": 1}]"#, "base64"),
            (r#"[{"base64": "***"}]"#, "invalid base64"),
            ("[18446744073709551615]", "64-bit integer"),
        ] {
            let error = params_from_json(params.as_bytes()).unwrap_err().to_string();
            assert!(error.contains(expected), "{params}: {error}");
        }
    }

    #[tokio::test]
    async fn an_answer_past_the_cap_is_too_large() {
        let (_dir, manager) = manager();
        let db = manager.open(&name("acme")).unwrap();
        let sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 20000) \
                   SELECT i, zeroblob(1000) FROM n";
        let error = rows(&db, sql, "").await.unwrap_err();
        assert!(matches!(error, SqlError::TooLarge(_)), "{error:?}");
    }

    #[tokio::test]
    async fn an_abandoned_statement_is_interrupted() {
        let (_dir, manager) = manager();
        let db = manager.open(&name("acme")).unwrap();
        let call = db.query(ENDLESS.into(), Vec::new());
        assert!(tokio::time::timeout(Duration::from_millis(50), call).await.is_err());
        // The interrupted connection is not reused and the database keeps answering.
        assert_eq!(rows(&db, "SELECT 7", "").await.unwrap()["rows"][0][0], 7);
    }

    #[tokio::test]
    async fn a_tenant_runs_at_most_a_few_statements_at_once() {
        let (_dir, manager) = manager();
        let db = manager.open(&name("acme")).unwrap();
        let running: Vec<_> = (0..MAX_STATEMENTS)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move { db.query(ENDLESS.into(), Vec::new()).await })
            })
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while db.statements.available_permits() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "the statements never started");
            tokio::task::yield_now().await;
        }
        let next = tokio::spawn({
            let db = db.clone();
            async move { rows(&db, "SELECT 7", "").await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!next.is_finished(), "a fifth statement waits for a place");
        // Their calls end: the statements are interrupted and give their places up.
        running.iter().for_each(|task| task.abort());
        assert_eq!(next.await.unwrap().unwrap()["rows"][0][0], 7);
    }
}
