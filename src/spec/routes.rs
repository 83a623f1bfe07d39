//! Who owns a URL path. `/{tenant}/...` always belongs to that tenant; any other path a function
//! declares must lie under a prefix the operator granted its tenant (`spec.routePrefixes`), and
//! the grants of different tenants never share a path. Paths are compared segment by segment,
//! ignoring letter case and a trailing slash: `/API/` and `/api` are one namespace, `/apix` is
//! another. The registry applies the same rule to requests ([`path_tenant`]), so state that
//! slipped past these checks still cannot hand one tenant's path to another.

use super::names::Name;
use super::resolve::{Function, Tenant};
use super::{Location, SpecError};
use std::collections::BTreeMap;

/// One segment of a route template or a prefix; literals lowercased.
#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
    CatchAll,
}

/// The segments of a path or template, without the leading `/` and a trailing slash.
fn segments(path: &str) -> Vec<Segment> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.is_empty() {
        return Vec::new();
    }
    path.split('/')
        .map(|seg| match seg.strip_prefix('{') {
            Some(param) if param.starts_with('*') => Segment::CatchAll,
            Some(_) => Segment::Param,
            None => Segment::Literal(seg.to_ascii_lowercase()),
        })
        .collect()
}

/// The tenant whose namespace a path (or a route template) is in: its first segment, lowercased,
/// when that is a valid tenant name. Whether such a tenant exists is the caller's question.
pub fn path_tenant(path: &str) -> Option<Name> {
    let first = path.strip_prefix('/')?.split('/').next()?;
    Name::new(&first.to_ascii_lowercase()).ok()
}

/// The paths at and below a literal prefix: a granted prefix, or `/{tenant}`.
#[derive(Debug)]
struct Namespace(Vec<String>);

impl Namespace {
    fn of_prefix(prefix: &str) -> Self {
        let literals = segments(prefix).into_iter().filter_map(|segment| match segment {
            Segment::Literal(literal) => Some(literal),
            Segment::Param | Segment::CatchAll => None,
        });
        Namespace(literals.collect())
    }

    fn of_tenant(tenant: &Name) -> Self {
        Namespace(vec![tenant.as_str().to_owned()])
    }

    /// Whether every path the template matches is in this namespace.
    fn contains(&self, template: &str) -> bool {
        let route = segments(template);
        route.len() >= self.0.len()
            && self.0.iter().zip(&route).all(|(own, seg)| matches!(seg, Segment::Literal(l) if l == own))
    }

    /// Whether some path the template matches is in this namespace.
    fn reached_by(&self, template: &str) -> bool {
        let route = segments(template);
        for (i, own) in self.0.iter().enumerate() {
            match route.get(i) {
                None => return false,
                Some(Segment::CatchAll) => return true,
                Some(Segment::Param) => {}
                Some(Segment::Literal(literal)) if literal == own => {}
                Some(Segment::Literal(_)) => return false,
            }
        }
        true
    }

    /// Whether the two namespaces share a path (one is at or below the other).
    fn overlaps(&self, other: &Namespace) -> bool {
        self.0.iter().zip(&other.0).all(|(a, b)| a == b)
    }
}

/// A namespace someone owns, for messages: `tenant alpha (/alpha/..., specs.yaml:3)` or
/// `"/shop", granted to tenant alpha at specs.yaml:3`.
struct Owned {
    namespace: Namespace,
    tenant: Name,
    /// The prefix as written; `None` for the tenant's own `/{tenant}`.
    prefix: Option<String>,
    at: Location,
}

impl std::fmt::Display for Owned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.prefix {
            Some(prefix) => write!(f, "{prefix:?}, granted to tenant {} at {}", self.tenant, self.at),
            None => write!(
                f,
                "/{}/..., the namespace of tenant {} defined at {}",
                self.tenant, self.tenant, self.at
            ),
        }
    }
}

/// Who owns what: every defined tenant's namespace and the admitted tenants' granted prefixes.
pub(super) struct Ownership {
    owned: Vec<Owned>,
}

impl Ownership {
    /// Checks the tenants' granted prefixes against every defined tenant's namespace (`defined`
    /// holds tenants whose documents are invalid too) and against each other, in file order: the
    /// first tenant to grant a path keeps it. A tenant with a prefix that another tenant owns is
    /// refused whole: it is removed from `tenants`, with an error naming both sides.
    pub(super) fn admit(
        tenants: &mut BTreeMap<Name, Tenant>,
        defined: &BTreeMap<Name, Location>,
        errors: &mut Vec<SpecError>,
    ) -> Self {
        let mut owned: Vec<Owned> = defined
            .iter()
            .map(|(name, at)| Owned {
                namespace: Namespace::of_tenant(name),
                tenant: name.clone(),
                prefix: None,
                at: at.clone(),
            })
            .collect();
        let mut in_file_order: Vec<&Tenant> = tenants.values().collect();
        in_file_order.sort_by(|a, b| (&a.source.file, a.source.line).cmp(&(&b.source.file, b.source.line)));
        let mut refused = Vec::new();
        for tenant in in_file_order {
            let mut problems = Vec::new();
            for prefix in &tenant.route_prefixes {
                let namespace = Namespace::of_prefix(&prefix.0);
                let taken =
                    owned.iter().filter(|o| o.tenant != tenant.name && o.namespace.overlaps(&namespace));
                problems.extend(taken.map(|other| format!("{:?} overlaps {other}", prefix.0)));
            }
            if problems.is_empty() {
                owned.extend(tenant.route_prefixes.iter().map(|prefix| Owned {
                    namespace: Namespace::of_prefix(&prefix.0),
                    tenant: tenant.name.clone(),
                    prefix: Some(prefix.0.clone()),
                    at: tenant.source.clone(),
                }));
            } else {
                let message = problems.join("; ");
                errors.push(SpecError::field(tenant.source.clone(), "spec.routePrefixes", message));
                refused.push(tenant.name.clone());
            }
        }
        for name in &refused {
            tenants.remove(name);
        }
        Self { owned }
    }

    /// Checks that every route a function declares lies in its tenant's namespace or under one
    /// of the tenant's granted prefixes; otherwise names whose paths the route would take.
    pub(super) fn check_routes(&self, function: &Function, tenant: &Tenant) -> Result<(), SpecError> {
        for route in &function.routes {
            let template = route.path.0.as_str();
            let mut own = self.owned.iter().filter(|o| o.tenant == tenant.name);
            if own.any(|o| o.namespace.contains(template)) {
                continue;
            }
            let granted: Vec<&str> = tenant.route_prefixes.iter().map(|p| p.0.as_str()).collect();
            let granted = if granted.is_empty() { "none".to_owned() } else { granted.join(", ") };
            let mut message = format!(
                "route {template:?} is outside tenant {name}'s namespace (/{name}/...) and its granted \
                 prefixes ({granted})",
                name = tenant.name
            );
            let reached: Vec<String> = self
                .owned
                .iter()
                .filter(|o| o.tenant != tenant.name && o.namespace.reached_by(template))
                .map(Owned::to_string)
                .collect();
            if reached.is_empty() {
                message.push_str(&format!(
                    "; the operator grants prefixes in tenant {}'s spec.routePrefixes",
                    tenant.name
                ));
            } else {
                message.push_str(&format!(": it would take paths of {}", reached.join("; ")));
            }
            return Err(SpecError::field(function.source.clone(), "spec.routes", message));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_contains_paths_segment_wise_ignoring_case_and_a_trailing_slash() {
        let api = Namespace::of_prefix("/api");
        for inside in ["/api", "/api/", "/API", "/api/v1", "/Api/{id}", "/api/{*rest}"] {
            assert!(api.contains(inside), "{inside}");
        }
        for outside in ["/apix", "/", "/{x}", "/{*rest}", "/ap", "/v1/api"] {
            assert!(!api.contains(outside), "{outside}");
        }
        assert!(Namespace::of_prefix("/shop/").contains("/SHOP/cart"));
    }

    #[test]
    fn templates_reach_a_namespace_through_literals_parameters_and_catch_alls() {
        let alpha = Namespace::of_tenant(&Name::new("alpha").unwrap());
        for reaching in ["/alpha", "/alpha/", "/Alpha/probe", "/{t}/probe", "/{*rest}", "/alpha/{*rest}"] {
            assert!(alpha.reached_by(reaching), "{reaching}");
        }
        for not in ["/", "/alphax/probe", "/beta/alpha", "/api/{*rest}"] {
            assert!(!alpha.reached_by(not), "{not}");
        }
        let deep = Namespace::of_prefix("/shop/cart");
        assert!(deep.reached_by("/{a}/{b}") && deep.reached_by("/shop/{*rest}"));
        assert!(!deep.reached_by("/shop") && !deep.reached_by("/{a}"), "strict ancestors are not inside");
    }

    #[test]
    fn namespaces_overlap_when_one_is_at_or_below_the_other() {
        let of = Namespace::of_prefix;
        assert!(of("/api").overlaps(&of("/API/")));
        assert!(of("/api").overlaps(&of("/api/v2")) && of("/api/v2").overlaps(&of("/api")));
        assert!(!of("/api").overlaps(&of("/apix")));
        assert!(!of("/api/v1").overlaps(&of("/api/v2")));
    }

    #[test]
    fn the_tenant_of_a_path_is_its_first_segment_in_lower_case() {
        let alpha = Some(Name::new("alpha").unwrap());
        assert_eq!(path_tenant("/alpha/probe"), alpha);
        assert_eq!(path_tenant("/ALPHA"), alpha);
        assert_eq!(path_tenant("/alpha/"), alpha);
        for none in ["/", "/{t}/x", "/%61lpha/x", "/_gojinn/v1", "alpha"] {
            assert_eq!(path_tenant(none), None, "{none}");
        }
    }
}
