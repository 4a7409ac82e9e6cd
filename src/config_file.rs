//! Loading node settings: TOML files merged in order, then `LONGHAUL_*` variables.
//!
//! figment does the merging and, on a bad value, names the key and the file it came
//! from; this module adds the one check figment leaves out (a named file that does not
//! exist is an error, not an empty layer).

use anyhow::Context;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use std::path::PathBuf;

/// Prefix of environment overrides; `__` separates nested keys.
pub const ENV_PREFIX: &str = "LONGHAUL_";

/// Environment variables of the CLI itself, not config keys.
const CLI_VARIABLES: &[&str] = &["LOG", "LOG_FORMAT", "API", "API_TOKEN"];

pub fn load<T: DeserializeOwned>(files: &[PathBuf]) -> anyhow::Result<T> {
    let mut figment = Figment::new();
    for file in files {
        anyhow::ensure!(
            file.is_file(),
            "config file {} does not exist",
            file.display()
        );
        // Read it ourselves so a syntax error names the file.
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading config file {}", file.display()))?;
        text.parse::<toml::Table>().map_err(|e| {
            anyhow::anyhow!("config file {} is not valid TOML: {e}", file.display())
        })?;
        figment = figment.merge(Toml::file_exact(file));
    }
    figment = figment.merge(Env::prefixed(ENV_PREFIX).ignore(CLI_VARIABLES).split("__"));
    figment.extract::<T>().map_err(|e| {
        let all: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("bad configuration: {}", all.join("; "))
    })
}
