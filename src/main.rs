//! `longhaul`: one binary for every node of the cluster and the tools around it.
//!
//! | command | does |
//! |---|---|
//! | `longhaul origin --config FILE...` | run an origin node |
//! | `longhaul edge --config FILE...` | run an edge node |
//! | `longhaul dev [--data-dir DIR]` | run the whole local cluster (2 origins, 3 edges) on 127.0.0.1 |
//! | `longhaul entry ...` | create, list, show, regenerate or delete entries over the API |
//! | `longhaul pki --dir DIR --origin NAME... --edge NAME...` | a throwaway cluster CA and node certificates, one role each (test clusters, benchmarks) |
//! | `longhaul pki fingerprint FILE...` | a certificate's SHA-256 fingerprint, for an origin's deny list |
//!
//! The CLI knows the nodes; the nodes know nothing of the CLI: each node crate takes a
//! plain config struct, and this binary only loads it, sets up logging and waits.

mod config_file;
mod dev;
mod entry;
mod logging;
mod pki;

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
    #[arg(long, global = true, value_enum, default_value_t = logging::Format::Human, env = "LONGHAUL_LOG_FORMAT")]
    log_format: logging::Format,
    /// Log filter in tracing's syntax (`info`, `longhaul_origin=debug,info`, ...).
    #[arg(long, global = true, default_value = "info", env = "LONGHAUL_LOG")]
    log: String,
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
        /// Where the registry database and the dev certificates live.
        #[arg(long, default_value = ".longhaul")]
        data_dir: PathBuf,
    },
    /// Manage entries through an origin's API.
    Entry(entry::EntryArgs),
    /// Make a fresh cluster CA and node certificates for the tunnels (test clusters,
    /// staging, the benchmarks; production keeps its CA offline), or print a
    /// certificate's fingerprint (`longhaul pki fingerprint FILE`) for a deny list.
    Pki(pki::PkiArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log_format, &cli.log) {
        eprintln!("longhaul: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("longhaul: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Origin { configs } => run_origin(configs).await,
            Command::Edge { configs } => run_edge(configs).await,
            Command::Dev { data_dir } => dev::run(data_dir).await,
            Command::Entry(args) => entry::run(args).await,
            Command::Pki(args) => pki::run(args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("longhaul: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_origin(configs: Vec<PathBuf>) -> anyhow::Result<()> {
    let config: longhaul_origin::Config = config_file::load(&configs)?;
    let mut origin = longhaul_origin::Origin::start(config).await?;
    tokio::select! {
        _ = origin.wait() => anyhow::bail!("a listener of the origin stopped unexpectedly"),
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    origin.stop().await;
    Ok(())
}

async fn run_edge(configs: Vec<PathBuf>) -> anyhow::Result<()> {
    let config: longhaul_edge::EdgeConfig = config_file::load(&configs)?;
    let mut edge = longhaul_edge::Edge::start(config).await?;
    tokio::select! {
        _ = edge.wait() => anyhow::bail!("a listener of the edge stopped unexpectedly"),
        _ = shutdown_signal() => tracing::info!("shutting down"),
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
