//! The hosts of a fault test: the edge and both origins each in a network namespace of
//! its own, as three machines would be. Each namespace has a veth link to the test's
//! namespace, where the encoders and players run (they reach the nodes there, as
//! encoders near the edge and viewers near the origins would). The edge reaches each
//! origin over a WAN link of the project's emulator (`longhaul-wan`, run in the test's
//! process), with a one-way delay: 40 ms makes the 80 ms round trip the failover goal is
//! set at. Cutting a WAN link cuts the edge from that origin and nothing else.
//!
//! ```text
//!             encoders, players (the test's namespace)
//!              │ veth            │ veth            │ veth
//!            edge ══ WAN ══════ pao               nyc
//!              ╚════════════ WAN ══════════════════╝
//! ```
//!
//! Needs root, `ip` (iproute2) and /dev/net/tun; everything is removed when dropped.

use super::netns::{ip, Netns};
use longhaul_wan::link::{self, Finished};
use longhaul_wan::tun::Tun;
use longhaul_wan::{Direction, Spec};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// WAN links made by this test process so far: each gets its own devices and addresses.
static LINKS: AtomicU32 = AtomicU32::new(0);

/// One WAN link between the edge's namespace and an origin's, forwarded by two threads
/// of `longhaul-wan`'s pump until dropped.
pub struct WanLink {
    stop: Arc<AtomicBool>,
    pumps: Vec<JoinHandle<Finished>>,
    /// The origin's address on the link: where the edge reaches it.
    pub origin_ip: IpAddr,
    /// The edge's address on the link (the first namespace's: on a link between two
    /// origins, where the second reaches the first).
    pub edge_ip: IpAddr,
    origin_ns: String,
    origin_dev: String,
}

impl WanLink {
    /// A link from `edge`'s namespace to `origin`'s, each way delayed by `one_way`.
    pub fn new(edge: &Netns, origin: &Netns, one_way: Duration) -> WanLink {
        let n = LINKS.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let (edge_dev, origin_dev) = (format!("lwe{tag}"), format!("lwo{tag}"));
        // Point-to-point /32s in 10.124.0.0/16, numbered as `Netns` numbers its links in
        // 10.123.0.0/16.
        let (third, fourth) = (std::process::id() % 250 + 1, (n % 64) * 4);
        let edge_ip = Ipv4Addr::new(10, 124, third as u8, (fourth + 1) as u8);
        let origin_ip = Ipv4Addr::new(10, 124, third as u8, (fourth + 2) as u8);
        let a = Arc::new(Tun::create(&edge.name, &edge_dev).expect("the edge's WAN device"));
        let b = Arc::new(Tun::create(&origin.name, &origin_dev).expect("the origin's WAN device"));
        a.configure(edge_ip, origin_ip, 1500)
            .expect("the edge's WAN device");
        b.configure(origin_ip, edge_ip, 1500)
            .expect("the origin's WAN device");
        let spec = Spec::parse(&format!("delay={}us", one_way.as_micros()))
            .and_then(|s| s.resolve())
            .expect("a WAN spec");
        let stop = Arc::new(AtomicBool::new(false));
        let pumps = vec![
            link::spawn(
                "edge-to-origin",
                a.clone(),
                b.clone(),
                Direction::new(spec.clone(), 1),
                stop.clone(),
            )
            .expect("a WAN pump"),
            link::spawn(
                "origin-to-edge",
                b,
                a,
                Direction::new(spec, 2),
                stop.clone(),
            )
            .expect("a WAN pump"),
        ];
        WanLink {
            stop,
            pumps,
            origin_ip: IpAddr::V4(origin_ip),
            edge_ip: IpAddr::V4(edge_ip),
            origin_ns: origin.name.clone(),
            origin_dev,
        }
    }

    /// Cuts the link at the origin's end: what the edge sends is lost on the way, and the
    /// origin has no route back, so neither side hears from the other, as on a real cut.
    pub fn cut(&self) {
        ip(&[
            "-n",
            &self.origin_ns,
            "link",
            "set",
            &self.origin_dev,
            "down",
        ]);
    }

    /// Brings the link back (the route to the edge comes back with the device).
    pub fn restore(&self) {
        ip(&["-n", &self.origin_ns, "link", "set", &self.origin_dev, "up"]);
    }
}

impl Drop for WanLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for pump in self.pumps.drain(..) {
            let _ = pump.join();
        }
    }
}

/// The edge, pao and nyc on hosts of their own (see the module docs).
pub struct Hosts {
    // The links first: dropped (their pumps stopped) before the namespaces go.
    pub edge_to_pao: WanLink,
    pub edge_to_nyc: WanLink,
    pub edge: Netns,
    pub pao: Netns,
    pub nyc: Netns,
}

/// The one-way delay of the edge's WAN links: 40 ms each way is the 80 ms round trip
/// the failover goal (a gap of at most 1 s) is set at.
pub const WAN_ONE_WAY: Duration = Duration::from_millis(40);

impl Hosts {
    pub fn new() -> Hosts {
        let (edge, pao, nyc) = (Netns::new(), Netns::new(), Netns::new());
        let edge_to_pao = WanLink::new(&edge, &pao, WAN_ONE_WAY);
        let edge_to_nyc = WanLink::new(&edge, &nyc, WAN_ONE_WAY);
        Hosts {
            edge_to_pao,
            edge_to_nyc,
            edge,
            pao,
            nyc,
        }
    }
}
