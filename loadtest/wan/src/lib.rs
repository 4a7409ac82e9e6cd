//! # longhaul-wan: a userspace WAN emulator between network namespaces
//!
//! The long-haul benchmark runs the encoder, the edge and the origin in separate network
//! namespaces and needs the links between them to look like a long WAN path: 80-300 ms
//! of round trip, 0-2 % loss, a bandwidth cap. The test kernel has no `sch_netem` (only
//! `tbf`/`htb`, which cap rate but add neither delay nor loss), so this process is the
//! link: a TUN device in each of two namespaces, and packets read from one device are
//! impaired and written to the other.
//!
//! ```text
//!  namespace A                 longhaul-wan                    namespace B
//!  10.77.3.1 ── dev a ──read──▶ a_to_b: loss → queue/rate → delay ──write──▶ dev b ── 10.77.3.2
//!                   ◀──write── b_to_a: loss → queue/rate → delay ◀──read──
//! ```
//!
//! ## What it emulates, per direction
//! - **delay**: a fixed one-way propagation delay, added after serialisation.
//! - **jitter**: each packet's delay is uniform in `delay ± jitter` (at least zero), then
//!   raised if needed so that it never departs before the packet ahead of it. So jitter
//!   never reorders packets. Sparse packets see the delay vary over the whole range;
//!   dense traffic (packets closer together than `2 · jitter`) is held to the latest
//!   departure so far and converges to about `delay + jitter`, varying little: a
//!   constant extra delay rather than variation. The benchmark uses 1 ms on 115 ms, where
//!   either way is negligible; modelling real variation would need a process
//!   correlated in time.
//! - **loss** (independent): each packet is lost with probability `loss`.
//! - **ge** (bursty, Gilbert-Elliott): a two-state chain stepped once per packet, good →
//!   bad with probability `p`, bad → good with probability `r`; a packet is lost with
//!   probability `1 - h` in the bad state and `1 - k` in the good state (defaults `h = 0`,
//!   `k = 1`: every packet lost in the bad state, none in the good one). Mean loss
//!   `= r/(p+r) · (1-k) + p/(p+r) · (1-h)`, so `p/(p+r)` with the defaults; the mean
//!   time in the bad state, and with the defaults the mean loss burst, is `1/r` packets.
//!   Independent loss applies on top of it.
//! - **rate** and **queue**: a bottleneck of `rate` bits/s; a packet finishes
//!   serialising at `max(arrival, previous finish) + size · 8 / rate`. Packets waiting
//!   for it form a FIFO queue bounded by `queue` (bytes, or a time at `rate`); a packet
//!   that does not fit is tail-dropped and counted.
//!
//! Loss is applied on entry, before the queue: a lost packet takes no queue space.
//! All randomness comes from `--seed`, so a run with the same input repeats exactly.
//!
//! ## What it does not emulate
//! No reordering (jitter included, see above), no duplication, no corruption, no MTU
//! changes along the path, no delay that depends on the packet (all packets of a
//! direction share one FIFO), and no cross traffic beyond what you send through it.
//! It forwards IPv4 and IPv6 alike, but configures only IPv4 addresses.
//!
//! ## Use
//! As root, with both namespaces already created (`ip netns add NAME`):
//! ```text
//! longhaul-wan --a-netns enc --a-dev lh-eo --a-addr 10.77.3.1 \
//!              --b-netns origin --b-dev lh-oe --b-addr 10.77.3.2 \
//!              --both "delay=115ms,jitter=2ms,loss=1%,rate=50mbit,queue=100ms" \
//!              --a-to-b "loss=2%" --seed 1 --duration 120s --stats-json out.json
//! ```
//! It creates the two devices (non-persistent: they vanish when it exits), gives them
//! the point-to-point addresses, prints `ready` on stdout, and forwards until SIGINT,
//! SIGTERM or the end of `--duration`. It then prints a summary (on stderr) and writes
//! the same counters as JSON to `--stats-json`. Spec keys not given are off; `--a-to-b`
//! and `--b-to-a` override single keys of `--both`. See `longhaul-wan --help` for units.
//!
//! ## Accuracy and cost
//! Measured by `loadtest/wan-check.sh` on the 2-core test VM:
//! - packets leave about 0.15 ms after their due time (the kernel's wake-up latency; the
//!   pump threads run with 1 µs timer slack), so a 2 × 40 ms path pings 80.2-80.4 ms, with
//!   rare outliers of a few milliseconds from the VM's scheduler;
//! - UDP offered above the cap is delivered at the cap to within 0.1 %;
//! - the loss and Gilbert-Elliott burst length it counts match the settings;
//! - forwarding costs about 12 % of one core at 350 Mbit/s (uncapped TCP), 4-6 % at
//!   10-50 Mbit/s.
//!
//! Note for TCP measurements: BBR (the default congestion control in new namespaces on
//! that kernel) keeps up to two bandwidth-delay products in flight, so a queue shallower
//! than one BDP overflows steadily (thousands of tail drops per run) while the link stays
//! full. That is the emulated path working, not the emulator losing packets.
//!
//! ## Layout
//! - [`spec`]: the `key=value` spec strings and their units;
//! - [`loss`]: the Bernoulli and Gilbert-Elliott loss decisions;
//! - [`direction`]: one direction as a pure state machine, time passed in;
//! - [`stats`]: counters, the summary and the JSON report;
//! - [`tun`]: TUN devices created inside named namespaces;
//! - [`link`]: the two threads doing the IO.
//!
//! The checks against a real kernel path (ping RTT, iperf3 throughput, counted loss) are
//! in `loadtest/wan-check.sh`.

pub mod direction;
pub mod link;
pub mod loss;
pub mod spec;
pub mod stats;
pub mod tun;

pub use direction::{Direction, Offered};
pub use spec::{DirectionConfig, Spec, SpecError};
