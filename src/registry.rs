//! The functions a node serves right now: an immutable snapshot, swapped whole on every deploy
//! (the deploy module builds them) and read through a [`RegistryHandle`], one atomic load per read.
//! A call holds an `Arc` of the function it runs, so it finishes on the revision it started on.
//! It also holds each tenant's API keys as the edge checks them ([`DeployedKey`]; the API's
//! `keys` module does the checking), and each tenant's CORS policy as the edge applies it (its
//! `cors` module builds it).

use crate::gate::Gate;
use crate::host::Capabilities;
use crate::runtime::{CallRequest, Prepared, Ran, Runtime};
use crate::spec::{ApiKey, Function, FunctionId, Method, Name, Route, Scope, path_tenant};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::watch;
use tower_http::cors::CorsLayer;

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
    pub async fn call(&self, runtime: &Runtime, stdin: bytes::Bytes) -> Ran {
        let request = CallRequest {
            tenant: Arc::from(self.id.tenant.as_str()),
            capabilities: self.capabilities.clone(),
            limits: self.spec.limits,
            env: self.env.clone(),
            stdin,
        };
        let ran = runtime.call(&self.prepared, request).await;
        if let Ok(output) = &ran.result
            && !output.stderr.is_empty()
        {
            let shown = &output.stderr[..output.stderr.len().min(4096)];
            tracing::debug!(target: "gojinn::guest", function = %self.id, stderr = %String::from_utf8_lossy(shown));
        }
        ran
    }
}

/// One of a tenant's API keys, as the edge checks it: its name, its sha256 (decoded) and its
/// scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployedKey {
    pub name: Name,
    pub digest: [u8; 32],
    pub scopes: Vec<Scope>,
}

impl DeployedKey {
    /// A tenant's keys, from its resolved spec (where every key lists its scopes; a key that
    /// lists none would open nothing). A digest that is not 64 hex digits, which resolution
    /// never lets through, is left out: it matches no key anyway.
    pub fn all(keys: &[ApiKey]) -> Arc<[DeployedKey]> {
        keys.iter()
            .filter_map(|key| {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(&key.sha256.0, &mut digest).ok()?;
                let scopes = key.scopes.clone().unwrap_or_else(|| Scope::ALL.to_vec());
                Some(DeployedKey { name: key.name.clone(), digest, scopes })
            })
            .collect()
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
    routes: Routes,
    tenant_gates: HashMap<Name, Arc<Gate>>,
    /// Each tenant's API keys; a tenant with none (or not listed) is open to calls.
    tenant_keys: HashMap<Name, Arc<[DeployedKey]>>,
    /// The CORS policy of each tenant that has one (`spec.cors`), built once per deploy.
    tenant_cors: HashMap<Name, CorsLayer>,
    /// The functions the deploy that built this registry could not prepare on this node, with
    /// the error: status shows them failed.
    failures: BTreeMap<FunctionId, String>,
}

impl Registry {
    pub fn new(
        functions: HashMap<FunctionId, Arc<Deployed>>,
        tenant_gates: HashMap<Name, Arc<Gate>>,
    ) -> Self {
        let tenants = tenant_gates.keys().chain(functions.keys().map(|id| &id.tenant)).cloned().collect();
        let mut ordered: Vec<_> = functions.values().collect();
        ordered.sort_by(|a, b| a.id.cmp(&b.id));
        let declared = ordered.into_iter().map(|deployed| (&*deployed.id, &deployed.spec.routes[..]));
        let routes = Routes::new(tenants, declared);
        Self {
            functions,
            routes,
            tenant_gates,
            tenant_keys: HashMap::new(),
            tenant_cors: HashMap::new(),
            failures: BTreeMap::new(),
        }
    }

    /// This registry, with each tenant's API keys.
    pub fn with_keys(self, tenant_keys: HashMap<Name, Arc<[DeployedKey]>>) -> Self {
        Self { tenant_keys, ..self }
    }

    /// `tenant`'s API keys (none for a tenant without keys).
    pub fn tenant_keys(&self, tenant: &Name) -> Option<&Arc<[DeployedKey]>> {
        self.tenant_keys.get(tenant).filter(|keys| !keys.is_empty())
    }

    /// This registry, with each tenant's CORS policy.
    pub fn with_cors(self, tenant_cors: HashMap<Name, CorsLayer>) -> Self {
        Self { tenant_cors, ..self }
    }

    /// `tenant`'s CORS policy, if it has one.
    pub fn tenant_cors(&self, tenant: &Name) -> Option<&CorsLayer> {
        self.tenant_cors.get(tenant)
    }

    /// Every tenant's API keys.
    pub fn keys(&self) -> impl Iterator<Item = (&Name, &DeployedKey)> {
        self.tenant_keys.iter().flat_map(|(tenant, keys)| keys.iter().map(move |key| (tenant, key)))
    }

    /// This registry, recording the functions its deploy could not prepare.
    pub fn with_failures(self, failures: BTreeMap<FunctionId, String>) -> Self {
        Self { failures, ..self }
    }

    /// The functions the deploy that built this registry could not prepare (their module does
    /// not load on this node), with the error.
    pub fn failures(&self) -> &BTreeMap<FunctionId, String> {
        &self.failures
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
    /// A path under a tenant's name only ever leads to that tenant's functions.
    pub fn route(&self, path: &str) -> Option<Target> {
        if let Some((id, methods, route)) = self.routes.find(path)
            && let Some(function) = self.functions.get(id)
        {
            let (function, methods, route) = (function.clone(), methods.clone(), route.clone());
            return Some(Target::Route { function, methods, route });
        }
        let mut segments = path.trim_start_matches('/').splitn(3, '/');
        let tenant = Name::new(segments.next()?).ok()?;
        let function = Name::new(segments.next()?).ok()?;
        self.functions.get(&FunctionId { tenant, function }).cloned().map(Target::Direct)
    }
}

/// A cheap, shared handle to the registry a node serves now: the edge, the admin API, MCP and
/// the job workers read it, and only a deploy ([`RegistryHandle::publish`]) replaces it.
/// Reading is one atomic load, never a lock.
#[derive(Clone)]
pub struct RegistryHandle {
    shared: Arc<Shared>,
}

struct Shared {
    current: ArcSwap<Registry>,
    /// Counts deploys; subscribers learn that the registry changed.
    deploys: watch::Sender<u64>,
}

impl Default for RegistryHandle {
    /// An empty registry, before the first deploy.
    fn default() -> Self {
        let shared =
            Shared { current: ArcSwap::from_pointee(Registry::default()), deploys: watch::Sender::new(0) };
        Self { shared: Arc::new(shared) }
    }
}

impl RegistryHandle {
    /// The registry served now.
    pub fn current(&self) -> Arc<Registry> {
        self.shared.current.load_full()
    }

    /// Changes after every deploy; read [`RegistryHandle::current`] then.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.deploys.subscribe()
    }

    /// Whether a deploy has published a registry yet.
    pub fn deployed(&self) -> bool {
        *self.shared.deploys.borrow() > 0
    }

    /// Serves `registry` from now on and tells the subscribers. Only a deploy calls this.
    pub fn publish(&self, registry: Registry) {
        self.shared.current.store(Arc::new(registry));
        self.shared.deploys.send_modify(|count| *count += 1);
    }
}

/// A declared route's function, methods (empty: any) and path template.
type RouteValue = (FunctionId, Vec<Method>, Arc<str>);

/// The declared routes, split by owner: a route whose first segment names a tenant is kept only
/// if it is that tenant's own, in that tenant's table, and a path whose first segment names a
/// tenant (in any letter case) is looked up only there. So even state that slipped past
/// admission (a tenant created after another's routes were applied, records of an older
/// version) cannot hand one tenant's path to another.
#[derive(Default)]
struct Routes {
    by_tenant: HashMap<Name, matchit::Router<RouteValue>>,
    /// Routes outside every tenant's namespace.
    shared: matchit::Router<RouteValue>,
}

impl Routes {
    fn new<'a>(
        tenants: HashSet<Name>,
        declared: impl Iterator<Item = (&'a FunctionId, &'a [Route])>,
    ) -> Self {
        let mut routes = Routes::default();
        for (id, declared) in declared {
            for route in declared {
                let template = route.path.0.as_str();
                let router = match path_tenant(template).filter(|t| tenants.contains(t)) {
                    Some(owner) if owner == id.tenant => routes.by_tenant.entry(owner).or_default(),
                    Some(owner) => {
                        tracing::warn!(function = %id, route = template, tenant = %owner,
                            "not serving a route under another tenant's path");
                        continue;
                    }
                    None => &mut routes.shared,
                };
                // Conflicts were rejected when the specs were resolved; a route kept from an
                // older revision that now conflicts simply loses to the one already inserted.
                let _ = router.insert(template, (id.clone(), route.methods.clone(), template.into()));
            }
        }
        // Every tenant gets a table, so its paths never fall through to the shared one.
        for tenant in tenants {
            routes.by_tenant.entry(tenant).or_default();
        }
        routes
    }

    fn find(&self, path: &str) -> Option<&RouteValue> {
        let router = match path_tenant(path).and_then(|tenant| self.by_tenant.get(&tenant)) {
            Some(own) => own,
            None => &self.shared,
        };
        router.at(path).ok().map(|found| found.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RoutePath;

    fn id(raw: &str) -> FunctionId {
        let (tenant, function) = raw.split_once('/').unwrap();
        FunctionId { tenant: Name::new(tenant).unwrap(), function: Name::new(function).unwrap() }
    }

    fn route(path: &str) -> Route {
        Route { path: RoutePath(path.into()), methods: Vec::new() }
    }

    fn routes(tenants: &[&str], declared: &[(&str, &[&str])]) -> Routes {
        let tenants = tenants.iter().map(|t| Name::new(t).unwrap()).collect();
        let declared: Vec<(FunctionId, Vec<Route>)> =
            declared.iter().map(|(f, paths)| (id(f), paths.iter().map(|p| route(p)).collect())).collect();
        Routes::new(tenants, declared.iter().map(|(f, r)| (f, &r[..])))
    }

    fn owner(routes: &Routes, path: &str) -> Option<String> {
        routes.find(path).map(|found| found.0.to_string())
    }

    #[test]
    fn a_path_under_a_tenants_name_never_reaches_another_tenant() {
        // As if records slipped past admission: beta claims alpha's paths every way it could.
        let table = routes(
            &["alpha", "beta"],
            &[
                ("alpha/own", &["/alpha/mine"]),
                ("beta/thief", &["/alpha/{*rest}", "/{t}/probe", "/ALPHA/x", "/api/{*rest}"]),
            ],
        );
        for path in ["/alpha/probe", "/ALPHA/x", "/Alpha/probe", "/alpha/", "/alpha"] {
            assert_eq!(owner(&table, path), None, "{path}");
        }
        assert_eq!(owner(&table, "/alpha/mine").as_deref(), Some("alpha/own"));
        assert_eq!(owner(&table, "/api/v1").as_deref(), Some("beta/thief"), "its own grant still works");
        assert_eq!(owner(&table, "/other/probe").as_deref(), Some("beta/thief"), "no tenant is named other");
    }

    #[test]
    fn a_tenant_created_later_takes_its_namespace_back() {
        let declared: &[(&str, &[&str])] = &[("beta/f", &["/shop/{*rest}"])];
        assert_eq!(owner(&routes(&["beta"], declared), "/shop/x").as_deref(), Some("beta/f"));
        assert_eq!(owner(&routes(&["beta", "shop"], declared), "/shop/x"), None);
    }
}
