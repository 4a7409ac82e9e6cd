//! A node-wide budget for the memory held by RTMP connections not yet authorised
//! (`ingest.unauthorised_memory_bytes`): what strangers can make the node hold before
//! anyone has checked who they are.
//!
//! Each connection may make its session hold up to the pre-publish decoder limits
//! (`longhaul_rtmp::server::pre_publish_limits`: 1 MiB of partial messages, counted by
//! their declared lengths) until a publish or a play is accepted. That bound is per
//! connection: 10,000 connections (the default `ingest.max_connections`) that each send
//! the start of a 1 MiB message and then nothing pin 10 GiB for a handshake timeout,
//! then reconnect. The budget bounds the sum.
//!
//! How it is charged: what a connection holds is measured after each read
//! (`ServerSession::buffered_bytes`: unparsed input, partial messages, media held for an
//! unanswered publish) and its [`Charge`] set to it. Growth the budget has no room for is
//! refused, and the driver closes that connection (`unauthorised_memory`). The charge goes
//! back when the connection is authorised or ends (the charge is dropped). Charging what
//! is held, not each connection's worst case up front, is what keeps honest clients out
//! of it: an encoder's `connect` and `publish` arrive whole within a read, so between
//! reads it holds nothing and is never refused, even while an attack has the budget full.
//! Only a connection that holds partial messages across reads competes for it. The peak
//! within one read is not charged: a read goes into the session's block, 4 KiB of room
//! (`longhaul_rtmp::server::READ_BLOCK`) unless what the connection held already made
//! it larger, per connection being processed at that moment.
//!
//! Not counted: the buffers every connection has whatever it sends (its 4 KiB read
//! block, a TLS session's record buffers), which `ingest.max_connections` bounds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Growth the budget had no room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "connections not yet authorised hold {used} bytes; {wanted} more would pass the \
     {limit}-byte budget (ingest.unauthorised_memory_bytes)"
)]
pub struct BudgetExhausted {
    pub used: usize,
    pub wanted: usize,
    pub limit: usize,
}

/// The budget, shared by every connection of a node.
#[derive(Clone, Debug)]
pub struct UnauthorisedBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: usize,
    used: AtomicUsize,
}

impl UnauthorisedBudget {
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit,
                used: AtomicUsize::new(0),
            }),
        }
    }

    /// A new connection's charge, holding nothing yet.
    pub fn charge(&self) -> Charge {
        Charge {
            budget: self.clone(),
            held: 0,
        }
    }

    /// Bytes charged now, all connections together.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.inner.limit
    }
}

/// What one unauthorised connection holds, charged to the budget until dropped.
#[derive(Debug)]
pub struct Charge {
    budget: UnauthorisedBudget,
    held: usize,
}

impl Charge {
    /// The connection holds `bytes` now. Shrinking always succeeds; growth succeeds if the
    /// budget has room for it, else the charge stays as it was and the connection is to be
    /// closed.
    pub fn set(&mut self, bytes: usize) -> Result<(), BudgetExhausted> {
        let inner = &self.budget.inner;
        if bytes <= self.held {
            inner.used.fetch_sub(self.held - bytes, Ordering::Relaxed);
            self.held = bytes;
            return Ok(());
        }
        let wanted = bytes - self.held;
        inner
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(wanted).filter(|&n| n <= inner.limit)
            })
            .map_err(|used| BudgetExhausted {
                used,
                wanted,
                limit: inner.limit,
            })?;
        self.held = bytes;
        Ok(())
    }

    /// Bytes this connection is charged for.
    pub fn held(&self) -> usize {
        self.held
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget
            .inner
            .used
            .fetch_sub(self.held, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_grow_and_shrink_within_the_budget_and_go_back_when_dropped() {
        let budget = UnauthorisedBudget::new(1000);
        let mut a = budget.charge();
        let mut b = budget.charge();
        a.set(600).expect("room");
        b.set(400).expect("exactly full");
        assert_eq!(budget.used(), 1000);
        let refused = b.set(401).expect_err("one byte over");
        assert_eq!(
            refused,
            BudgetExhausted {
                used: 1000,
                wanted: 1,
                limit: 1000
            }
        );
        assert_eq!(
            b.held(),
            400,
            "a refused growth leaves the charge as it was"
        );
        a.set(100).expect("shrinking");
        b.set(900).expect("room again");
        assert_eq!(budget.used(), 1000);
        drop(a);
        assert_eq!(budget.used(), 900);
        b.set(0).expect("authorised: nothing held");
        assert_eq!(budget.used(), 0);
        b.set(50).expect("room");
        drop(b);
        assert_eq!(budget.used(), 0, "dropped: every byte given back");
    }

    #[test]
    fn growth_past_the_limit_in_one_step_is_refused() {
        let budget = UnauthorisedBudget::new(1 << 20);
        let mut c = budget.charge();
        assert!(c.set(usize::MAX).is_err(), "no overflow");
        assert!(c.set((1 << 20) + 1).is_err());
        assert_eq!((c.held(), budget.used()), (0, 0));
    }

    #[test]
    fn concurrent_charges_never_pass_the_limit() {
        let budget = UnauthorisedBudget::new(10_000);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let budget = budget.clone();
                std::thread::spawn(move || {
                    let mut charges: Vec<Charge> = (0..100).map(|_| budget.charge()).collect();
                    for round in 0..200 {
                        for (i, c) in charges.iter_mut().enumerate() {
                            let _ = c.set((round * 7 + i * 13) % 97);
                            assert!(budget.used() <= 10_000);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        assert_eq!(budget.used(), 0);
    }
}
