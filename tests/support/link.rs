//! A TCP link between a node and a nats-server that a test can cut and mend, as a network
//! partition would: it relays bytes both ways until [`Link::cut`], which closes every connection
//! through it and refuses new ones; [`Link::mend`] accepts again on the same port. (The test
//! clusters set `no_advertise`, so a client given the link's URL learns no other way in.)

use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

pub struct Link {
    port: u16,
    target: SocketAddr,
    relay: Option<JoinHandle<()>>,
}

impl Link {
    /// A link to the server at `target` (a `nats://host:port` URL), on a port of its own.
    pub async fn open(target: &str) -> Self {
        let target = target.trim_start_matches("nats://").parse().expect("a nats://127.0.0.1:port URL");
        let [port] = super::nats::free_ports(1).try_into().unwrap();
        let mut link = Self { port, target, relay: None };
        link.mend().await;
        link
    }

    /// The URL a node connects to through the link.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Closes every connection through the link and refuses new ones.
    pub fn cut(&mut self) {
        self.relay.take().expect("the link is up").abort();
    }

    /// Accepts connections again.
    pub async fn mend(&mut self) {
        assert!(self.relay.is_none(), "the link is up");
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.expect("bind the link's port");
        self.relay = Some(tokio::spawn(relay(listener, self.target)));
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(relay) = self.relay.take() {
            relay.abort();
        }
    }
}

/// Relays every accepted connection to `target`; aborting it drops the connections' tasks, and
/// with them their sockets.
async fn relay(listener: TcpListener, target: SocketAddr) {
    let mut connections = JoinSet::new();
    while let Ok((mut inbound, _)) = listener.accept().await {
        connections.spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
        while connections.try_join_next().is_some() {}
    }
}
