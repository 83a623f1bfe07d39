//! Closes a connection whose client is slow between requests: a request head not complete
//! within `headerReadTimeout` (counted from the connection's start for its first request, from
//! the first byte of each later one), or no new request within `idleTimeout` of the last
//! response. While a request is served nothing here applies (the function's timeout and the
//! body read deadline do). hyper has one timer for both (`header_read_timeout`, which also runs
//! while a connection is idle); this keeps them apart, as Go and Envoy do. It knows nothing of
//! HTTP parsing: the service says when a request starts and when its response is done.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a client may take, per phase.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

/// Where a connection is between requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Receiving a request head: at most `header_read`.
    Head,
    /// Serving a request: no deadline here.
    Serving,
    /// Waiting for the next request: at most `idle`.
    Idle,
}

/// A connection's phase and since when, shared by its socket (which sees bytes arrive) and its
/// service (which sees requests start and responses end).
pub struct Clock {
    timeouts: Timeouts,
    state: Mutex<State>,
}

struct State {
    phase: Phase,
    since: Instant,
    /// The task that last waited to read, woken when the connection goes idle: hyper does not
    /// read again after a response on its own (only when its own header timer is on), so
    /// without the wake no read would arm the idle deadline.
    reader: Option<Waker>,
}

/// A request being served; its connection goes idle when this is dropped (after the response's
/// last byte, or when the request is abandoned).
pub struct Serving(Arc<Clock>);

impl Clock {
    /// The clock of a new connection, which owes its first request head from now.
    pub fn start(timeouts: Timeouts) -> Arc<Self> {
        let state = State { phase: Phase::Head, since: Instant::now(), reader: None };
        Arc::new(Self { timeouts, state: Mutex::new(state) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("connection clock lock")
    }

    /// A request head is complete: no deadline until the returned guard is dropped.
    pub fn request_started(self: &Arc<Self>) -> Serving {
        let mut state = self.state();
        (state.phase, state.since) = (Phase::Serving, Instant::now());
        Serving(self.clone())
    }

    /// Bytes arrived: on an idle connection they start the next request's head.
    fn bytes_arrived(&self) {
        let mut state = self.state();
        if state.phase == Phase::Idle {
            (state.phase, state.since) = (Phase::Head, Instant::now());
        }
    }

    /// When the current phase ends the connection, if it does; `reader` is woken when the
    /// connection goes idle.
    fn deadline(&self, reader: &Waker) -> Option<(Instant, Phase)> {
        let mut state = self.state();
        if !state.reader.as_ref().is_some_and(|known| known.will_wake(reader)) {
            state.reader = Some(reader.clone());
        }
        let limit = match state.phase {
            Phase::Head => self.timeouts.header_read,
            Phase::Idle => self.timeouts.idle,
            Phase::Serving => return None,
        };
        Some((state.since + limit, state.phase))
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let reader = {
            let mut state = self.0.state();
            (state.phase, state.since) = (Phase::Idle, Instant::now());
            state.reader.take()
        };
        if let Some(reader) = reader {
            reader.wake();
        }
    }
}

/// A socket whose reads end at its connection's deadline: an overdue request head is a
/// `TimedOut` error, and an idle connection past its time reads as closed by the client, which
/// hyper ends quietly.
pub struct Deadlined<T> {
    io: T,
    clock: Arc<Clock>,
    timer: Pin<Box<Sleep>>,
    armed_for: Instant,
}

impl<T> Deadlined<T> {
    pub fn new(io: T, clock: Arc<Clock>) -> Self {
        let now = Instant::now();
        Self { io, clock, timer: Box::pin(tokio::time::sleep_until(now)), armed_for: now }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Deadlined<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        if let Poll::Ready(read) = Pin::new(&mut this.io).poll_read(cx, buf) {
            if buf.filled().len() > before {
                this.clock.bytes_arrived();
            }
            return Poll::Ready(read);
        }
        let Some((deadline, phase)) = this.clock.deadline(cx.waker()) else { return Poll::Pending };
        if this.armed_for != deadline {
            this.timer.as_mut().reset(deadline);
            this.armed_for = deadline;
        }
        ready!(this.timer.as_mut().poll(cx));
        match phase {
            Phase::Idle => Poll::Ready(Ok(())),
            _ => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("request head not received within {:?}", this.clock.timeouts.header_read),
            ))),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Deadlined<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: Timeouts =
        Timeouts { header_read: Duration::from_secs(10), idle: Duration::from_secs(75) };

    #[test]
    fn each_phase_has_its_deadline_and_serving_has_none() {
        let clock = Clock::start(TIMEOUTS);
        let (deadline, phase) = clock.deadline(Waker::noop()).unwrap();
        assert_eq!(phase, Phase::Head, "a new connection owes its first head");
        assert!(deadline <= Instant::now() + TIMEOUTS.header_read);
        clock.bytes_arrived();
        assert_eq!(clock.deadline(Waker::noop()).unwrap().0, deadline, "bytes of a head do not extend it");

        let serving = clock.request_started();
        assert_eq!(clock.deadline(Waker::noop()), None);
        clock.bytes_arrived();
        assert_eq!(clock.deadline(Waker::noop()), None, "a body or a pipelined request while serving");

        drop(serving);
        let (idle_until, phase) = clock.deadline(Waker::noop()).unwrap();
        assert_eq!(phase, Phase::Idle);
        assert!(idle_until > Instant::now() + TIMEOUTS.header_read, "idle, not the head timeout");
        clock.bytes_arrived();
        assert_eq!(
            clock.deadline(Waker::noop()).unwrap().1,
            Phase::Head,
            "the first byte starts the next head"
        );
    }

    #[tokio::test]
    async fn an_overdue_head_is_an_error_and_an_idle_connection_reads_as_closed() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let short = Timeouts { header_read: Duration::from_millis(20), idle: Duration::from_millis(20) };
        let (server, mut client) = tokio::io::duplex(64);
        let clock = Clock::start(short);
        let mut socket = Deadlined::new(server, clock.clone());
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(socket.read(&mut buf).await.unwrap(), 16, "bytes pass through");
        let error = socket.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);

        drop(clock.request_started());
        assert_eq!(socket.read(&mut buf).await.unwrap(), 0, "idle past its time: end of stream");
    }
}
