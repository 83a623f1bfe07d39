//! `gojinn-probe URL`: exits 0 when a plain-HTTP GET of `URL` answers 2xx within two seconds,
//! and 1 otherwise, saying why on stderr. It is the health check of the container image, which
//! has no shell and no curl; it only ever asks the node beside it on loopback, so it is std-only
//! (no TLS, no redirects, no body) and never more than that.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// Connect, send and answer deadline, each.
const TIMEOUT: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: gojinn-probe http://HOST:PORT/PATH");
        return ExitCode::from(2);
    };
    match probe(&url) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("gojinn-probe: {url}: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// GETs `url`; `Ok` when the status is 2xx.
fn probe(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs can be probed")?;
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, format!("/{path}")),
        None => (rest, "/".to_owned()),
    };
    let address = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} has no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&address, TIMEOUT).map_err(|e| format!("cannot connect: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| format!("cannot send the request: {e}"))?;
    // The status line is all that matters; a line longer than this is not one.
    let mut head = Vec::with_capacity(256);
    stream.take(256).read_to_end(&mut head).map_err(|e| format!("no answer: {e}"))?;
    let status_line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned();
    match status_line.split_whitespace().nth(1) {
        Some(code) if status_line.starts_with("HTTP/") && code.len() == 3 && code.starts_with('2') => Ok(()),
        Some(_) if status_line.starts_with("HTTP/") => Err(format!("answered {status_line}")),
        _ => Err(format!("answered something that is not HTTP: {status_line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::probe;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A one-shot server on loopback that answers `response` to the first request; its URL.
    fn answering(response: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut connection, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && connection.read(&mut byte).unwrap() == 1 {
                request.push(byte[0]);
            }
            connection.write_all(response.as_bytes()).unwrap();
        });
        format!("http://{address}/_gojinn/ready")
    }

    #[test]
    fn a_2xx_answer_is_healthy() {
        assert_eq!(probe(&answering("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")), Ok(()));
        assert_eq!(probe(&answering("HTTP/1.1 204 No Content\r\n\r\n")), Ok(()));
    }

    #[test]
    fn any_other_status_is_unhealthy_and_named() {
        let error = probe(&answering("HTTP/1.1 503 Service Unavailable\r\n\r\n")).unwrap_err();
        assert_eq!(error, "answered HTTP/1.1 503 Service Unavailable");
    }

    #[test]
    fn an_answer_that_is_not_http_is_unhealthy() {
        let error = probe(&answering("SSH-2.0-OpenSSH\r\n")).unwrap_err();
        assert!(error.contains("not HTTP"), "{error}");
    }

    #[test]
    fn a_closed_port_is_unhealthy() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let error = probe(&format!("http://127.0.0.1:{port}/")).unwrap_err();
        assert!(error.starts_with("cannot connect"), "{error}");
    }

    #[test]
    fn only_plain_http_urls_are_probed() {
        assert_eq!(probe("https://127.0.0.1/").unwrap_err(), "only http:// URLs can be probed");
    }
}
