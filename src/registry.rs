//! The functions a node serves right now: an immutable snapshot, swapped whole on every deploy.
//! A call holds an `Arc` of the function it runs, so it finishes on the revision it started on.

use crate::edge::admission::Gate;
use crate::host::Capabilities;
use crate::runtime::{CallError, CallOutput, CallRequest, Prepared, Runtime};
use crate::spec::{Function, FunctionId, Method, Name};
use std::collections::HashMap;
use std::sync::Arc;

/// A function revision ready to serve.
pub struct Deployed {
    pub id: Arc<FunctionId>,
    pub spec: Function,
    pub env: Arc<[(String, String)]>,
    pub prepared: Prepared,
    /// What the function's grants allow, resolved at deploy.
    pub capabilities: Arc<Capabilities>,
    pub gate: Arc<Gate>,
    pub tenant_gate: Arc<Gate>,
}

impl Deployed {
    /// Runs one call of this revision with `stdin` (a request envelope), in a fresh sandbox.
    pub async fn call(&self, runtime: &Runtime, stdin: bytes::Bytes) -> Result<CallOutput, CallError> {
        let request = CallRequest {
            capabilities: self.capabilities.clone(),
            limits: self.spec.limits,
            env: self.env.clone(),
            stdin,
        };
        let output = runtime.call(&self.prepared, request).await?;
        if !output.stderr.is_empty() {
            let shown = &output.stderr[..output.stderr.len().min(4096)];
            tracing::debug!(target: "gojinn::guest", function = %self.id, stderr = %String::from_utf8_lossy(shown));
        }
        Ok(output)
    }
}

/// Where a request path leads.
pub enum Target {
    /// A declared route (`route` is its path template); `methods` empty means any method.
    Route { function: Arc<Deployed>, methods: Vec<Method>, route: Arc<str> },
    /// `/{tenant}/{function}/...`
    Direct(Arc<Deployed>),
}

#[derive(Default)]
pub struct Registry {
    functions: HashMap<FunctionId, Arc<Deployed>>,
    routes: matchit::Router<(FunctionId, Vec<Method>, Arc<str>)>,
    tenant_gates: HashMap<Name, Arc<Gate>>,
}

impl Registry {
    pub fn new(
        functions: HashMap<FunctionId, Arc<Deployed>>,
        tenant_gates: HashMap<Name, Arc<Gate>>,
    ) -> Self {
        let mut routes = matchit::Router::new();
        let mut ordered: Vec<_> = functions.values().collect();
        ordered.sort_by(|a, b| a.id.cmp(&b.id));
        for deployed in ordered {
            for route in &deployed.spec.routes {
                // Conflicts were rejected when the specs were resolved; a route kept from an
                // older revision that now conflicts simply loses to the one already inserted.
                let value = ((*deployed.id).clone(), route.methods.clone(), route.path.0.as_str().into());
                let _ = routes.insert(route.path.0.clone(), value);
            }
        }
        Self { functions, routes, tenant_gates }
    }

    pub fn get(&self, id: &FunctionId) -> Option<&Arc<Deployed>> {
        self.functions.get(id)
    }

    pub fn functions(&self) -> impl Iterator<Item = &Arc<Deployed>> {
        self.functions.values()
    }

    pub fn tenant_gate(&self, tenant: &Name) -> Option<&Arc<Gate>> {
        self.tenant_gates.get(tenant)
    }

    /// Finds the function for a path: declared routes first, then `/{tenant}/{function}/...`.
    pub fn route(&self, path: &str) -> Option<Target> {
        if let Ok(found) = self.routes.at(path) {
            let (id, methods, route) = found.value;
            if let Some(function) = self.functions.get(id) {
                let (function, methods, route) = (function.clone(), methods.clone(), route.clone());
                return Some(Target::Route { function, methods, route });
            }
        }
        let mut segments = path.trim_start_matches('/').splitn(3, '/');
        let tenant = Name::new(segments.next()?).ok()?;
        let function = Name::new(segments.next()?).ok()?;
        self.functions.get(&FunctionId { tenant, function }).cloned().map(Target::Direct)
    }
}
