//! TUN devices created inside named network namespaces, and their configuration.
//!
//! The emulator sits between two namespaces (say the encoder's and the origin's) as a
//! point-to-point link: one TUN device in each, whose IP packets this process reads and
//! writes. A TUN device belongs to the namespace of the thread that creates it, and the
//! file descriptor stays bound to that device after the thread leaves, so each device is
//! created on a short-lived thread that first joins the namespace with `setns` (the
//! caller's threads never change namespace). The devices are not persistent: they vanish
//! when this process closes the descriptors or exits, so nothing is left behind.
//!
//! Checked on this project's test kernel (6.18, no `sch_netem`): a device created this
//! way shows in `ip -n NS link`, not in the caller's namespace, and carries traffic.
//! Addresses and link state are set with iproute2 (`ip -n NS ...`).

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;

use thiserror::Error;

/// Linux `IFNAMSIZ` (16) less the terminating NUL.
const MAX_NAME_LEN: usize = 15;

/// What went wrong creating or configuring a device.
#[derive(Debug, Error)]
pub enum TunError {
    #[error("device name `{0}` must be 1 to 15 characters without '/', ':' or whitespace")]
    BadDeviceName(String),
    #[error("namespace name `{0}` must be non-empty, without '/', and not '.' or '..'")]
    BadNetnsName(String),
    #[error("cannot open namespace `{netns}` at /var/run/netns/{netns} (create it with `ip netns add {netns}`): {error}")]
    OpenNetns { netns: String, error: io::Error },
    #[error("cannot enter namespace `{netns}` with setns (needs CAP_SYS_ADMIN): {error}")]
    Setns { netns: String, error: io::Error },
    #[error("cannot open /dev/net/tun (is the tun module loaded?): {error}")]
    OpenTun { error: io::Error },
    #[error("cannot create TUN device `{dev}` in namespace `{netns}` (TUNSETIFF; does it exist already?): {error}")]
    Create {
        dev: String,
        netns: String,
        error: io::Error,
    },
    #[error("the thread creating `{dev}` in namespace `{netns}` died")]
    ThreadDied { dev: String, netns: String },
    #[error("cannot run `{command}` (is iproute2 installed?): {error}")]
    Spawn { command: String, error: io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// A TUN device (`IFF_TUN | IFF_NO_PI`: bare IP packets) in a namespace, non-blocking.
#[derive(Debug)]
pub struct Tun {
    fd: OwnedFd,
    dev: String,
    netns: String,
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags (a short) at the start
/// of a 24-byte union.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn check_names(netns: &str, dev: &str) -> Result<(), TunError> {
    if dev.is_empty()
        || dev.len() > MAX_NAME_LEN
        || dev
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
    {
        return Err(TunError::BadDeviceName(dev.to_owned()));
    }
    if netns.is_empty()
        || netns.contains('/')
        || netns.contains('\0')
        || netns == "."
        || netns == ".."
    {
        return Err(TunError::BadNetnsName(netns.to_owned()));
    }
    Ok(())
}

/// On the calling thread: enter `netns` and create the device there.
fn create_here(netns: &str, dev: &str) -> Result<OwnedFd, TunError> {
    let ns =
        File::open(format!("/var/run/netns/{netns}")).map_err(|error| TunError::OpenNetns {
            netns: netns.to_owned(),
            error,
        })?;
    // SAFETY: `ns` is an open namespace file; setns only changes this thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(TunError::Setns {
            netns: netns.to_owned(),
            error: io::Error::last_os_error(),
        });
    }
    // SAFETY: a plain open(2) of a NUL-terminated path.
    let raw = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if raw < 0 {
        return Err(TunError::OpenTun {
            error: io::Error::last_os_error(),
        });
    }
    // SAFETY: `raw` was just opened and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = IfReq {
        name: [0; 16],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..dev.len()].copy_from_slice(dev.as_bytes());
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `IfReq` lays out.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) } < 0 {
        return Err(TunError::Create {
            dev: dev.to_owned(),
            netns: netns.to_owned(),
            error: io::Error::last_os_error(),
        });
    }
    Ok(fd)
}

fn ip(args: &[&str]) -> Result<(), TunError> {
    let command = format!("ip {}", args.join(" "));
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|error| TunError::Spawn {
            command: command.clone(),
            error,
        })?;
    if !output.status.success() {
        return Err(TunError::Command {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

impl Tun {
    /// Creates device `dev` in the existing namespace `netns` (from `ip netns add`),
    /// without changing the namespace of any thread but a short-lived helper.
    pub fn create(netns: &str, dev: &str) -> Result<Tun, TunError> {
        check_names(netns, dev)?;
        let (ns, name) = (netns.to_owned(), dev.to_owned());
        let fd = std::thread::spawn(move || create_here(&ns, &name))
            .join()
            .map_err(|_| TunError::ThreadDied {
                dev: dev.to_owned(),
                netns: netns.to_owned(),
            })??;
        Ok(Tun {
            fd,
            dev: dev.to_owned(),
            netns: netns.to_owned(),
        })
    }

    /// Point-to-point addressing (`local` here, `peer` on the other side, a /32 route to
    /// the peer), no IPv6 link-local address (so the kernel sends no router or multicast
    /// chatter through the emulator), a 1000-packet transmit queue (the TUN default of 500
    /// is a 6 ms burst at 1 Gbit/s), then up with `mtu`.
    pub fn configure(&self, local: Ipv4Addr, peer: Ipv4Addr, mtu: u32) -> Result<(), TunError> {
        let (ns, dev) = (self.netns.as_str(), self.dev.as_str());
        let (local, peer, mtu) = (local.to_string(), peer.to_string(), mtu.to_string());
        ip(&["-n", ns, "link", "set", dev, "addrgenmode", "none"])?;
        ip(&["-n", ns, "addr", "add", &local, "peer", &peer, "dev", dev])?;
        ip(&["-n", ns, "link", "set", dev, "txqueuelen", "1000"])?;
        ip(&["-n", ns, "link", "set", dev, "up", "mtu", &mtu])
    }

    pub fn name(&self) -> &str {
        &self.dev
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// One packet into `buf`; `WouldBlock` when none is waiting. A packet longer than
    /// `buf` is truncated by the kernel, so give a buffer of at least the MTU.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for `buf.len()` bytes of writing.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Injects one packet into this device's namespace as if it had arrived on the wire.
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        // SAFETY: `packet` is valid for `packet.len()` bytes of reading.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_syscall() {
        assert!(matches!(
            check_names("ns", ""),
            Err(TunError::BadDeviceName(_))
        ));
        assert!(matches!(
            check_names("ns", "sixteen-chars-xx"),
            Err(TunError::BadDeviceName(_))
        ));
        assert!(matches!(
            check_names("ns", "a b"),
            Err(TunError::BadDeviceName(_))
        ));
        assert!(matches!(
            check_names("../x", "lh0"),
            Err(TunError::BadNetnsName(_))
        ));
        assert!(matches!(
            check_names("", "lh0"),
            Err(TunError::BadNetnsName(_))
        ));
        assert!(check_names("lhwan-a", "fifteen-chars-x").is_ok());
    }
}
