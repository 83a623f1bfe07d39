//! The tenant's SQL database (libSQL/SQLite), for functions with `grants.db: true`. Parameters
//! are JSON values bound positionally to `?` (never pasted into the SQL): null, booleans (stored
//! as 0 and 1), integers, floats, strings, and blobs written with [`blob`]. Each call runs one
//! statement in its own transaction; `BEGIN`/`COMMIT`, `ATTACH`, `VACUUM` and most PRAGMAs are
//! refused. SQL errors are [`Error::InvalidArgument`] with SQLite's message.
//!
//! ```no_run
//! # extern crate gojinn_sdk as gojinn;
//! # fn main() -> Result<(), gojinn::Error> {
//! use gojinn::db::{self, json};
//! db::exec("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT)", &[])?;
//! db::exec("INSERT INTO notes (text) VALUES (?)", &[json!("hello")])?;
//!
//! #[derive(serde::Deserialize)]
//! struct Note { id: i64, text: String }
//! let notes: Vec<Note> = db::query("SELECT id, text FROM notes", &[])?.decode()?;
//! # Ok(()) }
//! ```

use crate::Error;
use crate::abi::{addr, arg, call_with_buffer, checked, host_db_exec, host_db_query, len};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use serde_json::{Value, json};

/// The answer of a query: column names and rows of values (blobs as `{"base64": "..."}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Rows {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
}

impl Rows {
    /// The column names, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The rows, each with one value per column.
    pub fn rows(&self) -> &[Vec<Value>] {
        &self.rows
    }

    /// Every row as a `T`, read from an object of column names to values (`serde` field names
    /// match column names; use `AS` to rename). A row that does not fit is an error naming it.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<Vec<T>, Error> {
        let object = |row: &Vec<Value>| -> serde_json::Map<String, Value> {
            self.columns.iter().cloned().zip(row.iter().cloned()).collect()
        };
        let decode = |(i, row)| {
            serde_json::from_value(Value::Object(object(row)))
                .map_err(|e| Error::Internal(format!("row {i} does not fit the type: {e}")))
        };
        self.rows.iter().enumerate().map(decode).collect()
    }
}

/// A blob parameter, as the host expects it: `{"base64": "..."}`.
pub fn blob(bytes: &[u8]) -> Value {
    json!({ "base64": BASE64.encode(bytes) })
}

/// The bytes of a blob value from a row, or `None` when `value` is not a blob.
pub fn as_blob(value: &Value) -> Option<Vec<u8>> {
    let object = value.as_object().filter(|o| o.len() == 1)?;
    BASE64.decode(object.get("base64")?.as_str()?).ok()
}

/// Runs a statement that returns rows (`SELECT`, `... RETURNING`). Answers over 10 MiB are an
/// [`Error::Quota`]: select fewer rows or columns.
pub fn query(sql: &str, params: &[Value]) -> Result<Rows, Error> {
    let params = serde_json::to_vec(params).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let ((sql_ptr, sql_len), (params_ptr, params_len)) = (arg(sql.as_bytes()), arg(&params));
    // SAFETY: the host reads the two byte strings and writes at most `cap` bytes at `ptr`.
    let json = call_with_buffer(|ptr, cap| unsafe {
        host_db_query(sql_ptr, sql_len, params_ptr, params_len, addr(ptr), len(cap))
    })?;
    serde_json::from_slice(&json).map_err(|e| Error::Internal(format!("the host's rows are not JSON: {e}")))
}

/// Runs a statement that returns no rows; answers how many rows it changed.
pub fn exec(sql: &str, params: &[Value]) -> Result<u64, Error> {
    let params = serde_json::to_vec(params).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let ((sql_ptr, sql_len), (params_ptr, params_len)) = (arg(sql.as_bytes()), arg(&params));
    // SAFETY: the host only reads the two byte strings.
    let changed = checked(unsafe { host_db_exec(sql_ptr, sql_len, params_ptr, params_len) })?;
    Ok(changed as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_decode_by_column_name_and_blobs_round_trip() {
        #[derive(Deserialize, PartialEq, Debug)]
        struct Note {
            id: i64,
            text: Option<String>,
        }
        let rows: Rows =
            serde_json::from_str(r#"{"columns":["id","text"],"rows":[[1,"a"],[2,null]]}"#).unwrap();
        let notes: Vec<Note> = rows.decode().unwrap();
        assert_eq!(notes, [Note { id: 1, text: Some("a".into()) }, Note { id: 2, text: None }]);
        assert!(rows.decode::<(String,)>().is_err());
        assert_eq!(as_blob(&blob(&[0, 255])), Some(vec![0, 255]));
        assert_eq!(as_blob(&json!("AP8=")), None);
    }

    #[test]
    fn outside_wasm_every_call_is_unavailable() {
        assert!(matches!(query("SELECT 1", &[]), Err(Error::Unavailable(_))));
        assert!(matches!(exec("DELETE FROM t WHERE id = ?", &[json!(1)]), Err(Error::Unavailable(_))));
    }
}
