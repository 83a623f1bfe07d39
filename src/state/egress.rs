//! Outbound HTTP for guests (`host_http_fetch`): one SSRF-safe client per node.
//!
//! A request goes out only if its scheme is `http` or `https`, its `host:port` is on the
//! function's allow-list ([`AllowList`], exact entries), and the address it reaches is public:
//! names are resolved by [`PublicOnly`], which refuses any name with a loopback, private,
//! link-local, CGNAT, unique-local, unspecified, multicast, broadcast, documentation or other
//! special-purpose address (v4 and v6, v4-mapped included), and literal IPs are checked the same
//! way, unless the node sets `egress.allowPrivate`. Checking inside the resolver, on every
//! connection, leaves no gap between the check and the connect for DNS rebinding. Redirects are
//! followed here, never by the client, each hop checked again; proxies from the environment are
//! ignored. One deadline covers the whole fetch; a response body past `maxResponse` is an error,
//! never a truncated body. This module must never hand a guest a connection it did not check.

use crate::spec::{ByteSize, Span};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, Method, StatusCode};
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Outbound HTTP from guests (`host_http_fetch`), on top of each function's allow-list.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct EgressSettings {
    /// Allow loopback, private, link-local and other non-public addresses (off: SSRF protection).
    pub allow_private: bool,
    /// Deadline of one fetch, redirects included.
    pub timeout: Span,
    /// Largest response body a guest may receive.
    pub max_response: ByteSize,
    /// Redirects followed, each to an allowed host only.
    pub max_redirects: u32,
}

impl Default for EgressSettings {
    fn default() -> Self {
        Self {
            allow_private: false,
            timeout: Span(std::time::Duration::from_secs(10)),
            max_response: ByteSize(10 << 20),
            max_redirects: 5,
        }
    }
}

/// Why a fetch failed. The host maps each variant to a guest error code.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The allow-list or the address rules refuse the request.
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    /// The remote could not be reached or answered badly, or the deadline passed.
    #[error("{0}")]
    Unavailable(String),
}

/// Whether a header frames or routes the request: the client sets those, never the guest.
fn reserved(name: &HeaderName) -> bool {
    use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
    [CONNECTION, CONTENT_LENGTH, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE].contains(name)
        || matches!(name.as_str(), "keep-alive" | "proxy-connection")
}

/// Credentials that do not follow a redirect to another origin.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

/// A guest's request.
#[derive(Debug)]
pub struct Outbound {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Outbound {
    /// Checks the parts a guest controls: the method and the headers.
    pub fn new(method: Method, url: Url, headers: HeaderMap, body: Bytes) -> Result<Self, EgressError> {
        if method == Method::CONNECT {
            return Err(EgressError::Invalid("CONNECT requests are not allowed".into()));
        }
        if let Some(name) = headers.keys().find(|name| reserved(name)) {
            return Err(EgressError::Invalid(format!(
                "header {name:?} is set by the host, not the function"
            )));
        }
        Ok(Self { method, url, headers, body })
    }

    /// The request to send after `status` with `location`: resolved against the current URL,
    /// turned into a bodiless GET where browsers do (303, and 301/302 after a POST), and without
    /// credentials when it leaves the origin.
    fn redirected(mut self, status: StatusCode, location: &str) -> Result<Self, EgressError> {
        let next = self.url.join(location).map_err(|e| {
            EgressError::Unavailable(format!(
                "{} redirected to an invalid location {location:?}: {e}",
                self.url
            ))
        })?;
        let to_get = status == StatusCode::SEE_OTHER
            || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                && self.method == Method::POST);
        if to_get {
            self.method = Method::GET;
            self.body = Bytes::new();
            self.headers.remove(http::header::CONTENT_TYPE);
        }
        if next.origin() != self.url.origin() {
            for name in CREDENTIAL_HEADERS {
                self.headers.remove(*name);
            }
        }
        self.url = next;
        Ok(self)
    }
}

/// The answer a guest gets.
#[derive(Debug)]
pub struct Inbound {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A function's `grants.http.allow`: exact `host:port` entries, normalized (lower case, IPs in
/// canonical form).
#[derive(Clone, Debug, Default)]
pub struct AllowList(BTreeSet<String>);

impl AllowList {
    /// Parses every entry, naming each invalid one.
    pub fn parse(entries: &[String]) -> Result<Self, Vec<String>> {
        let (good, bad): (Vec<_>, Vec<_>) = entries.iter().map(|e| canonical(e)).partition(Result::is_ok);
        if bad.is_empty() {
            Ok(Self(good.into_iter().flatten().collect()))
        } else {
            Err(bad.into_iter().filter_map(Result::err).collect())
        }
    }

    fn permits(&self, url: &Url) -> Result<(), EgressError> {
        let key = endpoint(url).ok_or_else(|| EgressError::Invalid(format!("{url} has no host")))?;
        if self.0.contains(&key) {
            return Ok(());
        }
        let allowed: Vec<&str> = self.0.iter().map(String::as_str).collect();
        Err(EgressError::Denied(format!("{key} is not in the function's grants.http.allow {allowed:?}")))
    }
}

/// `host:port` of a URL, with the scheme's default port when it names none.
fn endpoint(url: &Url) -> Option<String> {
    Some(format!("{}:{}", url.host_str()?, url.port_or_known_default()?))
}

fn canonical(entry: &str) -> Result<String, String> {
    let bad = || format!("{entry:?} is not host:port, e.g. \"api.example.com:443\" (no wildcards)");
    let port = entry.rsplit_once(':').map(|(_, port)| port).ok_or_else(bad)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0) && port.bytes().all(|b| b.is_ascii_digit());
    if !port_ok || entry.contains(['*', '/', '@', '?', '#', ' ', '\\']) {
        return Err(bad());
    }
    let url = Url::parse(&format!("http://{entry}/")).map_err(|e| format!("{entry:?}: {e}"))?;
    endpoint(&url).ok_or_else(bad)
}

/// The node's egress client.
pub struct Egress {
    client: reqwest::Client,
    allow_private: bool,
    timeout: Duration,
    max_response: u64,
    max_redirects: u32,
}

impl Egress {
    pub fn new(settings: &EgressSettings) -> Result<Self, EgressError> {
        Self::with_resolver(settings, PublicOnly { allow_private: settings.allow_private })
    }

    fn with_resolver<R: Resolve + 'static>(
        settings: &EgressSettings,
        resolver: R,
    ) -> Result<Self, EgressError> {
        let timeout = settings.timeout.0;
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(resolver))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .user_agent(concat!("gojinn/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EgressError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            allow_private: settings.allow_private,
            timeout,
            max_response: settings.max_response.bytes(),
            max_redirects: settings.max_redirects,
        })
    }

    /// Sends `request` for a function allowed to reach `allow`, following redirects, within the
    /// node's deadline.
    pub async fn fetch(&self, allow: &AllowList, request: Outbound) -> Result<Inbound, EgressError> {
        let fetch = self.follow(allow, request);
        tokio::time::timeout(self.timeout, fetch).await.unwrap_or_else(|_| {
            Err(EgressError::Unavailable(format!("the fetch did not finish within {:?}", self.timeout)))
        })
    }

    async fn follow(&self, allow: &AllowList, mut request: Outbound) -> Result<Inbound, EgressError> {
        let mut redirects = 0;
        loop {
            self.check(allow, &request.url)?;
            let response = self
                .client
                .request(request.method.clone(), request.url.clone())
                .headers(request.headers.clone())
                .body(request.body.clone())
                .send()
                .await
                .map_err(|e| sent_error(e, &request.url))?;
            let status = response.status();
            let location = response.headers().get(http::header::LOCATION);
            let redirect = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
            if let (true, Some(location)) = (redirect, location) {
                if redirects == self.max_redirects {
                    return Err(EgressError::Unavailable(format!(
                        "{} redirected more than {} times",
                        request.url, self.max_redirects
                    )));
                }
                redirects += 1;
                let location = location.to_str().unwrap_or_default().to_owned();
                request = request.redirected(status, &location)?;
                continue;
            }
            let headers = response.headers().clone();
            let body = self.read_body(response).await?;
            return Ok(Inbound { status, headers, body });
        }
    }

    /// Scheme, allow-list and (for literal IPs) address rules; names are checked as they resolve.
    fn check(&self, allow: &AllowList, url: &Url) -> Result<(), EgressError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EgressError::Denied(format!(
                "only http and https URLs may be fetched, not {:?}",
                url.scheme()
            )));
        }
        allow.permits(url)?;
        // A host that parses as an IP is a literal: http(s) URLs normalize every numeric form.
        let literal = url.host_str().and_then(|host| host.trim_matches(['[', ']']).parse::<IpAddr>().ok());
        match literal {
            Some(ip) if !self.allow_private && !is_public(ip) => Err(EgressError::Denied(refusal(url, ip))),
            _ => Ok(()),
        }
    }

    async fn read_body(&self, mut response: reqwest::Response) -> Result<Bytes, EgressError> {
        let max = self.max_response;
        let too_large = || EgressError::TooLarge(format!("the response body is larger than {max} bytes"));
        if response.content_length().is_some_and(|length| length > max) {
            return Err(too_large());
        }
        let mut body = BytesMut::new();
        while let Some(chunk) =
            response.chunk().await.map_err(|e| EgressError::Unavailable(format!("reading the body: {e}")))?
        {
            if (body.len() + chunk.len()) as u64 > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

fn refusal(host: impl std::fmt::Display, ip: IpAddr) -> String {
    format!(
        "{host} is at {ip}, which is not a public address (loopback, private, link-local and other \
         special-purpose addresses are refused unless the node sets egress.allowPrivate)"
    )
}

/// A request that could not be sent: refused by the resolver, timed out, or failed to connect.
fn sent_error(error: reqwest::Error, url: &Url) -> EgressError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(current) = source {
        if let Some(refused) = current.downcast_ref::<Refused>() {
            return EgressError::Denied(refused.0.clone());
        }
        source = current.source();
    }
    let mut message = format!("cannot fetch {url}");
    let mut source = std::error::Error::source(&error);
    while let Some(current) = source {
        message.push_str(&format!(": {current}"));
        source = current.source();
    }
    EgressError::Unavailable(message)
}

/// The resolver's refusal, found again in the client's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// Resolves names with the system resolver and refuses any name with a non-public address.
struct PublicOnly {
    allow_private: bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !allow_private && !is_public(a.ip())) {
                return Err(Box::new(Refused(refusal(&host, bad.ip()))) as _);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// IPv4 blocks that are not publicly routable: (network, prefix length).
const V4_SPECIAL: &[(u32, u32)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network", unspecified
    (0x0a00_0000, 8),  // 10.0.0.0/8 private
    (0x6440_0000, 10), // 100.64.0.0/10 CGNAT
    (0x7f00_0000, 8),  // 127.0.0.0/8 loopback
    (0xa9fe_0000, 16), // 169.254.0.0/16 link-local
    (0xac10_0000, 12), // 172.16.0.0/12 private
    (0xc000_0000, 24), // 192.0.0.0/24 IETF protocol assignments
    (0xc000_0200, 24), // 192.0.2.0/24 documentation
    (0xc058_6300, 24), // 192.88.99.0/24 6to4 relay anycast
    (0xc0a8_0000, 16), // 192.168.0.0/16 private
    (0xc612_0000, 15), // 198.18.0.0/15 benchmarking
    (0xc633_6400, 24), // 198.51.100.0/24 documentation
    (0xcb00_7100, 24), // 203.0.113.0/24 documentation
    (0xe000_0000, 4),  // 224.0.0.0/4 multicast
    (0xf000_0000, 4),  // 240.0.0.0/4 reserved, and 255.255.255.255 broadcast
];

/// IPv6 blocks inside global unicast (2000::/3) that are not publicly routable. Everything
/// outside 2000::/3 (loopback, unique-local, link-local, multicast, ...) is refused as a whole.
const V6_SPECIAL: &[(u128, u32)] = &[
    (0x2001_0000 << 96, 23), // 2001::/23 IETF protocol assignments (Teredo, benchmarking, ...)
    (0x2001_0db8 << 96, 32), // 2001:db8::/32 documentation
    (0x3fff_0000 << 96, 20), // 3fff::/20 documentation
];

/// Whether `ip` is a public unicast address. v4 addresses inside v6 (mapped, NAT64, 6to4) are
/// judged by the v4 address they lead to.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    !V4_SPECIAL.iter().any(|&(network, len)| bits >> (32 - len) == network >> (32 - len))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    let embedded = |shift: u32| Ipv4Addr::from((bits >> shift) as u32);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if bits >> 32 == 0x0064_ff9b << 64 {
        return is_public_v4(embedded(0)); // 64:ff9b::/96 NAT64
    }
    if bits >> 112 == 0x2002 {
        return is_public_v4(embedded(80)); // 2002::/16 6to4
    }
    let global_unicast = bits >> 125 == 0b001;
    global_unicast && !V6_SPECIAL.iter().any(|&(network, len)| bits >> (128 - len) == network >> (128 - len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        let private = [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ];
        for ip in private {
            assert!(!is_public(ip.parse().unwrap()), "{ip} is not public");
        }
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for ip in public {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn allow_entries_are_exact_host_and_port() {
        let entries: Vec<String> =
            ["API.example.com:443", "127.1:8080", "[::1]:80"].into_iter().map(String::from).collect();
        let allow = AllowList::parse(&entries).unwrap();
        assert_eq!(allow.0.iter().collect::<Vec<_>>(), ["127.0.0.1:8080", "[::1]:80", "api.example.com:443"]);
        assert!(allow.permits(&"https://api.example.com/x".parse().unwrap()).is_ok());
        assert!(allow.permits(&"http://api.example.com/x".parse().unwrap()).is_err(), "port 80 is not 443");
        assert!(allow.permits(&"http://2130706433:8080/".parse().unwrap()).is_ok(), "127.0.0.1 in decimal");
        let bad: Vec<String> =
            ["*.example.com:443", "example.com", "example.com:0", "a:b", "user@h:1", "h:1/x"]
                .into_iter()
                .map(String::from)
                .collect();
        assert_eq!(AllowList::parse(&bad).unwrap_err().len(), bad.len());
    }

    #[test]
    fn redirects_drop_credentials_across_origins_and_bodies_on_303() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "secret".parse().unwrap());
        headers.insert("content-type", "text/plain".parse().unwrap());
        let request = |headers: HeaderMap| {
            Outbound::new(Method::POST, "http://a.test/x".parse().unwrap(), headers, Bytes::from("hi"))
                .unwrap()
        };
        let same = request(headers.clone()).redirected(StatusCode::TEMPORARY_REDIRECT, "/y").unwrap();
        assert_eq!((same.method.as_str(), same.url.as_str()), ("POST", "http://a.test/y"));
        assert!(same.headers.contains_key("authorization") && same.body == "hi");
        let other = request(headers).redirected(StatusCode::SEE_OTHER, "http://b.test/").unwrap();
        assert_eq!(other.method, Method::GET);
        assert!(other.body.is_empty() && other.headers.is_empty());
    }

    #[test]
    fn framing_headers_and_connect_are_refused() {
        let url: Url = "http://a.test/".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "b.test".parse().unwrap());
        assert!(Outbound::new(Method::GET, url.clone(), headers, Bytes::new()).is_err());
        assert!(Outbound::new(Method::CONNECT, url, HeaderMap::new(), Bytes::new()).is_err());
    }

    /// Resolves `public.test` to 127.0.0.1 as if it were a public name, and everything else
    /// through the real policy, so a redirect from an allowed "public" host can be followed.
    struct Pretend(PublicOnly);

    impl Resolve for Pretend {
        fn resolve(&self, name: Name) -> Resolving {
            if name.as_str() == "public.test" {
                let addr = SocketAddr::from(([127, 0, 0, 1], 0));
                return Box::pin(async move { Ok(Box::new(std::iter::once(addr)) as Addrs) });
            }
            self.0.resolve(name)
        }
    }

    /// A server on 127.0.0.1 that redirects `/to?<url>` to `<url>` and answers `ok` elsewhere.
    async fn redirecting_server() -> u16 {
        use axum::extract::RawQuery;
        use axum::response::{IntoResponse, Redirect};
        let app = axum::Router::new()
            .route(
                "/to",
                axum::routing::get(|RawQuery(q): RawQuery| async move { Redirect::to(&q.unwrap()) }),
            )
            .fallback(|| async { "ok".into_response() });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    #[tokio::test]
    async fn every_redirect_hop_is_checked_against_the_address_rules() {
        let port = redirecting_server().await;
        let settings = EgressSettings {
            timeout: Span(Duration::from_secs(5)),
            max_response: ByteSize(1024),
            ..EgressSettings::default()
        };
        let egress = Egress::with_resolver(&settings, Pretend(PublicOnly { allow_private: false })).unwrap();
        let entries =
            [format!("public.test:{port}"), format!("localhost:{port}"), format!("127.0.0.1:{port}")];
        let allow = AllowList::parse(&entries).unwrap();
        let get =
            |url: String| Outbound::new(Method::GET, url.parse().unwrap(), HeaderMap::new(), Bytes::new());

        let direct = egress.fetch(&allow, get(format!("http://public.test:{port}/")).unwrap()).await.unwrap();
        assert_eq!(direct.body, "ok");
        for target in [format!("http://localhost:{port}/"), format!("http://127.0.0.1:{port}/")] {
            let url = format!("http://public.test:{port}/to?{target}");
            let error = egress.fetch(&allow, get(url).unwrap()).await.unwrap_err();
            assert!(
                matches!(&error, EgressError::Denied(m) if m.contains("not a public address")),
                "{target}: {error:?}"
            );
        }
    }
}
