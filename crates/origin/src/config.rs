//! The origin's settings, as read from `config/*.toml` and `LONGHAUL_*` variables.
//!
//! Every section has defaults that make sense for a local node, so a site file holds only
//! what differs. Unknown keys are refused: a typo in a config file is an error that names
//! the key, not a setting silently ignored. The sections every node has (`[node]`,
//! `[rtmp]`, `[rtmps]`, `[ingest]`, `[abuse]`, most of `[http]`) are `longhaul_node`'s; the
//! origin adds the registry (an SQLite file, or a PostgreSQL database every origin shares),
//! how publishes are authorised (`[auth]`: by the registry, or by an HTTP callback to
//! the platform's own service), the endpoints it hands out, and the API token.

use longhaul_registry::postgres::PostgresSettings;
use longhaul_registry::StoreConfig;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use longhaul_node::config::{
    AbuseSection, IngestSection, InvalidSetting, NodeSection, RtmpSection, RtmpsSection,
};

/// Everything an origin node needs to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    pub node: NodeSection,
    #[serde(default)]
    pub rtmp: RtmpSection,
    #[serde(default)]
    pub rtmps: RtmpsSection,
    #[serde(default)]
    pub http: HttpSection,
    /// Where entries and tokens are kept. Required unless `[auth]` sends every publish
    /// to a callback.
    #[serde(default)]
    pub registry: Option<RegistrySection>,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub ingest: IngestSection,
    #[serde(default)]
    pub endpoints: EndpointsSection,
    /// Addresses that keep failing to publish directly here are slowed, then refused.
    /// (A publish through an edge is the edge's to guard: it knows the encoder.)
    #[serde(default)]
    pub abuse: AbuseSection,
    /// Where edges connect their QUIC tunnels; off when absent.
    #[serde(default)]
    pub tunnel: Option<longhaul_tunnel::TunnelListenSection>,
}

/// The origin's `[http]`: the listener and limits every node has, and the API's token.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "HttpKeys")]
pub struct HttpSection {
    /// API, `/metrics`, `/healthz` and HTTP-FLV playback.
    pub server: longhaul_node::HttpSection,
    /// Bearer token the entries API requires. Without one, the API answers only
    /// requests from loopback addresses (playback, metrics and health stay open).
    /// At least [`MIN_API_TOKEN_LEN`] characters: an empty or short secret is refused.
    pub api_token: Option<String>,
}

/// `[http]` as written: the shared keys and the origin's own in one table, read as one
/// plain struct so that a bad value is named by its full key (`http.listen`).
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HttpKeys {
    listen: SocketAddr,
    max_connections: usize,
    header_timeout_secs: f64,
    api_token: Option<String>,
}

impl Default for HttpKeys {
    fn default() -> Self {
        HttpSection::default().into()
    }
}

impl From<HttpKeys> for HttpSection {
    fn from(k: HttpKeys) -> Self {
        let server = longhaul_node::HttpSection {
            listen: k.listen,
            max_connections: k.max_connections,
            header_timeout_secs: k.header_timeout_secs,
        };
        Self {
            server,
            api_token: k.api_token,
        }
    }
}

impl From<HttpSection> for HttpKeys {
    fn from(s: HttpSection) -> Self {
        Self {
            listen: s.server.listen,
            max_connections: s.server.max_connections,
            header_timeout_secs: s.server.header_timeout_secs,
            api_token: s.api_token,
        }
    }
}

/// Where entries and tokens are kept: an SQLite file (`path`: one host, `longhaul dev`)
/// or a PostgreSQL database (`url`: origins in different data centres share it).
///
/// ```toml
/// [registry]
/// url = "postgres://longhaul@db.internal:5432/longhaul"
/// password_file = "/etc/longhaul/registry-password"   # or password_env = "PGPASSWORD"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySection {
    /// SQLite database file of entries and tokens (created if missing; its directory
    /// must exist).
    pub path: Option<PathBuf>,
    /// PostgreSQL URL, `postgres://user@host:port/database`, without a password.
    pub url: Option<String>,
    /// File holding the PostgreSQL password (one line; trailing whitespace ignored).
    /// Keep it readable by the node's user only.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the PostgreSQL password.
    pub password_env: Option<String>,
    /// The CA (PEM) that signed the PostgreSQL server's certificate. With it,
    /// connections use TLS and check the server; a database on another host needs it
    /// (or `?sslmode=disable` in the URL, on a private network you trust).
    pub tls_ca: Option<PathBuf>,
    /// A file where the origin keeps its last copy of the entries (mode 600: it holds
    /// the tokens), so that it can start, deciding publishes from that copy, while the
    /// database is unreachable. Without it, an origin needs the database to start.
    pub cache: Option<PathBuf>,
}

impl RegistrySection {
    /// Checks that exactly one store is named and the password comes from one place.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let invalid = |key, reason: &str| InvalidSetting {
            key,
            reason: reason.into(),
        };
        match (&self.path, &self.url) {
            (None, None) => Err(invalid(
                "registry",
                "names no store: set registry.path (an SQLite file) or registry.url (PostgreSQL)",
            )),
            (Some(_), Some(_)) => Err(invalid(
                "registry",
                "names two stores: set registry.path (SQLite) or registry.url (PostgreSQL), not both",
            )),
            (Some(_), None) if self.tls_ca.is_some() => Err(invalid(
                "registry.tls_ca",
                "TLS is for registry.url (PostgreSQL); an SQLite file is local",
            )),
            (Some(_), None) if self.password_file.is_some() || self.password_env.is_some() => {
                Err(invalid(
                    "registry.password_file",
                    "a password is for registry.url (PostgreSQL); an SQLite file has none",
                ))
            }
            (None, Some(_)) if self.password_file.is_some() && self.password_env.is_some() => {
                Err(invalid(
                    "registry.password_env",
                    "set registry.password_file or registry.password_env, not both",
                ))
            }
            _ => Ok(()),
        }
    }

    /// The store to open, with the password read from its file or variable.
    /// `node` names the connections in PostgreSQL's `pg_stat_activity`.
    pub fn store_config(&self, node: &str) -> Result<StoreConfig, InvalidSetting> {
        self.validate()?;
        if let Some(path) = &self.path {
            return Ok(StoreConfig::Sqlite(path.clone()));
        }
        let url = self.url.clone().unwrap_or_default();
        let password = match (&self.password_file, &self.password_env) {
            (Some(file), _) => Some(
                std::fs::read_to_string(file)
                    .map(|p| p.trim_end().to_string())
                    .map_err(|e| InvalidSetting {
                        key: "registry.password_file",
                        reason: format!("cannot read {}: {e}", file.display()),
                    })?,
            ),
            (None, Some(var)) => Some(std::env::var(var).map_err(|_| InvalidSetting {
                key: "registry.password_env",
                reason: format!("the environment variable {var} is not set (or not UTF-8)"),
            })?),
            (None, None) => None,
        };
        let settings = PostgresSettings {
            url,
            password,
            application_name: format!("longhaul {node}"),
            tls_ca: self.tls_ca.clone(),
        };
        // Refuses a password written into the URL, a URL that does not parse, and a
        // remote database without TLS.
        settings.config().map_err(|e| InvalidSetting {
            key: if e.to_string().contains("registry.tls_ca") && self.tls_ca.is_some() {
                "registry.tls_ca"
            } else {
                "registry.url"
            },
            reason: e.to_string(),
        })?;
        Ok(StoreConfig::Postgres(settings))
    }
}

/// How publishes are authorised.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    pub mode: AuthMode,
    /// The callback, for `mode = "callback"`.
    pub callback: Option<CallbackSection>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// The token is checked against the entries registry.
    #[default]
    Registry,
    /// The origin asks the platform's own service over HTTP (see [`crate::callback`]).
    Callback,
}

/// The HTTP authorisation callback (see [`crate::callback`] for the request and reply).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackSection {
    /// Where to POST each publish, `http://host:port/path`.
    pub url: String,
    /// Milliseconds one call may take before it counts as failed.
    #[serde(default = "CallbackSection::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Further attempts after a call that failed (no answer, or a 5xx); a refusal (4xx)
    /// is never retried.
    #[serde(default = "CallbackSection::default_retries")]
    pub retries: u32,
    /// Seconds an allowed answer is reused for the same entry, rendition, leg, token
    /// and client address; 0 asks every time.
    #[serde(default = "CallbackSection::default_cache_secs")]
    pub cache_secs: u64,
    /// Seconds a refusal is reused (short: a token just created on the platform should
    /// soon work; long enough that a reconnect loop does not call for every attempt).
    #[serde(default = "CallbackSection::default_refusal_cache_secs")]
    pub refusal_cache_secs: u64,
    /// Environment variable holding a bearer token sent with each call, so the service
    /// can tell the callback is ours.
    pub bearer_env: Option<String>,
}

impl CallbackSection {
    /// 2 s: the platform's service answers in milliseconds; a publish must not hang on
    /// one that does not (encoders give up on a publish after about 10 s).
    fn default_timeout_ms() -> u64 {
        2000
    }
    /// One retry rides out a dropped connection or a restarting instance; more would
    /// keep an encoder waiting past its own timeout.
    fn default_retries() -> u32 {
        1
    }
    /// 30 s: an encoder reconnecting in a loop costs one call per half-minute, and a
    /// revoked entry is cut at once anyway by the revoke API, which clears the cache.
    fn default_cache_secs() -> u64 {
        30
    }
    fn default_refusal_cache_secs() -> u64 {
        5
    }

    /// Longest `timeout_ms`: beyond 10 s the encoder has given up waiting.
    pub const MAX_TIMEOUT_MS: u64 = 10_000;
    /// Most `retries`: (retries + 1) x timeout must stay within an encoder's patience.
    pub const MAX_RETRIES: u32 = 3;
    /// Longest cache: a day. Beyond that an answer is stale by any measure.
    pub const MAX_CACHE_SECS: u64 = 86_400;
}

/// How this node names its endpoints in the entries it hands out.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointsSection {
    /// Host encoders publish to (`kpublish.example.com`, or `127.0.0.1` in dev).
    pub host: String,
    pub rtmp_port: u16,
    pub rtmps_port: u16,
    /// Put entry and leg in the host name (`{entryId}.p.{host}`), as production DNS
    /// allows; off for hosts without wildcard DNS (dev), where the leg goes in `i=0|1`.
    pub leg_subdomains: bool,
    /// Renditions listed per entry (`{entryId}_1` ... `{entryId}_N`).
    pub renditions: u32,
}

impl Default for EndpointsSection {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            rtmp_port: 1935,
            rtmps_port: 1936,
            leg_subdomains: false,
            renditions: 3,
        }
    }
}

/// Shortest `http.api_token` accepted: 16 characters of a random secret are 80+ bits.
pub const MIN_API_TOKEN_LEN: usize = 16;

impl OriginConfig {
    /// Checks what serde's types cannot: ranges, finiteness, secrets' length.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.node.validate()?;
        longhaul_tunnel::check_node_names(&self.node.id, &self.node.region).map_err(|reason| {
            InvalidSetting {
                key: "node",
                reason,
            }
        })?;
        match (&self.registry, self.auth.mode) {
            (Some(r), _) => r.validate()?,
            (None, AuthMode::Registry) => {
                return Err(InvalidSetting {
                    key: "registry",
                    reason: "is missing: set registry.path (an SQLite file) or registry.url \
                             (PostgreSQL), or authorise publishes by callback ([auth] mode = \"callback\")"
                        .into(),
                })
            }
            (None, AuthMode::Callback) => {}
        }
        self.validate_auth()?;
        if let Some(t) = &self.tunnel {
            t.validate().map_err(|e| InvalidSetting {
                key: e.key,
                reason: e.reason,
            })?;
            if t.tls.cert.is_none() || t.tls.key.is_none() {
                return Err(InvalidSetting {
                    key: "tunnel.tls",
                    reason: "an origin's tunnel needs its certificate: set tunnel.tls.cert and tunnel.tls.key".into(),
                });
            }
        }
        self.http.server.validate()?;
        self.ingest.validate()?;
        self.abuse.validate()?;
        if let Some(token) = &self.http.api_token {
            if token.chars().count() < MIN_API_TOKEN_LEN {
                return Err(InvalidSetting {
                    key: "http.api_token",
                    reason: format!(
                        "shorter than {MIN_API_TOKEN_LEN} characters; use a random secret \
                         (or leave it unset to serve the API to loopback only)"
                    ),
                });
            }
        }
        if self.endpoints.renditions == 0
            || self.endpoints.renditions > longhaul_endpoint::MAX_RENDITION
        {
            return Err(InvalidSetting {
                key: "endpoints.renditions",
                reason: format!(
                    "{} is not in 1..={}",
                    self.endpoints.renditions,
                    longhaul_endpoint::MAX_RENDITION
                ),
            });
        }
        Ok(())
    }
}

impl OriginConfig {
    fn validate_auth(&self) -> Result<(), InvalidSetting> {
        let callback = match (self.auth.mode, &self.auth.callback) {
            (AuthMode::Registry, _) => return Ok(()),
            (AuthMode::Callback, None) => {
                return Err(InvalidSetting {
                    key: "auth.callback",
                    reason: "mode = \"callback\" needs [auth.callback] with its url".into(),
                })
            }
            (AuthMode::Callback, Some(c)) => c,
        };
        let url: hyper::Uri = callback.url.parse().map_err(|e| InvalidSetting {
            key: "auth.callback.url",
            reason: format!("{:?} is not a URL: {e}", callback.url),
        })?;
        if url.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(InvalidSetting {
                key: "auth.callback.url",
                reason: "holds credentials (user@ or user:password@): they would reach the logs; \
                         send a bearer token with auth.callback.bearer_env instead"
                    .into(),
            });
        }
        if url.scheme_str() != Some("http") || url.host().is_none() {
            return Err(InvalidSetting {
                key: "auth.callback.url",
                reason: format!(
                    "{:?} is not an http://host[:port]/path URL (for https, put a local proxy in front)",
                    callback.url
                ),
            });
        }
        let checks: [(&'static str, u64, u64); 4] = [
            (
                "auth.callback.timeout_ms",
                callback.timeout_ms,
                CallbackSection::MAX_TIMEOUT_MS,
            ),
            (
                "auth.callback.retries",
                u64::from(callback.retries),
                u64::from(CallbackSection::MAX_RETRIES),
            ),
            (
                "auth.callback.cache_secs",
                callback.cache_secs,
                CallbackSection::MAX_CACHE_SECS,
            ),
            (
                "auth.callback.refusal_cache_secs",
                callback.refusal_cache_secs,
                CallbackSection::MAX_CACHE_SECS,
            ),
        ];
        for (key, value, max) in checks {
            let min = u64::from(key == "auth.callback.timeout_ms");
            if !(min..=max).contains(&value) {
                return Err(InvalidSetting {
                    key,
                    reason: format!("{value} is not in {min}..={max}"),
                });
            }
        }
        if let Some(var) = &callback.bearer_env {
            if std::env::var(var).is_err() {
                return Err(InvalidSetting {
                    key: "auth.callback.bearer_env",
                    reason: format!("the environment variable {var} is not set (or not UTF-8)"),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> OriginConfig {
        let doc =
            format!("[node]\nid = \"t\"\nregion = \"nyc\"\n[registry]\npath = \"r.db\"\n{extra}");
        toml::from_str(&doc).expect("parses")
    }

    #[test]
    fn defaults_are_valid() {
        config("").validate().expect("defaults valid");
    }

    #[test]
    fn bad_values_are_named_by_key() {
        // The shared sections' own checks are longhaul_node's tests; here, that the
        // origin runs them and its own.
        for (extra, key) in [
            (
                "[ingest]\nmedia_timeout_secs = inf",
                "ingest.media_timeout_secs",
            ),
            ("[http]\nmax_connections = 0", "http.max_connections"),
            ("[http]\napi_token = \"\"", "http.api_token"),
            ("[http]\napi_token = \"short\"", "http.api_token"),
            ("[endpoints]\nrenditions = 0", "endpoints.renditions"),
            ("[abuse]\nban_secs = 0", "abuse.ban_secs"),
        ] {
            let err = config(extra).validate().expect_err(extra);
            assert_eq!(err.key, key, "{extra}: {err}");
        }
    }

    #[test]
    fn http_section_keeps_its_keys_in_one_table() {
        let c = config(
            "[http]\nlisten = \"0.0.0.0:8081\"\napi_token = \"0123456789abcdef\"\nheader_timeout_secs = 5",
        );
        assert_eq!(c.http.server.listen.port(), 8081);
        assert_eq!(c.http.server.header_timeout_secs, 5.0);
        assert_eq!(c.http.api_token.as_deref(), Some("0123456789abcdef"));
        let doc = "[node]\nid = \"t\"\nregion = \"nyc\"\n[registry]\npath = \"r.db\"\n[http]\napi_tokn = \"x\"";
        let err = toml::from_str::<OriginConfig>(doc).expect_err("typo refused");
        assert!(err.to_string().contains("api_tokn"), "{err}");
    }

    fn bare(doc: &str) -> OriginConfig {
        toml::from_str(&format!("[node]\nid = \"t\"\nregion = \"nyc\"\n{doc}")).expect("parses")
    }

    #[test]
    fn the_registry_names_one_store_and_one_password_source() {
        for (doc, key) in [
            ("", "registry"),
            ("[registry]", "registry"),
            (
                "[registry]\npath = \"r.db\"\nurl = \"postgres://u@h/d\"",
                "registry",
            ),
            (
                "[registry]\npath = \"r.db\"\npassword_env = \"X\"",
                "registry.password_file",
            ),
            (
                "[registry]\nurl = \"postgres://u@h/d\"\npassword_env = \"X\"\npassword_file = \"f\"",
                "registry.password_env",
            ),
        ] {
            let err = bare(doc).validate().expect_err(doc);
            assert_eq!(err.key, key, "{doc}: {err}");
        }
        // A password in the URL, an unreadable file, a missing variable: named, and the
        // password never shown.
        let section = |extra: &str| {
            bare(&format!("[registry]\n{extra}"))
                .registry
                .expect("a registry")
        };
        for (extra, key) in [
            ("url = \"postgres://u:hunter2@h/d\"", "registry.url"),
            ("url = \"not a url at all\"", "registry.url"),
            (
                "url = \"postgres://u@h/d\"\npassword_file = \"/nonexistent/pw\"",
                "registry.password_file",
            ),
            (
                "url = \"postgres://u@h/d\"\npassword_env = \"LONGHAUL_TEST_SURELY_UNSET_VAR\"",
                "registry.password_env",
            ),
            // A database on another host, in the clear: refused unless said on purpose.
            ("url = \"postgres://u@db.internal/d\"", "registry.url"),
            (
                "url = \"postgres://u@db.internal/d\"\ntls_ca = \"/nonexistent/ca.pem\"",
                "registry.tls_ca",
            ),
        ] {
            let err = section(extra).store_config("t").expect_err(extra);
            assert_eq!(err.key, key, "{extra}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let config = section(&format!(
            "url = \"postgres://longhaul@db.internal:5433/longhaul?sslmode=disable\"\npassword_file = {:?}",
            file.display().to_string()
        ))
        .store_config("nyc-1")
        .expect("valid");
        let StoreConfig::Postgres(settings) = config else {
            panic!("not PostgreSQL")
        };
        assert_eq!(
            settings.password.as_deref(),
            Some("s3cret"),
            "one line, trimmed"
        );
        assert_eq!(settings.application_name, "longhaul nyc-1");
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    #[test]
    fn the_callback_is_checked() {
        let valid =
            "[auth]\nmode = \"callback\"\n[auth.callback]\nurl = \"http://auth.internal:8080/p\"";
        bare(valid)
            .validate()
            .expect("a callback needs no registry");
        for (doc, key) in [
            ("[auth]\nmode = \"callback\"", "auth.callback"),
            (
                "[auth]\nmode = \"callback\"\n[auth.callback]\nurl = \"https://x/p\"",
                "auth.callback.url",
            ),
            (
                "[auth]\nmode = \"callback\"\n[auth.callback]\nurl = \"nope\"",
                "auth.callback.url",
            ),
            (
                &format!("{valid}\ntimeout_ms = 0"),
                "auth.callback.timeout_ms",
            ),
            (&format!("{valid}\nretries = 9"), "auth.callback.retries"),
            (
                "[auth]\nmode = \"callback\"\n[auth.callback]\nurl = \"http://u:pw@auth.internal/p\"",
                "auth.callback.url",
            ),
            (
                &format!("{valid}\nbearer_env = \"LONGHAUL_TEST_SURELY_UNSET_VAR\""),
                "auth.callback.bearer_env",
            ),
        ] {
            let err = bare(doc).validate().expect_err(doc);
            assert_eq!(err.key, key, "{doc}: {err}");
        }
        let err = toml::from_str::<OriginConfig>(
            "[node]\nid = \"t\"\nregion = \"nyc\"\n[auth]\nmode = \"ldap\"",
        )
        .expect_err("unknown mode");
        assert!(err.to_string().contains("ldap"), "{err}");
    }

    #[test]
    fn an_edge_s_name_is_bound_to_its_certificate_unless_said_otherwise() {
        let with = |keys: &str| {
            config(&format!(
                "[tunnel]\nlisten = \"127.0.0.1:0\"\n{keys}\n[tunnel.tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\""
            ))
            .validate()
        };
        assert_eq!(with("").unwrap_err().key, "tunnel.edge_name_suffix");
        with("edge_name_suffix = \"tunnel.example\"").expect("bound");
        with("allow_any_edge_name = true").expect("unbound, on purpose");
        assert_eq!(
            with("edge_name_suffix = \"x\"\nallow_any_edge_name = true")
                .unwrap_err()
                .key,
            "tunnel.allow_any_edge_name"
        );
        let fingerprint = "ab".repeat(32);
        with(&format!(
            "edge_name_suffix = \"t\"\ndenied_certificates = [\"{fingerprint}\"]"
        ))
        .expect("a fingerprint");
        assert_eq!(
            with("edge_name_suffix = \"t\"\ndenied_certificates = [\"fra-1\"]")
                .unwrap_err()
                .key,
            "tunnel.denied_certificates"
        );
    }
}
