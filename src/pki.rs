//! `longhaul pki`: a throwaway cluster CA and node certificates for test clusters,
//! staging and the benchmarks in `loadtest/`, made with the same code `longhaul dev` uses.
//!
//! Each run makes a fresh CA (its key is never written: nothing can sign more later)
//! and one certificate per name, valid to serve and to authenticate as a client. A
//! production cluster keeps its CA offline and points `tunnel.tls` at its own files.

use anyhow::Context;
use longhaul_tunnel::pki::ClusterCa;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct PkiArgs {
    /// Directory to write `ca.pem` and, per name, `{name}.pem` and `{name}.key` into
    /// (characters other than letters, digits and `-` become `_` in file names).
    #[arg(long)]
    dir: PathBuf,
    /// DNS names to issue certificates for: an origin's `server_name`, or an edge's
    /// `{node_id}.{edge_name_suffix}`.
    #[arg(required = true)]
    names: Vec<String>,
}

pub fn run(args: PkiArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let ca = ClusterCa::generate("longhaul cluster CA").context("making the cluster CA")?;
    for name in &args.names {
        let files = ca
            .issue(name, &args.dir)
            .with_context(|| format!("making the certificate of {name}"))?;
        println!(
            "{name}: cert {} key {}",
            files.cert.display(),
            files.key.display()
        );
    }
    println!("ca: {}", args.dir.join("ca.pem").display());
    Ok(())
}
