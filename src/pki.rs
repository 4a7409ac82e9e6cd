//! `longhaul pki`: a throwaway cluster CA and node certificates for test clusters,
//! staging and the benchmarks in `loadtest/`, made with the same code `longhaul dev`
//! uses; and `longhaul pki fingerprint`, what an operator puts in an origin's deny list.
//!
//! Each run makes a fresh CA (its key is never written: nothing can sign more later)
//! and one certificate per name, for its role: `--origin` names serve the tunnel and
//! dial their peer origins (`serverAuth` and `clientAuth`), `--edge` names connect to
//! origins (`clientAuth`). A production
//! cluster keeps its CA offline and points `tunnel.tls` at its own files.

use anyhow::Context;
use longhaul_tunnel::pki::{ClusterCa, NodeRole};
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct PkiArgs {
    #[command(subcommand)]
    command: Option<PkiCommand>,
    /// Directory to write `ca.pem` and, per name, `{name}.pem` and `{name}.key` into
    /// (characters other than letters, digits and `-` become `_` in file names).
    #[arg(long, required = true)]
    dir: Option<PathBuf>,
    /// An origin's certificate: its `server_name` (e.g. nyc-1.tunnel.example.net).
    #[arg(long = "origin", value_name = "NAME")]
    origins: Vec<String>,
    /// An edge's certificate: `{node_id}.{edge_name_suffix}` of the origins' config.
    #[arg(long = "edge", value_name = "NAME")]
    edges: Vec<String>,
}

#[derive(clap::Subcommand)]
enum PkiCommand {
    /// Print the SHA-256 fingerprint of each file's (first) certificate, then the file,
    /// its names and its end of validity: the first word goes in an origin's
    /// `tunnel.denied_certificates` or its `denied_certificates_file`.
    Fingerprint {
        /// PEM certificate files (an edge's `tunnel.tls.cert`, say).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

pub fn run(args: PkiArgs) -> anyhow::Result<()> {
    if let Some(PkiCommand::Fingerprint { files }) = args.command {
        return fingerprints(&files);
    }
    let Some(dir) = args.dir else {
        anyhow::bail!("--dir is needed");
    };
    if args.origins.is_empty() && args.edges.is_empty() {
        anyhow::bail!("name at least one certificate: --origin NAME or --edge NAME");
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = ClusterCa::generate("longhaul cluster CA").context("making the cluster CA")?;
    let names = (args.origins.iter().map(|n| (n, NodeRole::Origin)))
        .chain(args.edges.iter().map(|n| (n, NodeRole::Edge)));
    for (name, role) in names {
        let files = ca
            .issue(name, role, &dir)
            .with_context(|| format!("making the certificate of {name}"))?;
        println!(
            "{name} ({}): cert {} key {}",
            match role {
                NodeRole::Origin => "origin",
                NodeRole::Edge => "edge",
            },
            files.cert.display(),
            files.key.display()
        );
    }
    println!("ca: {}", dir.join("ca.pem").display());
    Ok(())
}

fn fingerprints(files: &[PathBuf]) -> anyhow::Result<()> {
    for file in files {
        let d = longhaul_certs::check::describe_file(file)?;
        println!(
            "{}  {}  {}  valid until {}",
            d.fingerprint,
            file.display(),
            if d.names.is_empty() {
                "-".to_string()
            } else {
                d.names.join(",")
            },
            d.not_after
        );
    }
    Ok(())
}
