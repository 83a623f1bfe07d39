//! What guest SQL may do, narrowed on every connection: SQLite's defensive flags, run-time limits
//! set low ([`install`]), and an authorizer ([`authorize`]) that allows only listed functions,
//! virtual-table modules and PRAGMAs and refuses anything it does not know. SQLite's own advice
//! for untrusted SQL ("Defense Against the Dark Arts", sqlite.org/security.html) is the model.
//!
//! It must never widen what a guest reaches: every list here is an allow-list, and an action
//! libSQL cannot name is refused.

use super::{SqlError, ready};
use libsql::ffi;
use libsql::{AuthAction, AuthContext, Authorization};
use std::ffi::{c_char, c_int};
use std::sync::OnceLock;

/// Longest string, blob or table row (`SQLITE_LIMIT_LENGTH`; SQLite's default is 1e9, its advice
/// for untrusted SQL 1e6). Every value a statement builds (`randomblob`, `zeroblob`, `||`,
/// `replace`, `group_concat`, ...) is refused past it before it is allocated (`printf` stops and
/// answers NULL), so a result row holds at most [`MAX_COLUMNS`] times this (100 MiB). It also
/// bounds the functions whose cost grows with the square of their input: `instr` and `replace`
/// of a 1 MiB value take 23 s at worst (measured), in one step that cannot be interrupted.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Longest SQL text (`SQLITE_LIMIT_SQL_LENGTH`), the same cap the host applies when it reads the
/// text from the guest.
pub const MAX_SQL_BYTES: usize = 64 << 10;
/// Columns of a table, an index, a result row, a `GROUP BY` or `ORDER BY`
/// (`SQLITE_LIMIT_COLUMN`; default 2000). With [`MAX_VALUE_BYTES`] it bounds what one result row
/// can hold in memory.
const MAX_COLUMNS: c_int = 100;
/// Depth of an expression tree (default 1000): code generation recurses on the blocking
/// thread's stack. 100 leaves room for long `AND` chains.
const MAX_EXPR_DEPTH: c_int = 100;
/// Terms of a compound `SELECT` (default 500), compiled recursively as well.
const MAX_COMPOUND_SELECT: c_int = 50;
/// Instructions of one compiled statement (default 250,000,000). A statement of
/// [`MAX_SQL_BYTES`] compiles to far fewer; past it SQLite answers "out of memory".
const MAX_VDBE_OPS: c_int = 100_000;
/// Arguments of one function call (default 127): `json_object` with 32 pairs.
const MAX_FUNCTION_ARGS: c_int = 64;
/// Attached databases: none (the authorizer refuses `ATTACH` as well).
const MAX_ATTACHED: c_int = 0;
/// Length of a `LIKE` or `GLOB` pattern (default 50,000): matching costs up to the pattern's
/// length times the subject's, in one step that cannot be interrupted.
const MAX_LIKE_PATTERN_BYTES: c_int = 100;
/// Parameters of one statement (default 32,766): a multi-row `INSERT` of 1000 values.
const MAX_VARIABLES: c_int = 1000;
/// Triggers firing triggers (default 1000).
const MAX_TRIGGER_DEPTH: c_int = 10;
/// Helper threads a statement may start for sorting: none, so SQL runs only on the node's own
/// blocking threads.
const MAX_WORKER_THREADS: c_int = 0;

const LIMITS: [(c_int, c_int); 12] = [
    (ffi::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES as c_int),
    (ffi::SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_BYTES as c_int),
    (ffi::SQLITE_LIMIT_COLUMN, MAX_COLUMNS),
    (ffi::SQLITE_LIMIT_EXPR_DEPTH, MAX_EXPR_DEPTH),
    (ffi::SQLITE_LIMIT_COMPOUND_SELECT, MAX_COMPOUND_SELECT),
    (ffi::SQLITE_LIMIT_VDBE_OP, MAX_VDBE_OPS),
    (ffi::SQLITE_LIMIT_FUNCTION_ARG, MAX_FUNCTION_ARGS),
    (ffi::SQLITE_LIMIT_ATTACHED, MAX_ATTACHED),
    (ffi::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, MAX_LIKE_PATTERN_BYTES),
    (ffi::SQLITE_LIMIT_VARIABLE_NUMBER, MAX_VARIABLES),
    (ffi::SQLITE_LIMIT_TRIGGER_DEPTH, MAX_TRIGGER_DEPTH),
    (ffi::SQLITE_LIMIT_WORKER_THREADS, MAX_WORKER_THREADS),
];

/// Connection flags (`sqlite3_db_config`) and the value each must have.
const FLAGS: [(c_int, bool); 5] = [
    // Ordinary SQL cannot corrupt the file: no writable_schema, no journal_mode=OFF, no direct
    // writes to the shadow tables of FTS5 and R-Tree.
    (ffi::SQLITE_DBCONFIG_DEFENSIVE, true),
    // `fts3_tokenizer(name, pointer)` would register a guest's bytes as a C pointer that SQLite
    // then calls (bound parameters bypass this flag: the authorizer refuses the function too).
    (ffi::SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, false),
    // No shared libraries, from SQL or from the C API.
    (ffi::SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, false),
    // Views, triggers, CHECK constraints, defaults and index expressions may use only
    // functions and virtual tables SQLite marks innocuous.
    (ffi::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false),
    (ffi::SQLITE_DBCONFIG_WRITABLE_SCHEMA, false),
];

/// Makes SQLite run [`harden`] on every connection this process opens from now on; call it
/// before opening any. libSQL 0.10 does not expose a connection's `sqlite3` handle, and SQLite's
/// automatic extensions are its hook for every new connection. It is process-wide, as it should
/// be: every SQLite connection of the node is a tenant's.
pub(super) fn install() -> Result<(), SqlError> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let installed = INSTALLED.get_or_init(|| {
        // libSQL sets SQLite's threading mode when it builds its first database, and that must
        // come before SQLite initializes, which registering the hook does. An in-memory
        // database opens no connection.
        ready(libsql::Builder::new_local(":memory:").build())
            .and_then(|built| built.map_err(SqlError::from))
            .map_err(|e| e.to_string())?;
        // SAFETY: `harden` has the signature SQLite calls automatic extensions with, and stays
        // valid for the life of the process.
        match unsafe { ffi::sqlite3_auto_extension(Some(harden)) } {
            ffi::SQLITE_OK => Ok(()),
            rc => Err(format!("cannot register SQLite's connection hook (error {rc})")),
        }
    });
    installed.clone().map_err(SqlError::Internal)
}

/// Sets [`FLAGS`] and [`LIMITS`] on a connection SQLite is opening, and reads each back. A
/// value that did not take fails the open, so no connection runs without them.
unsafe extern "C" fn harden(
    db: *mut ffi::sqlite3,
    error: *mut *const c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    for (flag, on) in FLAGS {
        let mut now: c_int = -1;
        // SAFETY: `db` is the connection being opened; these options take an int (the new
        // value) and an int pointer (where SQLite writes the value now in force).
        let rc = unsafe { ffi::sqlite3_db_config(db, flag, c_int::from(on), &mut now as *mut c_int) };
        if rc != ffi::SQLITE_OK || now != c_int::from(on) {
            // SAFETY: `error` is the message slot SQLite passed.
            return unsafe { refuse(error, c"gojinn: a SQLite connection flag could not be set") };
        }
    }
    for (limit, value) in LIMITS {
        // SAFETY: `db` is the connection being opened; a negative value only reads the limit.
        let now = unsafe {
            ffi::sqlite3_limit(db, limit, value);
            ffi::sqlite3_limit(db, limit, -1)
        };
        if now != value {
            // SAFETY: `error` is the message slot SQLite passed.
            return unsafe { refuse(error, c"gojinn: a SQLite limit could not be set") };
        }
    }
    ffi::SQLITE_OK
}

/// Fails a connection's open with `message`.
///
/// # Safety
/// `error` is null or the message slot SQLite passed to an automatic extension.
unsafe fn refuse(error: *mut *const c_char, message: &std::ffi::CStr) -> c_int {
    if !error.is_null() {
        // SAFETY: the slot is valid (see above); SQLite frees what it holds with `sqlite3_free`,
        // so it comes from SQLite's allocator; the text has no `%`.
        unsafe { *error = ffi::sqlite3_mprintf(message.as_ptr()) };
    }
    ffi::SQLITE_ERROR
}

/// SQL functions a guest may call: SQLite's core scalar, aggregate and window functions, date
/// and time, JSON, and the ranking and highlighting functions of FTS5. Each computes from
/// its arguments alone. Not listed, hence refused: `load_extension`, `fts3_tokenizer`, `fts5`
/// (both deal in C pointers), the `sqlite_*` build introspection, `changes`, `total_changes` and
/// `last_insert_rowid` (they read the state of a pooled connection; use `RETURNING`), the R-Tree
/// debugging functions, libSQL's vector functions, and anything unknown.
#[rustfmt::skip]
const FUNCTIONS: &[&str] = &[
    // operators SQLite implements as functions
    "->", "->>", "glob", "like", "match",
    // core scalar functions
    "abs", "char", "coalesce", "concat", "concat_ws", "format", "hex", "ifnull", "iif", "instr",
    "length", "likelihood", "likely", "lower", "ltrim", "max", "min", "nullif", "octet_length",
    "printf", "quote", "random", "randomblob", "replace", "round", "rtrim", "sign", "soundex",
    "sqlite_version", "substr", "substring", "trim", "typeof", "unhex", "unicode", "unlikely",
    "upper", "zeroblob",
    // aggregate functions
    "avg", "count", "group_concat", "string_agg", "sum", "total",
    // window functions
    "cume_dist", "dense_rank", "first_value", "lag", "last_value", "lead", "nth_value", "ntile",
    "percent_rank", "rank", "row_number",
    // date and time
    "current_date", "current_time", "current_timestamp", "date", "datetime", "julianday",
    "strftime", "time", "timediff", "unixepoch",
    // JSON
    "json", "json_array", "json_array_length", "json_error_position", "json_extract",
    "json_group_array", "json_group_object", "json_insert", "json_object", "json_patch",
    "json_pretty", "json_quote", "json_remove", "json_replace", "json_set", "json_type",
    "json_valid", "jsonb", "jsonb_array", "jsonb_extract", "jsonb_group_array",
    "jsonb_group_object", "jsonb_insert", "jsonb_object", "jsonb_patch", "jsonb_remove",
    "jsonb_replace", "jsonb_set",
    // FTS5 auxiliary functions
    "bm25", "highlight", "snippet",
];

/// The functions `ALTER TABLE` runs on the schema. SQLite resolves them only in the statements
/// it writes itself: a guest naming one gets "no such function".
const INTERNAL_FUNCTIONS: &[&str] = &[
    "sqlite_drop_column",
    "sqlite_rename_column",
    "sqlite_rename_quotefix",
    "sqlite_rename_table",
    "sqlite_rename_test",
];

/// Virtual-table modules a guest may create: full-text search (FTS5) and R-Tree indexes. Their
/// shadow tables are read-only to ordinary SQL under the defensive flag. FTS3 and FTS4 are not
/// here: their tokenizers are C pointers a statement can name.
pub(super) const MODULES: &[&str] = &["fts5", "rtree"];

/// Introspection PRAGMAs: no side effects, whatever their argument.
const PRAGMAS: &[&str] = &[
    "collation_list",
    "foreign_key_check",
    "foreign_key_list",
    "function_list",
    "index_info",
    "index_list",
    "index_xinfo",
    "integrity_check",
    "module_list",
    "pragma_list",
    "quick_check",
    "table_info",
    "table_list",
    "table_xinfo",
    "user_version",
];

/// PRAGMAs a guest may read but not set.
const READ_ONLY_PRAGMAS: &[&str] = &[
    "data_version",
    "foreign_keys",
    "freelist_count",
    "journal_mode",
    "page_count",
    "page_size",
    "schema_version",
];

/// The authorizer of every connection: called while a statement compiles, for each thing it
/// would do. Refused: `ATTACH` and `DETACH` (and so `VACUUM`, which attaches), transactions and
/// savepoints (a call is one statement in its own transaction), the `temp` schema (its objects
/// would outlive the call on a pooled connection, outside the database's size cap), and any
/// function, module or PRAGMA not listed above.
pub(super) fn authorize(context: &AuthContext<'_>) -> Authorization {
    // `CREATE TABLE temp.t` is reported as a plain CREATE TABLE in the `temp` schema.
    let in_temp = context.database_name.is_some_and(|name| name.eq_ignore_ascii_case("temp"));
    let allowed = match context.action {
        AuthAction::Select
        | AuthAction::Read { .. }
        | AuthAction::Insert { .. }
        | AuthAction::Update { .. }
        | AuthAction::Delete { .. }
        | AuthAction::Recursive
        | AuthAction::DropTable { .. }
        | AuthAction::DropIndex { .. }
        | AuthAction::DropView { .. }
        | AuthAction::DropTrigger { .. }
        | AuthAction::DropVtable { .. }
        | AuthAction::AlterTable { .. }
        | AuthAction::Reindex { .. }
        | AuthAction::Analyze { .. } => true,
        AuthAction::CreateTable { .. }
        | AuthAction::CreateIndex { .. }
        | AuthAction::CreateView { .. }
        | AuthAction::CreateTrigger { .. } => !in_temp,
        AuthAction::Function { function_name } => {
            listed(FUNCTIONS, function_name) || listed(INTERNAL_FUNCTIONS, function_name)
        }
        AuthAction::CreateVtable { module_name, .. } => !in_temp && listed(MODULES, module_name),
        AuthAction::Pragma { pragma_name, pragma_value } => {
            listed(PRAGMAS, pragma_name) || (pragma_value.is_none() && listed(READ_ONLY_PRAGMAS, pragma_name))
        }
        AuthAction::Attach { .. }
        | AuthAction::Detach { .. }
        | AuthAction::Transaction { .. }
        | AuthAction::Savepoint { .. }
        | AuthAction::CreateTempTable { .. }
        | AuthAction::CreateTempIndex { .. }
        | AuthAction::CreateTempView { .. }
        | AuthAction::CreateTempTrigger { .. }
        | AuthAction::DropTempTable { .. }
        | AuthAction::DropTempIndex { .. }
        | AuthAction::DropTempView { .. }
        | AuthAction::DropTempTrigger { .. }
        | AuthAction::Unknown { .. } => false,
    };
    if allowed { Authorization::Allow } else { Authorization::Deny }
}

fn listed(list: &[&str], name: &str) -> bool {
    list.iter().any(|entry| entry.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::sql::TenantDb;
    use crate::state::sql::tests::{manager, name, rows};
    use std::sync::Arc;

    /// A tenant database in a temporary directory.
    fn database() -> (tempfile::TempDir, Arc<TenantDb>) {
        let (dir, manager) = manager();
        let db = manager.open(&name("acme")).unwrap();
        (dir, db)
    }

    /// Runs each `(sql, params)` and checks that it fails as `expected` says.
    async fn assert_each_fails(
        db: &Arc<TenantDb>,
        cases: &[(&str, &str)],
        expected: impl Fn(&SqlError) -> bool,
    ) {
        for (sql, params) in cases {
            match rows(db, sql, params).await {
                Err(error) if expected(&error) => {}
                other => panic!("{sql} with {params}: {other:?}"),
            }
        }
    }

    fn denied(error: &SqlError) -> bool {
        matches!(error, SqlError::Denied(_))
    }

    fn too_large(error: &SqlError) -> bool {
        matches!(error, SqlError::TooLarge(_))
    }

    fn invalid(error: &SqlError) -> bool {
        matches!(error, SqlError::Invalid(_))
    }

    #[test]
    fn every_connection_opens_with_the_flags_and_limits_set() {
        install().unwrap();
        let mut db = std::ptr::null_mut();
        let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE;
        // SAFETY: opens a fresh in-memory database into `db`, a valid out-pointer; closed below.
        let rc = unsafe { ffi::sqlite3_open_v2(c":memory:".as_ptr(), &mut db, flags, std::ptr::null()) };
        assert_eq!(rc, ffi::SQLITE_OK);
        for (flag, on) in FLAGS {
            let mut now: c_int = -1;
            // SAFETY: `db` is open; a negative value only reads the flag into `now`.
            unsafe { ffi::sqlite3_db_config(db, flag, -1 as c_int, &mut now as *mut c_int) };
            assert_eq!(now, c_int::from(on), "connection flag {flag}");
        }
        for (limit, value) in LIMITS {
            // SAFETY: `db` is open; a negative value only reads the limit.
            assert_eq!(unsafe { ffi::sqlite3_limit(db, limit, -1) }, value, "limit {limit}");
        }
        // SAFETY: `db` was opened above and is not used after this.
        unsafe { ffi::sqlite3_close(db) };
    }

    /// Issue 17: a tokenizer's address read out, then a guest's bytes registered as a tokenizer
    /// that `CREATE VIRTUAL TABLE` would call, with literals and with bound parameters.
    #[tokio::test]
    async fn fts3_tokenizer_is_refused_with_literals_and_bound_parameters() {
        let (_dir, db) = database();
        let cases = [
            ("SELECT hex(fts3_tokenizer(?1))", r#"["simple"]"#),
            ("SELECT hex(fts3_tokenizer('simple'))", "[]"),
            ("SELECT fts3_tokenizer(?1, ?2)", r#"["evil", {"base64": "QUFBQUFBAAA="}]"#),
            ("SELECT fts3_tokenizer('evil', x'4141414141410000')", "[]"),
            ("SELECT fts3_tokenizer(?1, x'4141414141410000')", r#"["evil"]"#),
            ("CREATE VIRTUAL TABLE t USING fts3(body, tokenize=evil)", "[]"),
            ("CREATE VIRTUAL TABLE t USING fts4(body, tokenize=simple)", "[]"),
            ("CREATE VIRTUAL TABLE t USING fts3tokenize(simple)", "[]"),
        ];
        assert_each_fails(&db, &cases, denied).await;
        let error = rows(&db, "SELECT fts3_tokenizer(?1, ?2)", r#"["evil", {"base64": "QUFBQUFBAAA="}]"#)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("fts3_tokenizer"), "the message names the function: {error}");
    }

    #[tokio::test]
    async fn functions_outside_the_allow_list_are_refused_with_literals_and_bound_parameters() {
        let (_dir, db) = database();
        for setup in [
            "CREATE TABLE t (x)",
            // Created, but refused where they are used: the authorizer sees every call.
            "CREATE VIEW v AS SELECT sqlite_source_id()",
            "CREATE TRIGGER g AFTER INSERT ON t BEGIN SELECT load_extension('/tmp/evil.so'); END",
        ] {
            rows(&db, setup, "").await.unwrap();
        }
        let cases = [
            ("SELECT load_extension(?1)", r#"["/tmp/evil.so"]"#),
            ("SELECT load_extension('/tmp/evil.so', 'init')", "[]"),
            ("SELECT fts5(?1)", r#"[{"base64": "QUFBQUFBAAA="}]"#),
            ("SELECT sqlite_compileoption_get(?1)", "[0]"),
            ("SELECT sqlite_compileoption_used('ENABLE_FTS3')", "[]"),
            ("SELECT sqlite_source_id()", "[]"),
            ("SELECT last_insert_rowid()", "[]"),
            ("SELECT changes()", "[]"),
            ("SELECT total_changes()", "[]"),
            ("SELECT rtreenode(2, ?1)", r#"[{"base64": "AAAA"}]"#),
            ("SELECT rtreecheck('t')", "[]"),
            ("SELECT vector32(?1)", r#"["[1,2,3]"]"#),
            ("SELECT * FROM v", "[]"),
            ("INSERT INTO t VALUES (?1)", "[1]"),
        ];
        assert_each_fails(&db, &cases, denied).await;
    }

    #[tokio::test]
    async fn the_internal_functions_alter_table_needs_stay_out_of_reach() {
        let (_dir, db) = database();
        let cases = [
            ("SELECT sqlite_rename_test(?1, ?2, ?3, ?4, ?5, ?6, ?7)", r#"["main", "", "", "", 0, "", 0]"#),
            ("SELECT sqlite_drop_column(0, 'CREATE TABLE t (a, b)', 1)", "[]"),
        ];
        assert_each_fails(&db, &cases, |e| e.to_string().contains("no such function")).await;
    }

    #[tokio::test]
    async fn every_allowed_function_exists_in_this_build() {
        let (_dir, db) = database();
        let answer = rows(&db, "SELECT DISTINCT name FROM pragma_function_list", "").await.unwrap();
        let built: Vec<&str> =
            answer["rows"].as_array().unwrap().iter().filter_map(|r| r[0].as_str()).collect();
        let missing: Vec<&&str> = FUNCTIONS.iter().filter(|f| !built.contains(f)).collect();
        assert!(missing.is_empty(), "not in this SQLite build: {missing:?}");
    }

    #[tokio::test]
    async fn only_fts5_and_rtree_tables_can_be_created_and_they_work() {
        let (_dir, db) = database();
        let cases = [
            ("CREATE VIRTUAL TABLE s USING dbstat", "[]"),
            ("CREATE VIRTUAL TABLE a USING fts4aux(x)", "[]"),
            ("CREATE VIRTUAL TABLE v USING fts5vocab(x, row)", "[]"),
            ("CREATE VIRTUAL TABLE j USING json_each", "[]"),
        ];
        assert_each_fails(&db, &cases, denied).await;

        rows(&db, "CREATE VIRTUAL TABLE docs USING fts5(body)", "").await.unwrap();
        rows(&db, "INSERT INTO docs (body) VALUES (?1), (?2)", r#"["the quick fox", "lazy dogs"]"#)
            .await
            .unwrap();
        let found = rows(
            &db,
            "SELECT highlight(docs, 0, '[', ']'), bm25(docs) < 0 FROM docs WHERE docs MATCH ?1",
            r#"["fox"]"#,
        )
        .await
        .unwrap();
        assert_eq!(found["rows"], serde_json::json!([["the quick [fox]", 1]]));

        rows(&db, "CREATE VIRTUAL TABLE boxes USING rtree(id, x0, x1, y0, y1)", "").await.unwrap();
        rows(&db, "INSERT INTO boxes VALUES (1, 0, 10, 0, 10), (2, 20, 30, 20, 30)", "").await.unwrap();
        let hit =
            rows(&db, "SELECT id FROM boxes WHERE x0 <= ?1 AND x1 >= ?1 AND y0 <= ?1 AND y1 >= ?1", "[5]")
                .await
                .unwrap();
        assert_eq!(hit["rows"], serde_json::json!([[1]]));
    }

    #[tokio::test]
    async fn the_defensive_flag_keeps_shadow_tables_and_the_schema_read_only() {
        let (_dir, db) = database();
        rows(&db, "CREATE VIRTUAL TABLE docs USING fts5(body)", "").await.unwrap();
        let cases = [
            ("INSERT INTO docs_data VALUES (?1, ?2)", r#"[99, {"base64": "QUFBQQ=="}]"#),
            ("UPDATE docs_config SET v = ?1", "[1]"),
            ("UPDATE sqlite_schema SET sql = ?1", r#"["CREATE TABLE x (y)"]"#),
        ];
        assert_each_fails(&db, &cases, invalid).await;
        let found = rows(&db, "SELECT count(*) FROM docs WHERE docs MATCH 'anything'", "").await.unwrap();
        assert_eq!(found["rows"], serde_json::json!([[0]]));
    }

    #[tokio::test]
    async fn values_past_the_length_limit_are_too_large() {
        let (_dir, db) = database();
        let big = serde_json::json!(["x".repeat(MAX_VALUE_BYTES / 2 + 1)]).to_string();
        let cases = [
            ("SELECT randomblob(999999999)", "[]"),
            ("SELECT randomblob(?1)", "[999999999]"),
            ("SELECT zeroblob(?1)", "[999999999]"),
            ("SELECT length(zeroblob(?1))", &*format!("[{}]", MAX_VALUE_BYTES + 1)),
            ("SELECT length(?1 || ?1)", &big),
            ("SELECT length(concat(?1, ?1))", &big),
            ("SELECT length(replace(?1, 'x', 'xx'))", &big),
            ("SELECT length(hex(?1))", &big),
            (
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 5000) \
                 SELECT length(group_concat(hex(zeroblob(1000)), '')) FROM n",
                "[]",
            ),
        ];
        assert_each_fails(&db, &cases, too_large).await;
        let at_limit =
            rows(&db, "SELECT length(randomblob(?1))", &format!("[{MAX_VALUE_BYTES}]")).await.unwrap();
        assert_eq!(at_limit["rows"][0][0], MAX_VALUE_BYTES);
        // printf stops at the limit and answers NULL rather than an error.
        let printed = rows(&db, "SELECT printf('%.*c', ?1, 'x')", "[999999999]").await.unwrap();
        assert_eq!(printed["rows"], serde_json::json!([[null]]));
    }

    /// `n` copies of `item` joined by `separator`.
    fn repeat(item: &str, n: c_int, separator: &str) -> String {
        vec![item; n as usize].join(separator)
    }

    #[tokio::test]
    async fn statements_past_the_limits_are_refused() {
        let (_dir, db) = database();
        let over = |limit: c_int| limit + 1;
        let cases = [
            (
                format!("SELECT {}1", "~".repeat(over(MAX_EXPR_DEPTH) as usize)),
                "Expression tree is too large",
            ),
            (
                format!("SELECT 1 WHERE {}", repeat("1 = 1", over(MAX_EXPR_DEPTH), " AND ")),
                "Expression tree is too large",
            ),
            (
                repeat("SELECT 1", over(MAX_COMPOUND_SELECT), " UNION ALL "),
                "too many terms in compound SELECT",
            ),
            (format!("SELECT {}", repeat("1", over(MAX_COLUMNS), ", ")), "too many columns in result set"),
            (
                format!(
                    "CREATE TABLE wide ({})",
                    (0..over(MAX_COLUMNS)).map(|i| format!("c{i}")).collect::<Vec<_>>().join(", ")
                ),
                "too many columns on wide",
            ),
            (format!("SELECT ?{}", over(MAX_VARIABLES)), "variable number must be between ?1 and ?1000"),
            (
                format!("SELECT max({})", repeat("1", over(MAX_FUNCTION_ARGS), ", ")),
                "too many arguments on function max",
            ),
            (
                format!("SELECT 'x' LIKE '{}'", "%".repeat(over(MAX_LIKE_PATTERN_BYTES) as usize)),
                "LIKE or GLOB pattern too complex",
            ),
        ];
        for (sql, fragment) in &cases {
            let error = rows(&db, sql, "[]").await.unwrap_err();
            assert!(matches!(&error, SqlError::Invalid(m) if m.contains(fragment)), "{fragment}: {error:?}");
        }

        // A view repeats its code wherever it is used: past the instruction limit SQLite refuses
        // to compile the statement, as out of memory.
        rows(&db, "CREATE TABLE t (x)", "").await.unwrap();
        let columns: Vec<String> =
            (0..MAX_COLUMNS).map(|i| format!("{} AS c{i}", repeat("x", 90, "+"))).collect();
        rows(&db, &format!("CREATE VIEW v AS SELECT {} FROM t", columns.join(", ")), "").await.unwrap();
        rows(&db, &format!("CREATE VIEW v8 AS {}", repeat("SELECT * FROM v", 8, " UNION ALL ")), "")
            .await
            .unwrap();
        assert!(rows(&db, "SELECT * FROM v", "").await.is_ok());
        let error = rows(&db, "SELECT * FROM v8", "").await.unwrap_err();
        assert!(too_large(&error), "{error:?}");

        // A chain of triggers, each inserting into the next table.
        for i in 0..=over(MAX_TRIGGER_DEPTH) {
            rows(&db, &format!("CREATE TABLE t{i} (x)"), "").await.unwrap();
        }
        for i in 0..=MAX_TRIGGER_DEPTH {
            let next = i + 1;
            let trigger = format!(
                "CREATE TRIGGER g{i} AFTER INSERT ON t{i} BEGIN INSERT INTO t{next} VALUES (new.x); END"
            );
            rows(&db, &trigger, "").await.unwrap();
        }
        let error = rows(&db, "INSERT INTO t0 VALUES (1)", "").await.unwrap_err();
        assert!(error.to_string().contains("too many levels of trigger recursion"), "{error:?}");
        rows(&db, "INSERT INTO t1 VALUES (1)", "").await.unwrap();
    }

    #[tokio::test]
    async fn attach_vacuum_transactions_temporary_objects_and_pragmas_are_refused() {
        let (dir, db) = database();
        let outside = dir.path().join("outside.db");
        let attach = format!("ATTACH DATABASE '{}' AS other", outside.display());
        let vacuum_into = format!("VACUUM INTO '{}'", outside.display());
        let cases = [
            (&*attach, "[]"),
            ("ATTACH DATABASE ?1 AS other", &*serde_json::json!([outside]).to_string()),
            (&*vacuum_into, "[]"),
            ("VACUUM", "[]"),
            ("BEGIN", "[]"),
            ("SAVEPOINT s", "[]"),
            ("CREATE TEMP TABLE scratch (x)", "[]"),
            ("CREATE TABLE temp.scratch (x)", "[]"),
            ("CREATE TEMP VIEW v AS SELECT 1", "[]"),
            ("PRAGMA max_page_count = 1000000000", "[]"),
            ("PRAGMA journal_mode = DELETE", "[]"),
            ("PRAGMA writable_schema = ON", "[]"),
            ("PRAGMA trusted_schema = ON", "[]"),
            ("PRAGMA temp_store = MEMORY", "[]"),
            ("PRAGMA cache_size = -1000000", "[]"),
            ("PRAGMA mmap_size = 1000000000", "[]"),
        ];
        assert_each_fails(&db, &cases, denied).await;
        assert!(!outside.exists(), "no file was written outside the tenant's database");
        assert!(rows(&db, "PRAGMA table_list", "").await.is_ok());
        assert!(rows(&db, "PRAGMA user_version = 3", "").await.is_ok());
    }

    /// The SQL applications write keeps working under the authorizer and the limits.
    #[tokio::test]
    async fn ordinary_sql_still_works() {
        let (_dir, db) = database();
        for sql in [
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE CHECK (email = lower(email)), \
             profile TEXT CHECK (json_valid(profile)), created TEXT DEFAULT (datetime('now')), \
             domain TEXT GENERATED ALWAYS AS (substr(email, instr(email, '@') + 1)) VIRTUAL)",
            "CREATE INDEX users_domain ON users (lower(domain)) WHERE profile IS NOT NULL",
            "CREATE TABLE audit (user_id INTEGER REFERENCES users (id), what TEXT)",
            "CREATE TRIGGER users_audit AFTER INSERT ON users BEGIN \
             INSERT INTO audit VALUES (new.id, json_object('email', new.email)); END",
            "CREATE VIEW user_names AS SELECT id, upper(substr(email, 1, instr(email, '@') - 1)) AS name FROM users",
            "CREATE VIRTUAL TABLE search USING fts5(email)",
            "CREATE TRIGGER users_search AFTER INSERT ON users BEGIN \
             INSERT INTO search (rowid, email) VALUES (new.id, new.email); END",
            "ALTER TABLE audit ADD COLUMN at INTEGER DEFAULT 0",
            "ALTER TABLE audit RENAME COLUMN what TO detail",
            "ALTER TABLE audit RENAME TO history",
            "ALTER TABLE history DROP COLUMN at",
            "ANALYZE",
            "REINDEX",
        ] {
            rows(&db, sql, "").await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        }
        let inserted = rows(
            &db,
            "INSERT INTO users (email, profile) VALUES (?1, ?2), (?3, NULL) \
             ON CONFLICT (email) DO UPDATE SET profile = excluded.profile RETURNING id, domain",
            r#"["ada@example.com", "{\"langs\": [\"en\", \"fr\"]}", "bob@example.org"]"#,
        )
        .await
        .unwrap();
        assert_eq!(inserted["rows"], serde_json::json!([[1, "example.com"], [2, "example.org"]]));
        for (sql, expected) in [
            ("SELECT name FROM user_names ORDER BY id", serde_json::json!([["ADA"], ["BOB"]])),
            (
                "SELECT count(*), group_concat(detail ->> '$.email', ',') FROM history",
                serde_json::json!([[2, "ada@example.com,bob@example.org"]]),
            ),
            (
                "SELECT value FROM users, json_each(users.profile, '$.langs') ORDER BY value",
                serde_json::json!([["en"], ["fr"]]),
            ),
            (
                "SELECT id, row_number() OVER (ORDER BY id DESC), sum(id) OVER () FROM users ORDER BY id",
                serde_json::json!([[1, 2, 3], [2, 1, 3]]),
            ),
            (
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) SELECT sum(i), avg(i), max(i) FROM n",
                serde_json::json!([[55, 5.5, 10]]),
            ),
            (
                "SELECT date('2025-01-31', '+1 month'), strftime('%Y', unixepoch('2024-06-01'), 'unixepoch'), typeof(julianday('now'))",
                serde_json::json!([["2025-03-03", "2024", "real"]]),
            ),
            (
                "SELECT printf('%05.1f|%s', 3.14159, 'x'), format('%d', 7), abs(-2), round(2.5), coalesce(NULL, 'y'), iif(1, 'a', 'b')",
                serde_json::json!([["003.1|x", "7", 2, 3.0, "y", "a"]]),
            ),
            (
                "SELECT hex(unhex('00ff')), quote('it''s'), trim('  a  '), replace('aaa', 'a', 'b'), char(72, 105), unicode('A'), 'abc' LIKE 'A%', 'abc' GLOB 'a*'",
                serde_json::json!([["00FF", "'it''s'", "a", "bbb", "Hi", 65, 1, 1]]),
            ),
            (
                "SELECT length(randomblob(16)), typeof(random()), length(zeroblob(3)), sqlite_version() <> ''",
                serde_json::json!([[16, "integer", 3, 1]]),
            ),
            ("SELECT rowid FROM search WHERE search MATCH 'bob'", serde_json::json!([[2]])),
            ("SELECT count(*) FROM pragma_table_xinfo('users')", serde_json::json!([[5]])),
        ] {
            let answer = rows(&db, sql, "").await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            assert_eq!(answer["rows"], expected, "{sql}");
        }
    }
}
