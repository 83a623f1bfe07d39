//! Counts a node's open connections, in total and per client address, and refuses a connection
//! past either cap. Knows nothing of HTTP; never blocks (a refused connection is closed by the
//! caller at once, so a flood cannot queue up behind the cap).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// Who a per-client cap counts: an IPv4 address, or the /64 network of an IPv6 one (a single
/// subscriber usually holds a whole /64, so counting addresses would let it open billions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl Client {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => Self(IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX)))),
            },
            v4 => Self(v4),
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V6(network) => write!(f, "{network}/64"),
            IpAddr::V4(address) => write!(f, "{address}"),
        }
    }
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the node is at http.maxConnections ({0} open)")]
    Total(usize),
    #[error("{client} is at http.maxConnectionsPerClient ({max} open)")]
    PerClient { client: Client, max: usize },
}

/// The caps and what is open now.
pub struct ConnectionLimits {
    max_total: usize,
    max_per_client: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_client: HashMap<Client, usize>,
}

/// A connection's place under the caps, given back when dropped.
pub struct Slot {
    limits: Arc<ConnectionLimits>,
    client: Client,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self { max_total, max_per_client, open: Mutex::default() })
    }

    /// A place for a new connection from `ip`, unless the node or that client is at its cap.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let client = Client::of(ip);
        let mut open = self.open.lock().expect("connection limits lock");
        if open.total >= self.max_total {
            return Err(Refused::Total(self.max_total));
        }
        let of_client = open.per_client.entry(client).or_default();
        if *of_client >= self.max_per_client {
            return Err(Refused::PerClient { client, max: self.max_per_client });
        }
        *of_client += 1;
        open.total += 1;
        Ok(Slot { limits: self.clone(), client })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().expect("connection limits lock");
        open.total -= 1;
        if let Some(count) = open.per_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.per_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_client_gets_its_cap_and_a_place_again_when_one_closes() {
        let limits = ConnectionLimits::new(10, 2);
        let first = limits.admit(ip("192.0.2.1")).unwrap();
        let _second = limits.admit(ip("192.0.2.1")).unwrap();
        let refused = limits.admit(ip("192.0.2.1")).err().unwrap();
        assert_eq!(refused.to_string(), "192.0.2.1 is at http.maxConnectionsPerClient (2 open)");
        let _other = limits.admit(ip("192.0.2.2")).expect("another client is not affected");
        drop(first);
        let _again = limits.admit(ip("192.0.2.1")).expect("a place again once one closed");
        assert_eq!(limits.open.lock().unwrap().total, 3);
    }

    #[test]
    fn the_node_gets_its_total_cap_whoever_asks() {
        let limits = ConnectionLimits::new(2, 2);
        let first = limits.admit(ip("192.0.2.1")).unwrap();
        let _second = limits.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(limits.admit(ip("192.0.2.3")).err(), Some(Refused::Total(2)));
        drop(first);
        let _third = limits.admit(ip("192.0.2.3")).unwrap();
        assert_eq!(limits.open.lock().unwrap().total, 2);
        assert!(limits.open.lock().unwrap().per_client.len() == 2, "a client with nothing open is forgotten");
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_client_its_address() {
        let limits = ConnectionLimits::new(10, 1);
        let _one = limits.admit(ip("2001:db8:1:2::1")).unwrap();
        let refused = limits.admit(ip("2001:db8:1:2:ffff::9")).err().unwrap();
        assert_eq!(refused.to_string(), "2001:db8:1:2::/64 is at http.maxConnectionsPerClient (1 open)");
        let _next_network = limits.admit(ip("2001:db8:1:3::1")).unwrap();
        let _v4 = limits.admit(ip("192.0.2.7")).unwrap();
        assert!(limits.admit(ip("::ffff:192.0.2.7")).is_err(), "the same IPv4 client");
    }
}
