//! The IO driver: one thread per direction moving packets between the two TUN devices
//! through that direction's [`Direction`].
//!
//! Threads rather than an async runtime because the work is two tight loops, each waiting
//! on one descriptor or one deadline: `ppoll(2)` takes a nanosecond timeout, so packets
//! leave within the kernel's timer slack (50 µs by default) of their due time, where a
//! tokio timer rounds to whole milliseconds, and there is no runtime to share the two
//! cores with the traffic being measured. Each thread owns its direction outright: no
//! locks on the packet path.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::direction::Direction;
use crate::tun::Tun;

/// Longest sleep without looking at the stop flag: bounds how long shutdown takes.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Packets read per wake-up before releasing due ones again: at 1500 bytes, 64 packets
/// are 0.8 ms at 1 Gbit/s, so a flood on the way in cannot hold back departures by more
/// than that.
const READ_BATCH: usize = 64;

/// Timer slack of the pump threads, nanoseconds. The default (50 µs) lets the kernel
/// fire a deadline up to 50 µs late on each hop; 1 µs costs no extra wake-ups (the
/// deadlines are ours) and leaves the kernel's own wake-up latency as the error.
const TIMER_SLACK_NS: libc::c_ulong = 1_000;

/// Large enough for any IP packet (the length field is 16 bits), so none is truncated.
const BUFFER_LEN: usize = 65_536;

/// What a pump thread hands back when it stops.
#[derive(Debug)]
pub struct Finished {
    pub direction: Direction,
    pub write_errors: u64,
    pub read_errors: u64,
    /// Why the thread stopped early, if it did (the device went away, `ppoll` failed).
    pub error: Option<String>,
}

/// Starts moving packets from `src` to `dst` through `direction` until `stop` is set.
/// A fatal error also sets `stop`, so the whole emulator shuts down rather than run
/// one-way.
pub fn spawn(
    name: &str,
    src: Arc<Tun>,
    dst: Arc<Tun>,
    direction: Direction,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<Finished>> {
    std::thread::Builder::new()
        .name(format!("wan-{name}"))
        .spawn(move || {
            let mut pump = Pump {
                src,
                dst,
                direction,
                write_errors: 0,
                read_errors: 0,
                failing: 0,
            };
            let error = pump.run(&stop).err().map(|e| e.to_string());
            if error.is_some() {
                stop.store(true, Ordering::Relaxed);
            }
            Finished {
                direction: pump.direction,
                write_errors: pump.write_errors,
                read_errors: pump.read_errors,
                error,
            }
        })
}

struct Pump {
    src: Arc<Tun>,
    dst: Arc<Tun>,
    direction: Direction,
    write_errors: u64,
    read_errors: u64,
    /// Read errors since the last good read.
    failing: u32,
}

impl Pump {
    fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer slack.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, TIMER_SLACK_NS) };
        let mut buf = vec![0u8; BUFFER_LEN];
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            while let Some(packet) = self.direction.poll_transmit(now) {
                // The kernel refuses malformed packets (EINVAL); count them and go on.
                if self.dst.send(&packet).is_err() {
                    self.write_errors += 1;
                }
            }
            let wait = self
                .direction
                .next_deadline()
                .map_or(STOP_CHECK, |at| at.saturating_duration_since(now))
                .min(STOP_CHECK);
            if self.wait_readable(wait)? {
                self.read_burst(&mut buf)?;
            }
        }
        Ok(())
    }

    /// Waits up to `wait` for a packet on `src`; `true` if one is there.
    fn wait_readable(&self, wait: Duration) -> io::Result<bool> {
        let mut fds = libc::pollfd {
            fd: self.src.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: one valid pollfd, a valid timespec, no signal mask change.
        let n = unsafe { libc::ppoll(&mut fds, 1, &timeout, std::ptr::null()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(err)
            };
        }
        if fds.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            return Err(io::Error::other(format!(
                "device {} in namespace {} went away (poll revents {:#x})",
                self.src.name(),
                self.src.netns(),
                fds.revents
            )));
        }
        Ok(n > 0 && fds.revents & libc::POLLIN != 0)
    }

    fn read_burst(&mut self, buf: &mut [u8]) -> io::Result<()> {
        for _ in 0..READ_BATCH {
            match self.src.recv(buf) {
                Ok(n) => {
                    self.failing = 0;
                    let packet = buf[..n.min(buf.len())].to_vec();
                    self.direction.offer(packet, Instant::now());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.read_errors += 1;
                    self.failing += 1;
                    // A device that keeps failing would spin this loop: give up after
                    // this many errors in a row (scattered ones are only counted).
                    if self.failing > 1000 {
                        return Err(io::Error::new(
                            e.kind(),
                            format!(
                                "reading device {} in namespace {} keeps failing: {e}",
                                self.src.name(),
                                self.src.netns()
                            ),
                        ));
                    }
                    break;
                }
            }
        }
        Ok(())
    }
}
