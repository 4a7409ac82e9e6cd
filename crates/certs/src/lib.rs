//! # longhaul-certs: certificates that change under a running node
//!
//! Certificates expire and keys get stolen; neither should need a restart that drops
//! every encoder. This crate holds what a node needs to swap its TLS files while it
//! runs: the RTMPS certificate, the cluster certificate and CA of the tunnels, and a
//! deny list of certificate fingerprints the origins refuse.
//!
//! ```text
//!  files ──read──▶ settle (changed? settled?) ──▶ check (parse, key, dates, CA, role)
//!                                                   │ ok             │ refused
//!                                                   ▼                ▼
//!            slots: IdentitySlot, TrustSlot, DenyList         Outcome::Refused: the old
//!              ▲ every new handshake reads them               files stay, the node logs
//!        rustls (RTMPS, QUIC tunnels)                          the file and the reason
//! ```
//!
//! | module | what it holds |
//! |---|---|
//! | [`check`] | whether files may be served, sans IO, time passed in |
//! | [`settle`] | when changed files are looked at, sans IO |
//! | [`fingerprint`] | SHA-256 fingerprints and the deny list, sans IO |
//! | [`slot`] | rustls resolvers and verifiers that read swappable slots |
//! | [`reload`] | the [`Reload`] things a node's watcher drives: [`Credentials`], [`DeniedCertificates`] |
//!
//! The watcher itself (a poll every second and SIGHUP, logs and metrics) is the node's:
//! `longhaul_node::reload`. This crate knows nothing of nodes or tunnels.

pub mod check;
pub mod fingerprint;
pub mod reload;
pub mod settle;
pub mod slot;

pub use check::{provider, Refusal, Usage};
pub use fingerprint::{DenyList, Fingerprint};
pub use reload::{CredentialPaths, Credentials, DeniedCertificates, Outcome, Reload};
pub use rustls_pki_types::UnixTime;
