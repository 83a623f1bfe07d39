//! HTTP/1.1 spoken by hand over TCP, for tests that need exact bytes on the wire or a client
//! that misbehaves (dribbles its headers, holds connections open): what an HTTP library never
//! sends.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A connection to `server` from the loopback address `from` (any of 127.0.0.0/8 works on
/// Linux, so a test can be several clients).
pub async fn connect_from(from: &str, server: SocketAddr) -> TcpStream {
    let from: IpAddr = from.parse().expect("a client address");
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind the client address");
    socket.connect(server).await.expect("connect")
}

/// A response read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// A GET of `target` with a Host header and `headers` (each `Name: value`).
pub fn get(target: &str, headers: &[String]) -> String {
    let mut head = format!("GET {target} HTTP/1.1\r\nHost: gojinn.test\r\n");
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// Sends `request` and reads its response: `None` if the server closed the connection without
/// answering.
pub async fn exchange(stream: &mut TcpStream, request: &str) -> Option<RawResponse> {
    if stream.write_all(request.as_bytes()).await.is_err() {
        return None;
    }
    read_response(stream).await
}

/// One response (a body by Content-Length, else to the end of the stream); `None` if the
/// connection closed before a whole head arrived. Fails the test after ten seconds.
pub async fn read_response(stream: &mut TcpStream) -> Option<RawResponse> {
    let read = async {
        let mut received = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
        let length = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
        });
        let mut body = received.split_off(head_end);
        while length.is_none_or(|length| body.len() < length) {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) if length.is_none() => break,
                Ok(0) | Err(_) => panic!("the connection closed inside a body: {head}"),
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        Some(RawResponse { status, head, body })
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("a response or a close within 10 s")
}

/// Waits until the server closes `stream` (a read returns end of stream or an error) and
/// returns what arrived before; fails the test if it is still open after `within`.
pub async fn closed_within(stream: &mut (impl AsyncRead + Unpin), within: Duration) -> Vec<u8> {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut chunk = [0u8; 8192];
    let closing = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    };
    if tokio::time::timeout(within, closing).await.is_err() {
        panic!("the server did not close the connection within {within:?} (open {:?})", started.elapsed());
    }
    received
}

/// Connects from `from` and sends `request` until the server answers it, for a place that frees
/// up asynchronously (a closed connection's slot). Fails the test after ten seconds.
pub async fn eventually_served(from: &str, server: SocketAddr, request: &str) -> (TcpStream, RawResponse) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = connect_from(from, server).await;
        if let Some(response) = exchange(&mut stream, request).await {
            return (stream, response);
        }
        assert!(Instant::now() < deadline, "{from} was not served again within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
