//! A tenant's `spec.cors`: which browser origins may call its functions, with which methods and
//! request headers, and which response headers their scripts may read. Absent, a tenant answers
//! no cross-origin request (no CORS headers at all). Checked here, every problem at once, each
//! naming its field; enforced at the edge (`edge::cors`), never here.

use super::quantity::Span;
use super::{Location, SpecError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The most origins one tenant may allow.
pub const MAX_CORS_ORIGINS: usize = 32;
/// The most methods one tenant may allow.
pub const MAX_CORS_METHODS: usize = 16;
/// The most header names in `allowHeaders`, and in `exposeHeaders`.
pub const MAX_CORS_HEADERS: usize = 32;
/// The longest `maxAge`: browsers cap a preflight's cache lifetime lower (Chromium at 2 hours,
/// Firefox at 24), so a longer one would only mislead.
pub const MAX_CORS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// The value allowing any origin (or any method or header), never together with credentials.
pub const WILDCARD: &str = "*";

/// `spec.cors` of a Tenant.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cors {
    /// Origins whose scripts may call the tenant's functions: `scheme://host[:port]`, no path;
    /// or the single `"*"`, any origin (never with `allowCredentials`).
    #[schemars(length(min = 1, max = MAX_CORS_ORIGINS))]
    pub allow_origins: Vec<CorsOrigin>,
    /// Methods a cross-origin call may use (a preflight's answer); or the single `"*"`.
    #[schemars(length(min = 1, max = MAX_CORS_METHODS))]
    pub allow_methods: Vec<CorsMethod>,
    /// Request headers a cross-origin call may send beyond the CORS-safelisted ones; or the
    /// single `"*"`. None by default.
    #[serde(default)]
    #[schemars(length(max = MAX_CORS_HEADERS))]
    pub allow_headers: Vec<CorsHeader>,
    /// Response headers the calling script may read beyond the CORS-safelisted ones; or the
    /// single `"*"`. None by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_CORS_HEADERS))]
    pub expose_headers: Vec<CorsHeader>,
    /// How long a browser may cache a preflight's answer (`Access-Control-Max-Age`, whole
    /// seconds, at most 24h); absent: the browser's default (5 seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Span>,
    /// Whether calls may carry the browser's credentials (cookies, HTTP authentication) and
    /// their responses still be read. Refused together with any `"*"`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_credentials: bool,
}

/// An origin, as a browser sends it in `Origin`: `scheme://host[:port]`, or `"*"`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct CorsOrigin(pub String);

/// An HTTP method name (a token, case-sensitive), or `"*"`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct CorsMethod(pub String);

/// An HTTP header name (a token, kept in lowercase), or `"*"`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct CorsHeader(pub String);

/// The methods whose names the Fetch standard uppercases in a browser's request: a policy must
/// list them in uppercase or the browser never matches them.
const STANDARD_METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT"];

impl Cors {
    /// The policy normalized (origins and header names in lowercase, each listed once), or every
    /// problem with it, each naming its field under `spec.cors`.
    pub(super) fn checked(self, at: &Location) -> Result<Cors, Vec<SpecError>> {
        let mut problems = Vec::new();
        let credentials = self.allow_credentials;
        let (no_origins, no_methods) = (self.allow_origins.is_empty(), self.allow_methods.is_empty());
        let mut problem =
            |field: String, message: String| problems.push(SpecError::field(at.clone(), &field, message));

        let allow_origins = checked_list(
            self.allow_origins.into_iter().map(|o| o.0).collect(),
            "allowOrigins",
            MAX_CORS_ORIGINS,
            credentials,
            &mut problem,
            |origin| origin_problem(origin).map_or_else(|| Ok(origin.to_ascii_lowercase()), Err),
        );
        let allow_methods = checked_list(
            self.allow_methods.into_iter().map(|m| m.0).collect(),
            "allowMethods",
            MAX_CORS_METHODS,
            credentials,
            &mut problem,
            |method| method_problem(method).map_or_else(|| Ok(method.to_owned()), Err),
        );
        let mut header_list = |headers: Vec<CorsHeader>, list: &str| {
            checked_list(
                headers.into_iter().map(|h| h.0).collect(),
                list,
                MAX_CORS_HEADERS,
                credentials,
                &mut problem,
                |name| {
                    if is_token(name) {
                        Ok(name.to_ascii_lowercase())
                    } else {
                        Err(format!("{name:?} is not a header name (letters, digits and !#$%&'*+-.^_`|~)"))
                    }
                },
            )
        };
        let allow_headers = header_list(self.allow_headers, "allowHeaders");
        let expose_headers = header_list(self.expose_headers, "exposeHeaders");
        if no_origins {
            let message = "lists no origin: list the origins allowed, or leave cors out".to_owned();
            problems.push(SpecError::field(at.clone(), "spec.cors.allowOrigins", message));
        }
        if no_methods {
            let message = "lists no method: list the methods cross-origin calls may use".to_owned();
            problems.push(SpecError::field(at.clone(), "spec.cors.allowMethods", message));
        }
        if let Some(max_age) = self.max_age
            && (max_age.0 > MAX_CORS_MAX_AGE || max_age.0.as_secs() == 0)
        {
            let shown = humantime::format_duration(max_age.0);
            let message =
                format!("{shown} is not between 1s and 24h (browsers cache a preflight 2h at most)");
            problems.push(SpecError::field(at.clone(), "spec.cors.maxAge", message));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Cors {
            allow_origins: allow_origins.into_iter().map(CorsOrigin).collect(),
            allow_methods: allow_methods.into_iter().map(CorsMethod).collect(),
            allow_headers: allow_headers.into_iter().map(CorsHeader).collect(),
            expose_headers: expose_headers.into_iter().map(CorsHeader).collect(),
            max_age: self.max_age,
            allow_credentials: credentials,
        })
    }
}

/// One list of `spec.cors`, its entries checked by `entry` (which returns the normalized form
/// or the problem) and listed once: at most `max` of them, and `"*"` only alone and without
/// credentials. Problems go to `problem` with the field they concern.
fn checked_list(
    entries: Vec<String>,
    list: &str,
    max: usize,
    credentials: bool,
    problem: &mut impl FnMut(String, String),
    entry: impl Fn(&str) -> Result<String, String>,
) -> Vec<String> {
    if entries.len() > max {
        problem(format!("spec.cors.{list}"), format!("at most {max} entries, not {}", entries.len()));
        return Vec::new();
    }
    let alone = entries.len() == 1;
    let mut normalized: Vec<String> = Vec::with_capacity(entries.len());
    for (i, raw) in entries.into_iter().enumerate() {
        let field = format!("spec.cors.{list}[{i}]");
        if raw == WILDCARD {
            if credentials {
                let message = "\"*\" cannot be combined with allowCredentials: true (the Fetch standard \
                               refuses it): list them instead";
                problem(field, message.into());
            } else if !alone {
                problem(field, "\"*\" allows every value and stands alone in its list".into());
            } else {
                normalized.push(raw);
            }
            continue;
        }
        match entry(&raw) {
            Ok(value) if !normalized.contains(&value) => normalized.push(value),
            Ok(_) => {}
            Err(message) => problem(field, message),
        }
    }
    normalized
}

/// What is wrong with an origin, if anything: it must be `scheme://host[:port]`, as a browser
/// sends it in `Origin`, without user info, path, query or fragment (not even a trailing `/`).
fn origin_problem(origin: &str) -> Option<String> {
    let expected = "an origin is scheme://host[:port], e.g. https://app.example.com";
    let Some((scheme, authority)) = origin.split_once("://") else {
        return Some(format!("{origin:?} is not an origin: {expected}"));
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Some(format!("{origin:?} has no valid scheme: {expected}"));
    }
    if authority.contains(['/', '?', '#']) {
        return Some(format!("{origin:?} has a path, query or fragment (or a trailing /): {expected}"));
    }
    if authority.contains('@') {
        return Some(format!("{origin:?} has user info: {expected}"));
    }
    let (host, port) = if authority.starts_with('[') {
        let Some(end) = authority.find(']') else {
            return Some(format!("{origin:?} has an invalid IPv6 host: {expected}"));
        };
        let address = &authority[1..end];
        if address.is_empty() || !address.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.')) {
            return Some(format!("{origin:?} has an invalid IPv6 host: {expected}"));
        }
        let rest = &authority[end + 1..];
        match rest.strip_prefix(':') {
            Some(port) => (&authority[..=end], Some(port)),
            None if rest.is_empty() => (&authority[..=end], None),
            None => return Some(format!("{origin:?} has an invalid IPv6 host: {expected}")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let host_ok = host.starts_with('[')
        || (!host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.')));
    if !host_ok {
        return Some(format!("{origin:?} has no valid host (letters, digits, '-' and '.'): {expected}"));
    }
    if let Some(port) = port
        && !(port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p > 0))
    {
        return Some(format!("{origin:?} has an invalid port (1 to 65535): {expected}"));
    }
    None
}

/// What is wrong with a method name, if anything: a token, and a standard method in uppercase.
fn method_problem(method: &str) -> Option<String> {
    if !is_token(method) {
        return Some(format!("{method:?} is not a method name (letters, digits and !#$%&'*+-.^_`|~)"));
    }
    let upper = method.to_ascii_uppercase();
    if upper != method && STANDARD_METHODS.contains(&upper.as_str()) {
        return Some(format!("write {upper}: browsers send standard methods in uppercase"));
    }
    None
}

/// Whether `text` is an HTTP token (RFC 9110 section 5.6.2): method and header names.
fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(yaml: &str) -> Cors {
        serde_norway::from_str(yaml).unwrap()
    }

    fn problems(yaml: &str) -> Vec<String> {
        match cors(yaml).checked(&Location::default()) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.into_iter().map(|p| p.message).collect(),
        }
    }

    #[test]
    fn a_valid_policy_is_normalized() {
        let checked = cors(
            "{ allowOrigins: [HTTPS://App.Example.com, 'http://localhost:5173', 'https://[::1]:8443', \
             https://app.example.com], allowMethods: [GET, POST, PURGE], allowHeaders: [Content-Type, x-trace], \
             exposeHeaders: [Gojinn-Receipt], maxAge: 10m, allowCredentials: true }",
        )
        .checked(&Location::default())
        .unwrap();
        let origins: Vec<_> = checked.allow_origins.iter().map(|o| o.0.as_str()).collect();
        assert_eq!(origins, ["https://app.example.com", "http://localhost:5173", "https://[::1]:8443"]);
        let headers: Vec<_> = checked.allow_headers.iter().map(|h| h.0.as_str()).collect();
        assert_eq!(headers, ["content-type", "x-trace"]);
        assert_eq!(checked.expose_headers, [CorsHeader("gojinn-receipt".into())]);
        assert_eq!(checked.max_age, Some(Span(Duration::from_secs(600))));
        let wildcard = cors("{ allowOrigins: ['*'], allowMethods: ['*'], allowHeaders: ['*'] }");
        assert_eq!(wildcard.clone().checked(&Location::default()).unwrap(), wildcard);
    }

    #[test]
    fn each_bad_origin_is_named_by_its_index() {
        let found = problems(
            "{ allowOrigins: [https://ok.example, https://a.example/, app.example, 'https://u@a.example', \
             'https://a.example:0', 'https://a_b.example', 'https://[zz]', 'ht tp://a.example', 'null'], \
             allowMethods: [GET] }",
        );
        let expected = [
            "spec.cors.allowOrigins[1]: \"https://a.example/\" has a path, query or fragment (or a trailing /)",
            "spec.cors.allowOrigins[2]: \"app.example\" is not an origin",
            "spec.cors.allowOrigins[3]: \"https://u@a.example\" has user info",
            "spec.cors.allowOrigins[4]: \"https://a.example:0\" has an invalid port (1 to 65535)",
            "spec.cors.allowOrigins[5]: \"https://a_b.example\" has no valid host",
            "spec.cors.allowOrigins[6]: \"https://[zz]\" has an invalid IPv6 host",
            "spec.cors.allowOrigins[7]: \"ht tp://a.example\" has no valid scheme",
            "spec.cors.allowOrigins[8]: \"null\" is not an origin",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (found, expected) in found.iter().zip(expected) {
            assert!(found.starts_with(expected), "{found}\n  does not start with\n{expected}");
        }
    }

    #[test]
    fn the_wildcard_stands_alone_and_never_with_credentials() {
        assert_eq!(
            problems("{ allowOrigins: ['*'], allowMethods: [GET], allowCredentials: true }"),
            ["spec.cors.allowOrigins[0]: \"*\" cannot be combined with allowCredentials: true (the Fetch \
              standard refuses it): list them instead"]
        );
        assert_eq!(
            problems("{ allowOrigins: [https://a.example, '*'], allowMethods: [GET] }"),
            ["spec.cors.allowOrigins[1]: \"*\" allows every value and stands alone in its list"]
        );
        for list in [
            "allowMethods: ['*']",
            "allowMethods: [GET], allowHeaders: ['*']",
            "allowMethods: [GET], exposeHeaders: ['*']",
        ] {
            let found =
                problems(&format!("{{ allowOrigins: [https://a.example], {list}, allowCredentials: true }}"));
            assert_eq!(found.len(), 1, "{list}: {found:?}");
            assert!(found[0].contains("[0]: \"*\" cannot be combined with allowCredentials"), "{found:?}");
        }
    }

    #[test]
    fn methods_and_headers_are_tokens_and_lists_are_capped() {
        assert_eq!(
            problems(
                "{ allowOrigins: [https://a.example], allowMethods: [GET, 'BAD METHOD', get], allowHeaders: [x-ok, 'x:no'] }"
            ),
            [
                "spec.cors.allowMethods[1]: \"BAD METHOD\" is not a method name (letters, digits and !#$%&'*+-.^_`|~)",
                "spec.cors.allowMethods[2]: write GET: browsers send standard methods in uppercase",
                "spec.cors.allowHeaders[1]: \"x:no\" is not a header name (letters, digits and !#$%&'*+-.^_`|~)",
            ]
        );
        let many: Vec<String> = (0..=MAX_CORS_ORIGINS).map(|i| format!("https://a{i}.example")).collect();
        assert_eq!(
            problems(&format!("{{ allowOrigins: [{}], allowMethods: [GET] }}", many.join(", "))),
            [format!(
                "spec.cors.allowOrigins: at most {MAX_CORS_ORIGINS} entries, not {}",
                MAX_CORS_ORIGINS + 1
            )]
        );
        assert_eq!(
            problems("{ allowOrigins: [], allowMethods: [] }"),
            [
                "spec.cors.allowOrigins: lists no origin: list the origins allowed, or leave cors out",
                "spec.cors.allowMethods: lists no method: list the methods cross-origin calls may use",
            ]
        );
        assert_eq!(
            problems("{ allowOrigins: [https://a.example], allowMethods: [GET], maxAge: 25h }"),
            ["spec.cors.maxAge: 1day 1h is not between 1s and 24h (browsers cache a preflight 2h at most)"]
        );
    }
}
