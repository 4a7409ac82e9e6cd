//! Connections open per client address, all RTMP/RTMPS listeners of a node together
//! (`ingest.max_connections_per_address`), so that one host cannot take the node's whole
//! connection cap (`ingest.max_connections`) for itself.
//!
//! The address is the client's real one: the PROXY header's when the node is behind a
//! load balancer (`crate::proxy_header`). An IPv6 address counts for its /64, as in
//! [`crate::abuse`]: one host may use any address of its /64 at will.
//!
//! Bookkeeping only: [`AddressLimit::try_open`] hands out an [`AddressSlot`] that gives
//! its place back when dropped, on every path out of a connection. One plain mutex around
//! a map of the addresses with connections open: no entry outlives its last connection,
//! so the map is never larger than the connections open.

use crate::abuse::Source;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Refused: `addr` already has `max` connections open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{addr} already has {max} connections open (ingest.max_connections_per_address)")]
pub struct TooManyFromAddress {
    /// The address, or the IPv6 /64.
    pub addr: Source,
    pub max: usize,
}

/// How many connections each address has open, and the most it may.
#[derive(Clone, Debug)]
pub struct AddressLimit {
    max: usize,
    open: Arc<Mutex<HashMap<Source, usize>>>,
}

impl AddressLimit {
    /// At most `max` connections per address (IPv6: per /64).
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// A place for one more connection from `addr`, or why not.
    pub fn try_open(&self, addr: IpAddr) -> Result<AddressSlot, TooManyFromAddress> {
        let source = Source::of(addr);
        let mut open = lock(&self.open);
        let count = open.entry(source).or_insert(0);
        if *count >= self.max {
            if *count == 0 {
                open.remove(&source);
            }
            return Err(TooManyFromAddress {
                addr: source,
                max: self.max,
            });
        }
        *count += 1;
        Ok(AddressSlot {
            source,
            open: self.open.clone(),
        })
    }

    /// Connections open now from `addr`'s source.
    pub fn open_from(&self, addr: IpAddr) -> usize {
        lock(&self.open)
            .get(&Source::of(addr))
            .copied()
            .unwrap_or(0)
    }

    /// Sources with connections open now.
    pub fn sources(&self) -> usize {
        lock(&self.open).len()
    }
}

/// One connection's place in its address's count, given back when dropped.
#[derive(Debug)]
pub struct AddressSlot {
    source: Source,
    open: Arc<Mutex<HashMap<Source, usize>>>,
}

impl AddressSlot {
    /// The address (IPv6: the /64) this connection counts for.
    pub fn source(&self) -> Source {
        self.source
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(count) = open.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.source);
            }
        }
    }
}

/// The map, even if a thread panicked holding it: every update leaves it consistent, and
/// refusing every connection for a poisoned lock would be worse.
fn lock(open: &Mutex<HashMap<Source, usize>>) -> MutexGuard<'_, HashMap<Source, usize>> {
    open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn counts_per_address_up_to_the_limit_and_gives_places_back() {
        let limit = AddressLimit::new(2);
        let a = ip("203.0.113.7");
        let first = limit.try_open(a).expect("1 of 2");
        let second = limit.try_open(a).expect("2 of 2");
        let refused = limit.try_open(a).expect_err("3 of 2");
        assert_eq!(
            refused.to_string(),
            "203.0.113.7 already has 2 connections open (ingest.max_connections_per_address)"
        );
        // Another address is counted on its own.
        let other = limit.try_open(ip("203.0.113.8")).expect("another address");
        assert_eq!((limit.open_from(a), limit.sources()), (2, 2));
        drop(first);
        assert_eq!(limit.open_from(a), 1);
        let third = limit.try_open(a).expect("a place was given back");
        drop((second, third, other));
        assert_eq!(limit.sources(), 0, "no entry outlives its connections");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let limit = AddressLimit::new(2);
        let _a = limit.try_open(ip("2001:db8:1:2::1")).expect("1");
        let _b = limit
            .try_open(ip("2001:db8:1:2:aaaa::9"))
            .expect("2, same /64");
        let refused = limit
            .try_open(ip("2001:db8:1:2:ffff::1"))
            .expect_err("3 in the /64");
        assert_eq!(refused.addr.to_string(), "2001:db8:1:2::/64");
        let _c = limit
            .try_open(ip("2001:db8:1:3::1"))
            .expect("the next /64 is another source");
        let _d = limit.try_open(ip("192.0.2.1")).expect("1");
        let _e = limit
            .try_open(ip("::ffff:192.0.2.1"))
            .expect("2, the same IPv4");
        limit
            .try_open(ip("192.0.2.1"))
            .expect_err("3 of the IPv4 address");
    }

    #[test]
    fn a_refusal_leaves_nothing_behind() {
        let limit = AddressLimit::new(1);
        let slot = limit.try_open(ip("198.51.100.1")).expect("1");
        for _ in 0..10 {
            limit.try_open(ip("198.51.100.1")).expect_err("full");
        }
        drop(slot);
        assert_eq!(limit.sources(), 0);
        let clones = limit.clone();
        let _slot = clones
            .try_open(ip("198.51.100.1"))
            .expect("clones share the count");
        limit.try_open(ip("198.51.100.1")).expect_err("full again");
    }
}
