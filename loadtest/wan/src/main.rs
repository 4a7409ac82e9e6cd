//! The `longhaul-wan` command: parses the options, creates the two devices, runs the
//! two directions until a signal or `--duration`, then reports. See the crate docs.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

use longhaul_wan::link::{self, Finished};
use longhaul_wan::stats::{DirectionReport, Report};
use longhaul_wan::tun::Tun;
use longhaul_wan::{Direction, DirectionConfig, Spec};

const SPEC_HELP: &str = "\
SPEC is a comma-separated list of key=value; keys not given are off:
  delay=DURATION    one-way propagation delay, e.g. 115ms (units ns, us, ms, s)
  jitter=DURATION   delay varies uniformly in delay±jitter; never reorders packets
  loss=PERCENT      independent random loss, e.g. 1% or 0.5% (the % is required)
  ge=P/R[/H[/K]]    Gilbert-Elliott bursty loss, percentages: P = P(good->bad),
                    R = P(bad->good) per packet; loss is 1-H in the bad state (H
                    default 0%) and 1-K in the good state (K default 100%).
                    Mean loss = P/(P+R) with the defaults; mean burst = 1/R packets.
                    e.g. ge=0.5%/25% -> 1.96% loss in bursts of 4
  rate=RATE         bottleneck rate: bit, kbit, mbit, gbit (decimal, 1mbit = 10^6 bit/s)
  queue=SIZE|TIME   bottleneck queue bound, tail drop beyond it: bytes (b, kb, mb;
                    1kb = 1024 b) or the time to drain it at rate, e.g. 100ms
Use off (rate=off, queue=off, ge=off) to clear a key set by --both.
Order per packet: loss on entry, then the rate-limited queue, then delay±jitter.

Example: emulate 230 ms RTT, 1% loss each way, 50 Mbit/s with 100 ms of buffer,
and more loss from A to B:
  longhaul-wan --a-netns enc --a-dev lh-eo --a-addr 10.77.3.1 \\
               --b-netns origin --b-dev lh-oe --b-addr 10.77.3.2 \\
               --both \"delay=115ms,jitter=2ms,loss=1%,rate=50mbit,queue=100ms\" \\
               --a-to-b \"loss=2%\" --seed 1 --duration 120s --stats-json out.json

Prints `ready` on stdout once both devices are up; prints a summary on stderr at exit
(SIGINT, SIGTERM or --duration). Needs root; the namespaces must exist (ip netns add).";

/// Userspace WAN emulator: a point-to-point link between two network namespaces through
/// TUN devices, with delay, jitter, loss, bursty loss and a rate-limited queue per
/// direction.
#[derive(Debug, Parser)]
#[command(version, after_help = SPEC_HELP)]
struct Cli {
    /// Namespace of side A (must exist, see `ip netns add`), e.g. enc.
    #[arg(long, value_name = "NAME")]
    a_netns: String,
    /// TUN device to create in side A's namespace, at most 15 characters, e.g. lh-eo.
    #[arg(long, value_name = "DEV")]
    a_dev: String,
    /// IPv4 address of side A's device, e.g. 10.77.3.1 (B reaches A there).
    #[arg(long, value_name = "IPV4")]
    a_addr: Ipv4Addr,
    /// Namespace of side B (must exist), e.g. origin.
    #[arg(long, value_name = "NAME")]
    b_netns: String,
    /// TUN device to create in side B's namespace, e.g. lh-oe.
    #[arg(long, value_name = "DEV")]
    b_dev: String,
    /// IPv4 address of side B's device, e.g. 10.77.3.2.
    #[arg(long, value_name = "IPV4")]
    b_addr: Ipv4Addr,
    /// Impairment of both directions, e.g. "delay=40ms,loss=1%" (see SPEC below).
    #[arg(long, value_name = "SPEC", default_value = "")]
    both: String,
    /// Keys overriding --both for packets from A to B, e.g. "loss=2%".
    #[arg(long, value_name = "SPEC", default_value = "")]
    a_to_b: String,
    /// Keys overriding --both for packets from B to A, e.g. "rate=off".
    #[arg(long, value_name = "SPEC", default_value = "")]
    b_to_a: String,
    /// Seed of the random loss and jitter: the same seed and traffic give the same
    /// losses. A to B uses SEED, B to A uses SEED + 1.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Stop after this long (units ns, us, ms, s), e.g. 120s; default: until SIGINT or
    /// SIGTERM.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Write the counters as JSON to this file at exit, e.g. out.json.
    #[arg(long, value_name = "PATH")]
    stats_json: Option<PathBuf>,
    /// MTU of both devices, bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1500)]
    mtu: u32,
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    longhaul_wan::spec::parse_duration("duration", value).map_err(|e| e.to_string())
}

fn config(both: &Spec, over: &str, flag: &str) -> anyhow::Result<DirectionConfig> {
    let over = Spec::parse(over).with_context(|| format!("in {flag}"))?;
    both.overridden_by(&over)
        .resolve()
        .with_context(|| format!("in --both with {flag}"))
}

/// The set of signals that end the run. Blocked in every thread (the mask is inherited),
/// so only `sigtimedwait` in the main thread receives them.
fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Waits for a stop signal, the deadline or `stop` (set by a failing thread).
fn wait_for_end(set: &libc::sigset_t, deadline: Option<Instant>, stop: &AtomicBool) -> String {
    loop {
        if stop.load(Ordering::Relaxed) {
            return "a forwarding thread failed".to_owned();
        }
        let mut slice = Duration::from_millis(200);
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return "duration reached".to_owned();
            }
            slice = slice.min(left);
        }
        let timeout = libc::timespec {
            tv_sec: slice.as_secs() as libc::time_t,
            tv_nsec: slice.subsec_nanos() as libc::c_long,
        };
        // SAFETY: a valid, blocked signal set and timeout; no siginfo wanted.
        let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &timeout) };
        if sig > 0 {
            let name = match sig {
                libc::SIGINT => "SIGINT",
                libc::SIGTERM => "SIGTERM",
                _ => "SIGHUP",
            };
            return format!("{name} received");
        }
    }
}

fn report_of(name: &str, finished: &Finished, elapsed: Duration) -> DirectionReport {
    let stats = finished.direction.stats();
    DirectionReport {
        name: name.to_owned(),
        config: finished.direction.config().to_string(),
        loss_fraction: stats.loss_fraction(),
        delivered_bps: stats.delivered_bytes as f64 * 8.0 / elapsed.as_secs_f64().max(1e-9),
        stats,
        write_errors: finished.write_errors,
        read_errors: finished.read_errors,
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole chain on one line, without a backtrace.
            let _ = writeln!(std::io::stderr(), "longhaul-wan: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let both = Spec::parse(&cli.both).context("in --both")?;
    let a_to_b = config(&both, &cli.a_to_b, "--a-to-b")?;
    let b_to_a = config(&both, &cli.b_to_a, "--b-to-a")?;
    if cli.a_addr == cli.b_addr {
        bail!(
            "--a-addr and --b-addr are both {}: the two ends need different addresses",
            cli.a_addr
        );
    }
    if !(68..=65_535).contains(&cli.mtu) {
        bail!(
            "--mtu {} is outside 68..=65535 (the IPv4 minimum and the largest IP packet)",
            cli.mtu
        );
    }

    if let Some(path) = &cli.stats_json {
        // Fail now rather than after a long run; the file is rewritten at exit.
        std::fs::write(path, "")
            .with_context(|| format!("cannot write --stats-json {}", path.display()))?;
    }

    let signals = stop_signals();
    // SAFETY: blocks the stop signals in this thread before any other thread exists.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut()) };
    if rc != 0 {
        bail!(
            "cannot block SIGINT/SIGTERM: {}",
            std::io::Error::from_raw_os_error(rc)
        );
    }

    let a = Arc::new(Tun::create(&cli.a_netns, &cli.a_dev).context("side A")?);
    let b = Arc::new(Tun::create(&cli.b_netns, &cli.b_dev).context("side B")?);
    a.configure(cli.a_addr, cli.b_addr, cli.mtu)
        .context("side A")?;
    b.configure(cli.b_addr, cli.a_addr, cli.mtu)
        .context("side B")?;

    let stop = Arc::new(AtomicBool::new(false));
    let ab = link::spawn(
        "a-to-b",
        a.clone(),
        b.clone(),
        Direction::new(a_to_b, cli.seed),
        stop.clone(),
    )
    .context("cannot start the A to B thread")?;
    let ba = link::spawn(
        "b-to-a",
        b.clone(),
        a.clone(),
        Direction::new(b_to_a, cli.seed.wrapping_add(1)),
        stop.clone(),
    )
    .context("cannot start the B to A thread")?;

    let started = Instant::now();
    {
        // Write errors (a closed pipe) must not panic: the scripts may stop reading.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }
    let why = wait_for_end(&signals, cli.duration.map(|d| started + d), &stop);
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let (ab, ba) = match (ab.join(), ba.join()) {
        (Ok(ab), Ok(ba)) => (ab, ba),
        _ => bail!("a forwarding thread panicked"),
    };

    let report = Report {
        seed: cli.seed,
        elapsed_s: elapsed.as_secs_f64(),
        a_to_b: report_of("a_to_b", &ab, elapsed),
        b_to_a: report_of("b_to_a", &ba, elapsed),
    };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "longhaul-wan: stopping: {why}");
    for f in [&ab, &ba] {
        if let Some(e) = &f.error {
            let _ = writeln!(err, "longhaul-wan: error: {e}");
        }
    }
    let _ = write!(err, "{}", report.summary());
    if let Some(path) = &cli.stats_json {
        let json = serde_json::to_string_pretty(&report).context("cannot encode the stats")?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write --stats-json {}", path.display()))?;
    }
    if ab.error.is_some() || ba.error.is_some() {
        bail!("forwarding stopped on an error (see above)");
    }
    Ok(())
}
