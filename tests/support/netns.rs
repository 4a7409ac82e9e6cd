//! A network namespace made by a test, joined to the test's own namespace by one veth
//! pair: a node started in it is another host as far as the network goes, and the link
//! can be cut (`ip link set down`) and restored. Needs root and `ip` (iproute2), as the
//! fault tests do; everything is removed when the value is dropped.

use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Namespaces made by this test process so far: each gets its own names and subnet.
static MADE: AtomicU32 = AtomicU32::new(0);

/// One namespace and its link.
pub struct Netns {
    pub name: String,
    /// The veth end in the test's namespace: cutting it cuts the link.
    host_if: String,
    /// The address on the test's side and inside the namespace.
    pub host_ip: IpAddr,
    pub ip: IpAddr,
}

/// Runs `ip ARGS` (iproute2), failing the test with its words if it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// A namespace with a /30 link to the test's namespace.
    pub fn new() -> Netns {
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let name = format!("lh{tag}");
        let (host_if, ns_if) = (format!("lhh{tag}"), format!("lhn{tag}"));
        // A /30 in 10.123.0.0/16: the third byte from the process id, the fourth from
        // the count (test binaries run one after another; tests in one run in threads).
        let (third, fourth) = (std::process::id() % 250 + 1, (n % 64) * 4);
        let host_ip: IpAddr = format!("10.123.{third}.{}", fourth + 1).parse().unwrap();
        let ns_ip: IpAddr = format!("10.123.{third}.{}", fourth + 2).parse().unwrap();
        ip(&["netns", "add", &name]);
        let made = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
            host_ip,
            ip: ns_ip,
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            &ns_if,
        ]);
        ip(&["-n", &name, "link", "set", &ns_if, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        made
    }

    /// Cuts the link: nothing crosses it either way until [`Netns::restore`].
    pub fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]);
    }

    pub fn restore(&self) {
        ip(&["link", "set", &self.host_if, "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}
