//! Configure, once per function revision: the function's grants checked and compiled into what
//! the host functions consult on every call, with the handles they need (the state backend, the
//! tenant's database, the egress client). A grant that cannot be honoured fails the deploy of
//! that revision with every problem listed at once; nothing here runs per call.

use super::{db, http, jobs, kv};
use crate::spec::{FunctionId, Grants, Name};
use crate::state::State;
use crate::state::egress::{AllowList, Egress, EgressSettings};
use crate::state::sql::{SqlManager, TenantDb};
use std::sync::{Arc, OnceLock};

/// The node's backends that capabilities are built from, shared by every function.
pub struct Backends {
    state: State,
    sql: SqlManager,
    egress_settings: EgressSettings,
    /// Built when the first function with an HTTP grant deploys.
    egress: OnceLock<Result<Arc<Egress>, String>>,
}

impl Backends {
    /// Databases live under `data_dir/sql`; egress follows the node's `egress` settings.
    pub fn new(state: State, data_dir: &std::path::Path, egress_settings: EgressSettings) -> Self {
        Self { state, sql: SqlManager::new(data_dir.join("sql")), egress_settings, egress: OnceLock::new() }
    }

    fn egress(&self) -> Result<Arc<Egress>, String> {
        let built = self.egress.get_or_init(|| {
            Egress::new(&self.egress_settings).map(Arc::new).map_err(|error| error.to_string())
        });
        built.clone()
    }
}

/// What one function revision may do, resolved from its grants.
pub struct Capabilities {
    pub(super) function: Arc<FunctionId>,
    pub(super) state: State,
    pub(super) kv: kv::Grants,
    /// The tenant's database, with `grants.db: true`.
    pub(super) db: Option<Arc<TenantDb>>,
    /// The egress client and the allow-list, with a non-empty `grants.http.allow`.
    pub(super) http: Option<(Arc<Egress>, AllowList)>,
    /// Functions of the same tenant this one may enqueue jobs for.
    pub(super) enqueue: Vec<Name>,
}

impl Capabilities {
    /// Checks `grants` and builds the function's capabilities. Blocking (opens the tenant's
    /// database): call it while deploying. The error lists every problem, `; `-separated.
    pub fn configure(
        function: Arc<FunctionId>,
        grants: &Grants,
        backends: &Backends,
    ) -> Result<Self, String> {
        let mut problems = Vec::new();
        // One line per capability: each configures itself from its grant and the backends.
        let kv = collect(kv::Grants::configure(grants.kv.as_ref()), &mut problems);
        let db = collect(db::configure(grants.db, &function.tenant, &backends.sql), &mut problems);
        let http = collect(http::configure(grants.http.as_ref(), || backends.egress()), &mut problems);
        let enqueue = jobs::configure(&grants.enqueue);
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(Self { function, state: backends.state.clone(), kv, db, http, enqueue })
    }

    /// The function these capabilities belong to.
    pub fn function(&self) -> &Arc<FunctionId> {
        &self.function
    }
}

/// The value of a configure step, or its default with the step's problems added to `problems`.
fn collect<T: Default>(step: Result<T, Vec<String>>, problems: &mut Vec<String>) -> T {
    step.unwrap_or_else(|errors| {
        problems.extend(errors);
        T::default()
    })
}
