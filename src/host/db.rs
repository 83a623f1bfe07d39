//! `host_db_query` and `host_db_exec`: the tenant's SQL database, for functions with
//! `grants.db: true`. Parameters are a JSON array bound positionally, never interpolated (see
//! [`crate::state::sql`] for the value mapping and what SQL is refused).

use super::capabilities::Capabilities;
use super::work::Work;
use super::{ErrorCode, HostError, HostView, Imports, Waits, memory};
use crate::spec::Name;
use crate::state::sql::{MAX_SQL_BYTES, SqlError, SqlManager, TenantDb, params_from_json};
use bytes::Bytes;
use std::sync::Arc;
use wasmtime::Caller;

/// Longest parameter array (JSON).
const MAX_PARAMS_BYTES: usize = 10 << 20;

pub(super) fn link<T: HostView>(imports: &mut Imports<'_, T>) -> wasmtime::Result<()> {
    imports.func_async("host_db_query", Waits::Database, query::<T>)?;
    imports.func_async("host_db_exec", Waits::Database, exec::<T>)
}

/// Configures a revision's database: the tenant's own, opened now, with `grants.db: true`.
pub(super) fn configure(
    granted: bool,
    tenant: &Name,
    sql: &SqlManager,
) -> Result<Option<Arc<TenantDb>>, Vec<String>> {
    if !granted {
        return Ok(None);
    }
    let db = sql.open(tenant).map_err(|e| vec![format!("db: cannot open the tenant's database: {e}")])?;
    Ok(Some(db))
}

impl From<SqlError> for HostError {
    fn from(error: SqlError) -> Self {
        match error {
            SqlError::Invalid(m) => Self::invalid(m),
            SqlError::Denied(m) => Self::denied(m),
            SqlError::TooLarge(m) => Self::Guest(ErrorCode::Quota, m),
            SqlError::Busy(m) => Self::Guest(ErrorCode::Unavailable, m),
            SqlError::Internal(detail) => Self::internal("the SQL database", detail),
        }
    }
}

/// The statement of a call, checked: its database, SQL text and raw parameters.
struct Statement {
    db: Arc<TenantDb>,
    sql: String,
    params: Bytes,
}

fn statement<T: HostView>(
    caller: &mut Caller<'_, T>,
    sql: (i32, i32),
    (params_ptr, params_len): (i32, i32),
) -> Result<Statement, HostError> {
    let caps: Arc<Capabilities> = caller.data_mut().host().caps.clone();
    let Some(db) = caps.db.clone() else {
        return Err(HostError::denied(format!(
            "{} has no database: its spec needs grants.db: true",
            caps.function
        )));
    };
    let sql = memory::read_str(caller, sql, MAX_SQL_BYTES, "the SQL text")?;
    let params = Bytes::from(memory::read(caller, params_ptr, params_len, MAX_PARAMS_BYTES)?);
    Ok(Statement { db, sql, params })
}

fn query<T: HostView>(
    caller: &mut Caller<'_, T>,
    (sql_ptr, sql_len, params_ptr, params_len, out_ptr, out_cap): (i32, i32, i32, i32, i32, i32),
) -> Result<Work, HostError> {
    let Statement { db, sql, params } = statement(caller, (sql_ptr, sql_len), (params_ptr, params_len))?;
    let inputs = vec![Bytes::from(sql.clone()), params.clone()];
    Ok(Work::data((out_ptr, out_cap), inputs, async move {
        let answer = db.query(sql, params_from_json(&params)?).await?;
        Ok(Bytes::from(answer))
    }))
}

fn exec<T: HostView>(
    caller: &mut Caller<'_, T>,
    (sql_ptr, sql_len, params_ptr, params_len): (i32, i32, i32, i32),
) -> Result<Work, HostError> {
    let Statement { db, sql, params } = statement(caller, (sql_ptr, sql_len), (params_ptr, params_len))?;
    Ok(Work::value(async move {
        let changed = db.exec(sql, params_from_json(&params)?).await?;
        Ok(i64::try_from(changed).unwrap_or(i64::MAX))
    }))
}
