//! `longhaul`: one binary for every node of the cluster and the tools around it.
//!
//! | command | does |
//! |---|---|
//! | `longhaul origin --config FILE...` | run an origin node |
//! | `longhaul edge --config FILE...` | run an edge node |
//! | `longhaul dev [--data-dir DIR] [--port-offset N]` | run the whole local cluster (2 origins, 3 edges) on 127.0.0.1 |
//! | `longhaul entry ...` | create, list, show, regenerate or delete entries over the API |
//! | `longhaul pki --dir DIR --origin NAME... --edge NAME...` | a throwaway cluster CA and node certificates, one role each (test clusters, benchmarks) |
//! | `longhaul pki fingerprint FILE...` | a certificate's SHA-256 fingerprint, for an origin's deny list |
//! | `longhaul speedtest [--entry ID \| --endpoint URL...] [--seconds S] [--download] [--json]` | measure every region's speed test (an entry's, the URLs given, or the `longhaul dev` nodes), ranked, with the endpoint to use |
//!
//! The CLI knows the nodes; the nodes know nothing of the CLI: each node crate takes a
//! plain config struct, and this binary only loads it, sets up logging and waits.

mod config_file;
mod dev;
mod entry;
mod logging;
mod pki;
mod speedtest;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "longhaul",
    version,
    about = "Regional relay cluster for live video ingest"
)]
struct Cli {
    /// Log format: human-readable lines or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = logging::Format::Human, env = "LONGHAUL_LOG_FORMAT", help_heading = "Logging")]
    log_format: logging::Format,
    /// Log filter in tracing's syntax (`info`, `longhaul_origin=debug,info`, ...).
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "LONGHAUL_LOG",
        value_name = "FILTER",
        help_heading = "Logging"
    )]
    log: String,
    /// Threads that run the node: `1` runs everything on one thread (tokio's current-thread
    /// runtime, no work stealing, no cross-thread wake-ups). More: an edge runs that many
    /// shards, each a thread with its own current-thread runtime, its share of the
    /// connections and its own tunnel to each origin; other commands run tokio's
    /// multi-thread runtime with that many workers. Default: one per core this process
    /// may run on (its CPU affinity and cgroup quota), and one thread when that is one.
    #[arg(
        long,
        global = true,
        env = "LONGHAUL_THREADS",
        value_name = "N",
        help_heading = "Runtime"
    )]
    threads: Option<std::num::NonZeroUsize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an origin node. Later files override earlier ones, then `LONGHAUL_*` variables
    /// (`LONGHAUL_RTMP__LISTEN=0.0.0.0:1935` sets `rtmp.listen`).
    Origin {
        /// TOML config files, merged in order (e.g. config/base.toml config/nyc.toml).
        #[arg(long = "config", short = 'c', required = true, num_args = 1..)]
        configs: Vec<PathBuf>,
    },
    /// Run an edge node: RTMP/RTMPS from nearby encoders, forwarded over QUIC tunnels
    /// to the origins. Files and variables as for `origin`.
    Edge {
        /// TOML config files, merged in order (e.g. config/base.toml config/edge.toml config/fra.toml).
        #[arg(long = "config", short = 'c', required = true, num_args = 1..)]
        configs: Vec<PathBuf>,
    },
    /// Run the local cluster (origins nyc and pao, edges fra, gru and sin) on 127.0.0.1
    /// with nothing to configure.
    Dev {
        /// Where the registry database and the dev certificates live; one `longhaul dev`
        /// at a time per directory (it holds `dev.lock` there).
        #[arg(long, default_value = ".longhaul", value_name = "DIR")]
        data_dir: PathBuf,
        /// Added to every port of the dev cluster (RTMP 1935 becomes 1935+N, and so on),
        /// to run a second cluster beside the first, e.g. `--port-offset 10000`.
        #[arg(
            long,
            default_value_t = 0,
            value_name = "N",
            env = "LONGHAUL_DEV_PORT_OFFSET"
        )]
        port_offset: u16,
    },
    /// Manage entries through an origin's API.
    Entry(entry::EntryArgs),
    /// Make a fresh cluster CA and node certificates for the tunnels (test clusters,
    /// staging, the benchmarks; production keeps its CA offline), or print a
    /// certificate's fingerprint (`longhaul pki fingerprint FILE`) for a deny list.
    Pki(pki::PkiArgs),
    /// Measure each region's speed test as OBS's auto-config does (connect time, then a
    /// few seconds of upload per node) and print them ranked, with the endpoint to use.
    /// Default targets: the `longhaul dev` nodes.
    Speedtest(speedtest::SpeedtestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log_format, &cli.log) {
        eprintln!("longhaul: {e}");
        return ExitCode::from(2);
    }
    let threads = cli
        .threads
        .map(usize::from)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    // An edge runs its threads as shards (longhaul_node::shards): a current-thread runtime
    // here, shard 0, and one thread of its own per other shard; no work stealing.
    let sharded = matches!(cli.command, Command::Edge { .. });
    let runtime = if threads == 1 || sharded {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("longhaul: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Origin { configs } => run_origin(configs).await,
            Command::Edge { configs } => run_edge(configs, threads).await,
            Command::Dev {
                data_dir,
                port_offset,
            } => {
                dev::run(dev::DevOptions {
                    data_dir,
                    port_offset,
                })
                .await
            }
            Command::Entry(args) => entry::run(args).await,
            Command::Pki(args) => pki::run(args),
            Command::Speedtest(args) => speedtest::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("longhaul: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause once: many error types already print
/// their source in their own message (`cannot listen on ...: Address already in use`),
/// so a cause whose words are already there is not repeated.
fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let words = cause.to_string();
        if words.is_empty() || text.contains(&words) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&words);
    }
    text
}

async fn run_origin(configs: Vec<PathBuf>) -> anyhow::Result<()> {
    let config: longhaul_origin::Config = config_file::load(&configs)?;
    let mut origin = longhaul_origin::Origin::start(config).await?;
    tokio::select! {
        _ = origin.wait() => anyhow::bail!("a listener of the origin stopped unexpectedly"),
        _ = shutdown_signal() => tracing::info!("draining, then shutting down (a second signal stops at once)"),
    }
    tokio::select! {
        _ = origin.drain() => {}
        _ = shutdown_signal() => tracing::info!("second signal: shutting down without waiting"),
    }
    origin.stop().await;
    Ok(())
}

async fn run_edge(configs: Vec<PathBuf>, shards: usize) -> anyhow::Result<()> {
    let config: longhaul_edge::EdgeConfig = config_file::load(&configs)?;
    let mut edge = longhaul_edge::Edge::start_sharded(config, shards).await?;
    tokio::select! {
        _ = edge.wait() => anyhow::bail!("a listener of the edge stopped unexpectedly"),
        _ = shutdown_signal() => tracing::info!("draining, then shutting down (a second signal stops at once)"),
    }
    tokio::select! {
        _ = edge.drain() => {}
        _ = shutdown_signal() => tracing::info!("second signal: shutting down without waiting"),
    }
    edge.stop().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen for RTMP on 127.0.0.1:1935: {0}")]
    struct Bind(#[source] std::io::Error);

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let io_words = io.to_string();
        let error = anyhow::Error::new(Bind(io)).context("starting origin nyc-1");
        let text = error_text(&error);
        assert_eq!(
            text,
            format!("starting origin nyc-1: cannot listen for RTMP on 127.0.0.1:1935: {io_words}")
        );
        assert_eq!(text.matches(&io_words).count(), 1, "{text}");
    }

    #[test]
    fn causes_not_yet_said_are_kept() {
        let error = anyhow::anyhow!("disk full").context("writing registry.db");
        assert_eq!(error_text(&error), "writing registry.db: disk full");
    }
}
