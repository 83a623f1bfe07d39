//! Serves a router over HTTP/1.1 on a bound listener, within the node's `http` bounds: open
//! connections in total and per client address (past a cap a connection is closed at once,
//! unanswered), the header-read and idle timeouts (`deadline`), the size and count of request
//! headers (hyper refuses those with an empty 431 and closes the connection) and the URL's
//! length (a JSON 414, through the edge's error mapping). Stopping closes the listener at once,
//! closes idle connections and lets requests in flight finish until the stop's deadline, when the
//! connections still open are closed. Only HTTP/1.1: every bound here is defined per HTTP/1
//! connection, and cleartext HTTP/2 is not what browsers or proxies send to a backend.

use super::deadline::{Clock, Deadlined, Serving, Timeouts};
use super::limits::{ConnectionLimits, Refused};
use crate::config::HttpSettings;
use crate::edge::respond::EdgeError;
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::response::IntoResponse;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often at most a refused connection is logged (each refusal costs a client only a
/// handshake, so logging each would let it flood the log).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Requests being answered and answered, counted as they start and as hyper is done with their
/// response.
#[derive(Debug, Default)]
pub struct Requests {
    started: AtomicU64,
    finished: AtomicU64,
}

impl Requests {
    /// Requests being answered now.
    pub fn in_flight(&self) -> u64 {
        // `finished` first: read the other way round, a request that ends between the reads could
        // make it larger than `started`.
        let finished = self.finished.load(Ordering::Acquire);
        self.started.load(Ordering::Acquire).saturating_sub(finished)
    }

    fn finished(&self) -> u64 {
        self.finished.load(Ordering::Acquire)
    }

    fn start(self: &Arc<Self>) -> Answering {
        self.started.fetch_add(1, Ordering::AcqRel);
        Answering(self.clone())
    }
}

/// One request being answered, until dropped.
struct Answering(Arc<Requests>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::AcqRel);
    }
}

/// How the requests in flight at a stop ended.
#[derive(Clone, Copy, Debug, Default)]
pub struct Drained {
    /// Answered during the stop.
    pub finished: u64,
    /// Still in flight at the deadline: their connections were closed.
    pub cut: u64,
}

impl std::ops::Add for Drained {
    type Output = Drained;

    fn add(self, other: Drained) -> Drained {
        Drained { finished: self.finished + other.finished, cut: self.cut + other.cut }
    }
}

/// Serves `router` on `listener` until `stop` resolves with a deadline, then closes the listener
/// and waits until every connection has finished its request in flight and closed, or until the
/// deadline, when it closes those still open. `requests` counts the requests as they go.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: &HttpSettings,
    requests: Arc<Requests>,
    stop: impl Future<Output = Instant>,
) -> std::io::Result<Drained> {
    let limits = ConnectionLimits::new(
        settings.max_connections as usize,
        settings.max_connections_per_client as usize,
    );
    let timeouts = Timeouts { header_read: settings.header_read_timeout.0, idle: settings.idle_timeout.0 };
    let max_url_length = usize::try_from(settings.max_url_length.bytes()).unwrap_or(usize::MAX);
    let builder = builder(settings);
    let service = TowerToHyperService::new(router);
    let graceful = GracefulShutdown::new();
    let (cut, cutting) = watch::channel(false);
    let mut refusals = RefusalLog::default();
    tokio::pin!(stop);
    let deadline = loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            deadline = &mut stop => break deadline,
        };
        let slot = match limits.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                refusals.refused(refused);
                continue;
            }
        };
        let clock = Clock::start(timeouts);
        let io = TokioIo::new(Deadlined::new(stream, clock.clone()));
        let service = Bounded { inner: service.clone(), clock, max_url_length, requests: requests.clone() };
        let connection = graceful.watch(builder.serve_connection(io, service));
        let mut cutting = cutting.clone();
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => if let Err(error) = ended {
                    tracing::debug!(%peer, "connection ended: {error}");
                },
                _ = cutting.wait_for(|cut| *cut) => tracing::debug!(%peer, "connection closed at the stop's deadline"),
            }
            drop(slot);
        });
    };
    drop(listener);
    let finished_before = requests.finished();
    let closed = graceful.shutdown();
    tokio::pin!(closed);
    let mut drained = Drained::default();
    if tokio::time::timeout_at(deadline, &mut closed).await.is_err() {
        drained.cut = requests.in_flight();
        let _ = cut.send(true);
        closed.await;
    }
    drained.finished = (requests.finished() - finished_before).saturating_sub(drained.cut);
    Ok(drained)
}

/// hyper's HTTP/1 settings from the node's: its header-read timer is off, since `deadline`
/// keeps the head and idle phases apart.
fn builder(settings: &HttpSettings) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .header_read_timeout(None)
        .max_headers(settings.max_headers as usize)
        .max_header_size(usize::try_from(settings.max_header_bytes.bytes()).unwrap_or(usize::MAX));
    builder
}

/// An accept that failed: a client that gave up is nothing; a resource the process ran out of
/// (file descriptors, memory) gets a pause, or the loop would spin on it.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!("cannot accept a connection: {error}; pausing for a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Logs refused connections now and then, with how many were refused since the last line.
#[derive(Default)]
struct RefusalLog {
    since_last: u64,
    last: Option<Instant>,
}

impl RefusalLog {
    fn refused(&mut self, refused: Refused) {
        self.since_last += 1;
        if self.last.is_some_and(|last| last.elapsed() < REFUSAL_LOG_EVERY) {
            return;
        }
        tracing::warn!(refused = self.since_last, "closed a new connection at once: {refused}");
        self.since_last = 0;
        self.last = Some(Instant::now());
    }
}

/// The router as one connection's service: tells the connection's clock when a request starts
/// and when its response is done, and refuses a URL over `max_url_length`.
#[derive(Clone)]
struct Bounded {
    inner: TowerToHyperService<Router>,
    clock: Arc<Clock>,
    max_url_length: usize,
    requests: Arc<Requests>,
}

type Responding = Pin<Box<dyn Future<Output = Result<Response<Tracked>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Bounded {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = Responding;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let serving = (self.clock.request_started(), self.requests.start());
        let track = move |response: Response<Body>| response.map(|body| Tracked { body, _serving: serving });
        if target_length(request.uri()) > self.max_url_length {
            let refused = EdgeError::UrlTooLong(self.max_url_length).into_response();
            return Box::pin(std::future::ready(Ok(track(refused))));
        }
        let response = hyper::service::Service::call(&self.inner, request);
        Box::pin(async move { response.await.map(track) })
    }
}

/// Length of a request target as sent: the path and query, or the whole absolute URL.
fn target_length(uri: &Uri) -> usize {
    let path_and_query = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => {
            scheme.len() + "://".len() + authority.as_str().len() + path_and_query
        }
        (_, Some(authority)) => authority.as_str().len() + path_and_query,
        _ => path_and_query,
    }
}

/// A response body that holds its request's [`Serving`] and place in [`Requests`] until hyper
/// is done with it.
struct Tracked {
    body: Body,
    _serving: (Serving, Answering),
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_measured_as_sent() {
        for (target, length) in [
            ("/", 1),
            ("/acme/hello?name=ada", 20),
            ("http://example.com/x?y", 22),
            ("example.com:443", 15),
            ("*", 1),
        ] {
            let uri: Uri = target.parse().unwrap();
            assert_eq!(target_length(&uri), length, "{target}");
        }
    }
}
