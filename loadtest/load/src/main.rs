//! `longhaul-load`: parses the command line, runs the load (or the soak), prints the
//! summary on stdout and writes `--json`. Exit code 0 when the run completed (whatever
//! the streams lost: it is a measurement), 1 when it could not be made (entries API
//! unreachable or refusing, the JSON not writable), 2 for bad arguments.

use clap::Parser;
use longhaul_load::soak::SoakArgs;
use longhaul_load::{Cli, LoadArgs, Mode};
use std::process::ExitCode;

/// Stream errors listed on stderr after the table; the JSON has them all.
const ERRORS_SHOWN: usize = 20;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match cli.mode {
        None => load(cli.load),
        Some(Mode::Soak(args)) => soak(args),
    }
}

fn load(cli: LoadArgs) -> ExitCode {
    let settings = match cli.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("longhaul-load: {e}");
            return ExitCode::from(2);
        }
    };
    raise_file_limit(settings.total_publishers());
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("longhaul-load: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "longhaul-load: {} region(s) x {} publishers, {} kbit/s video + {} kbit/s audio, {} fps, GOP {} s, {} s of media, ramp {}/s",
        settings.regions.len(),
        settings.publishers_per_region,
        settings.video_bps / 1000,
        settings.audio_bps / 1000,
        settings.fps,
        settings.gop.as_secs_f64(),
        settings.duration.as_secs_f64(),
        settings.ramp_per_sec,
    );
    let report = match runtime.block_on(longhaul_load::run(settings)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("longhaul-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.table());
    let errors = report.errors();
    for e in errors.iter().take(ERRORS_SHOWN) {
        eprintln!("error: {e}");
    }
    if errors.len() > ERRORS_SHOWN {
        eprintln!("... and {} more stream errors", errors.len() - ERRORS_SHOWN);
    }
    if let Some(path) = &cli.json {
        if let Err(e) = report.write_json(path) {
            eprintln!("longhaul-load: {e}");
            return ExitCode::FAILURE;
        }
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::SUCCESS
}

fn soak(args: SoakArgs) -> ExitCode {
    let settings = match args.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("longhaul-load soak: {e}");
            return ExitCode::from(2);
        }
    };
    raise_file_limit(settings.sockets() / 2);
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("longhaul-load soak: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let s = &settings;
    println!(
        "longhaul-load soak: {} of load, then {} s settling; {} publishers ({} region(s)) in sessions of {} s of media ({} kbit/s video + {} kbit/s audio), about {} s apart; {} lurkers; hostile: {} sprayers, {} flooders, {} slowloris, {} bad tokens; nodes sampled every {} s",
        humane(s.length),
        s.settle.as_secs(),
        s.load.total_publishers(),
        s.load.regions.len(),
        s.load.duration.as_secs_f64(),
        s.load.video_bps / 1000,
        s.load.audio_bps / 1000,
        s.gap.as_secs_f64(),
        s.lurkers,
        s.hostile.sprayers,
        s.hostile.flooders,
        s.hostile.slowloris,
        s.hostile.bad_tokens,
        s.sample.as_secs_f64(),
    );
    let report = match runtime.block_on(longhaul_load::soak::run(settings, |line| {
        println!("{line}")
    })) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("longhaul-load soak: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.table());
    for (e, n) in report.sessions.errors.iter().take(ERRORS_SHOWN) {
        eprintln!("error ({n}x): {e}");
    }
    if let Some(path) = &args.load.json {
        if let Err(e) = report.write_json(path) {
            eprintln!("longhaul-load soak: {e}");
            return ExitCode::FAILURE;
        }
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::SUCCESS
}

/// `30m`, `1h05m`, `45s`.
fn humane(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

/// Two sockets per stream (publisher and player): a thousand streams pass the usual soft
/// limit of 1,024 descriptors. Raise it to the hard limit, and say so when even that is
/// too low (the run goes on: streams past it fail with "too many open files").
fn raise_file_limit(streams: usize) {
    let needed = (2 * streams + 64) as u64;
    // SAFETY: getrlimit and setrlimit read and write the struct they are given.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < needed && limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
        if (limit.rlim_cur as u64) < needed {
            eprintln!(
                "longhaul-load: {streams} streams need about {needed} file descriptors; the limit is {} (ulimit -n)",
                limit.rlim_cur
            );
        }
    }
}

/// The generator's runtime: tokio's current-thread runtime when the process may run on one
/// core (the benchmarks pin it to one with `taskset`), where a multi-thread runtime's single
/// worker pays for cross-thread wake-ups it never needs; one worker per core otherwise.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    if std::thread::available_parallelism().map_or(1, usize::from) == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    }
}
