//! Loading node settings: TOML files merged in order, then `LONGHAUL_*` variables.
//!
//! figment does the merging; this module checks what figment leaves out (a named file
//! that does not exist is an error, not an empty layer) and words figment's errors for
//! the person who wrote the setting: the key as written (`rtmp.listen`, or the variable
//! `LONGHAUL_RTMP__LISTEN`), the file as given on the command line with the line of the
//! key, the bad value, and the form that was expected.

use figment::error::Kind;
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use figment::Source;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Prefix of environment overrides; `__` separates nested keys.
pub const ENV_PREFIX: &str = "LONGHAUL_";

/// Environment variables of the CLI itself, not config keys.
const CLI_VARIABLES: &[&str] = &["LOG", "LOG_FORMAT", "API", "API_TOKEN", "DEV_PORT_OFFSET"];

/// A config file that was read, as named on the command line, with its text.
struct ConfigFile {
    given: PathBuf,
    text: String,
}

pub fn load<T: DeserializeOwned>(files: &[PathBuf]) -> anyhow::Result<T> {
    let mut figment = Figment::new();
    let mut read = Vec::new();
    for file in files {
        anyhow::ensure!(
            file.is_file(),
            "config file {} does not exist",
            file.display()
        );
        // Read it ourselves so a syntax error names the file, and so errors found later
        // can name the line of their key.
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", file.display()))?;
        if let Err(e) = text.parse::<toml::Table>() {
            anyhow::bail!(
                "config file {} is not valid TOML: {}",
                file.display(),
                e.to_string().trim_end()
            );
        }
        figment = figment.merge(Toml::file_exact(file));
        read.push(ConfigFile {
            given: file.clone(),
            text,
        });
    }
    figment = figment.merge(Env::prefixed(ENV_PREFIX).ignore(CLI_VARIABLES).split("__"));
    figment.extract::<T>().map_err(|e| {
        let all: Vec<String> = e
            .into_iter()
            .map(|e| describe(&e, &read, |name| std::env::var(name).ok()))
            .collect();
        anyhow::anyhow!("bad configuration: {}", all.join("; "))
    })
}

/// One figment error in the words of whoever wrote the setting. `env` reads a variable
/// (the process environment, or a table in tests).
fn describe(
    error: &figment::Error,
    files: &[ConfigFile],
    env: impl Fn(&str) -> Option<String>,
) -> String {
    let mut path = error.path.clone();
    // A missing key is reported at its table; name the key itself.
    if let Kind::MissingField(name) = &error.kind {
        path.push(name.to_string());
    }
    let key = if path.is_empty() {
        "(the top level)".to_string()
    } else {
        path.join(".")
    };
    let problem = problem(&error.kind);
    let metadata = error.metadata.as_ref();
    let file = metadata
        .and_then(|m| m.source.as_ref())
        .and_then(Source::file_path)
        .and_then(|source| files.iter().find(|f| same_file(&f.given, source)));
    if let Some(file) = file {
        let at = match line_of(&file.text, &path) {
            Some(line) => format!("{} line {line}", file.given.display()),
            None => file.given.display().to_string(),
        };
        return match &error.kind {
            Kind::MissingField(_) => format!("{at}: {key} is required but not set"),
            _ => format!("{at}: {key}: {problem}"),
        };
    }
    if metadata.is_some_and(|m| m.name.contains("environment")) {
        let variable = format!("{ENV_PREFIX}{}", path.join("__").to_uppercase());
        return match env(&variable) {
            Some(value) => format!("{variable}={value:?} (sets {key}): {problem}"),
            None => format!("{variable} (sets {key}): {problem}"),
        };
    }
    match &error.kind {
        Kind::MissingField(_) => format!("{key} is required but not set"),
        _ => format!("{key}: {problem}"),
    }
}

/// What is wrong with a value, and what was expected.
fn problem(kind: &Kind) -> String {
    match kind {
        Kind::UnknownField(found, expected) => format!(
            "unknown key {found:?}; this table takes {}",
            quoted_list(expected)
        ),
        Kind::UnknownVariant(found, expected) => {
            format!(
                "unknown value {found:?}; expected {}",
                quoted_list(expected)
            )
        }
        Kind::InvalidType(found, expected) | Kind::InvalidValue(found, expected) => {
            format!("expected {}, found {found}", plain_type(expected))
        }
        Kind::InvalidLength(found, expected) => format!("expected {expected}, found {found}"),
        Kind::MissingField(_) => "required but not set".into(),
        Kind::DuplicateField(name) => format!("{name} is set twice"),
        Kind::Message(message) => match form_of(message) {
            Some(form) => format!("{message}; expected {form}"),
            None => message.clone(),
        },
        other => other.to_string(),
    }
}

/// The expected form for the parse errors of the standard types settings use, which
/// say what failed but not what would have worked.
fn form_of(message: &str) -> Option<&'static str> {
    match message {
        "invalid socket address syntax" => Some("an address and port, e.g. \"0.0.0.0:1935\""),
        "invalid IP address syntax" => Some("an IP address, e.g. \"10.0.0.1\" or \"::1\""),
        m if m.contains("invalid IP address syntax") => Some("a network, e.g. \"10.0.0.0/8\""),
        _ => None,
    }
}

/// serde's names for Rust types, as a person would say them.
fn plain_type(expected: &str) -> String {
    match expected {
        "usize" | "u64" | "u32" | "u16" | "u8" => {
            format!("a whole number of 0 or more ({expected})")
        }
        "i64" | "i32" => "a whole number".into(),
        "f64" | "f32" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        other => other.into(),
    }
}

fn quoted_list(items: &[&str]) -> String {
    match items {
        [] => "no keys".into(),
        items => items
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn same_file(given: &Path, source: &Path) -> bool {
    given == source
        || match (given.canonicalize(), source.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
}

/// The 1-based line of the key at `path` in a TOML document (or of the nearest table
/// on the way there that the document has).
fn line_of(text: &str, path: &[String]) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut item = doc.as_item();
    let mut span = None;
    for key in path {
        let next = match key.parse::<usize>() {
            Ok(index) if item.is_array() || item.is_array_of_tables() => item.get(index),
            _ => item.get(key.as_str()),
        };
        let Some(next) = next else { break };
        // A key's own position, where it has one (a table header, a `key = value` line).
        let key_span = item
            .as_table_like()
            .and_then(|t| t.get_key_value(key))
            .and_then(|(k, _)| k.span());
        span = key_span.or_else(|| next.span()).or(span);
        item = next;
    }
    let offset = span?.start;
    Some(text[..offset.min(text.len())].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Settings {
        node: Node,
        #[serde(default)]
        rtmp: Rtmp,
    }
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Node {
        id: String,
    }
    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    #[allow(dead_code)]
    struct Rtmp {
        listen: Option<std::net::SocketAddr>,
        max_connections: usize,
    }

    /// The first error of loading `text` as the file `name`.
    fn first_error(name: &str, text: &str) -> String {
        let dir = std::env::temp_dir().join(format!("lh-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let files = [ConfigFile {
            given: path.clone(),
            text: text.into(),
        }];
        let e = Figment::new()
            .merge(Toml::file_exact(&path))
            .extract::<Settings>()
            .unwrap_err();
        let e = e.into_iter().next().unwrap();
        describe(&e, &files, |_| None).replace(&path.display().to_string(), name)
    }

    #[test]
    fn a_typo_names_the_key_as_written_its_file_and_line() {
        let text = "[node]\nid = \"nyc-1\"\n\n[rtmp]\nlistn = \"0.0.0.0:1935\"\n";
        let error = first_error("typo.toml", text);
        assert_eq!(
            error,
            "typo.toml line 5: rtmp.listn: unknown key \"listn\"; this table takes \
             `listen`, `max_connections`"
        );
        assert!(!error.contains("default."), "{error}");
    }

    #[test]
    fn a_bad_value_in_a_file_says_the_form_expected() {
        let text = "[node]\nid = \"nyc-1\"\n[rtmp]\nlisten = \"0.0.0.0:19x35\"\n";
        assert_eq!(
            first_error("bad.toml", text),
            "bad.toml line 4: rtmp.listen: invalid socket address syntax; expected an \
             address and port, e.g. \"0.0.0.0:1935\""
        );
    }

    #[test]
    fn a_missing_key_is_named_whole() {
        let error = first_error("missing.toml", "[node]\n");
        assert_eq!(
            error,
            "missing.toml line 1: node.id is required but not set"
        );
    }
}
