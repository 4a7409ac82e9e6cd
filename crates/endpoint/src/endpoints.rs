//! The endpoint URLs and stream names we hand out for an entry.
//!
//! Two URL forms, chosen by [`EndpointHosts::use_leg_subdomains`]:
//!
//! - **Leg subdomains** (production, the product's form): the leg is a host label,
//!   `rtmp://1_gdrt137u.p.publish.example.com:1935/kLive/?t=tok`. Needs wildcard DNS
//!   (and a wildcard certificate for RTMPS).
//! - **Query leg** (local development, where `127.0.0.1` has no subdomains): the leg is
//!   an `i=0|1` parameter, `rtmp://127.0.0.1:1935/kLive/?t=tok&i=0`.
//!
//! Both forms resolve back to the same target with [`crate::resolve_publish`].

use serde::{Deserialize, Serialize};

use crate::entry_id::{stream_name, MAX_RENDITION};
use crate::leg::Leg;
use crate::query::percent_encode;

/// Where this cluster's ingest is reachable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointHosts {
    /// The ingest host name (`publish.example.com`) or address (`127.0.0.1`, `::1`).
    pub rtmp_host: String,
    /// The plain RTMP port, usually 1935.
    pub rtmp_port: u16,
    /// The RTMPS port, usually 443.
    pub rtmps_port: u16,
    /// The application, normally [`crate::APPLICATION`] (`kLive`).
    pub app: String,
    /// Put the entry and leg in the host (`{entryId}.{p|b}.{rtmp_host}`) rather than the
    /// leg in an `i` parameter.
    pub use_leg_subdomains: bool,
}

/// Everything an encoder's operator needs to publish to an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// Primary leg, plain RTMP.
    pub primary_rtmp: String,
    /// Backup leg, plain RTMP.
    pub backup_rtmp: String,
    /// Primary leg, RTMPS.
    pub primary_rtmps: String,
    /// Backup leg, RTMPS.
    pub backup_rtmps: String,
    /// One stream name per rendition: `{entryId}_1` .. `{entryId}_{n}`.
    pub stream_names: Vec<String>,
}

/// The endpoints of `entry_id` with publish token `token` and `renditions` stream names.
/// `renditions` is clamped to `1..=99`, the range stream names can carry.
pub fn entry_endpoints(
    entry_id: &str,
    token: &str,
    hosts: &EndpointHosts,
    renditions: u32,
) -> Endpoints {
    let url = |scheme: &str, port: u16, leg: Leg| {
        let host = if hosts.use_leg_subdomains {
            format!("{entry_id}.{}.{}", leg.label(), hosts.rtmp_host)
        } else {
            url_host(&hosts.rtmp_host)
        };
        let mut url = format!(
            "{scheme}://{host}:{port}/{}/?t={}",
            hosts.app,
            percent_encode(token)
        );
        if !hosts.use_leg_subdomains {
            url.push_str("&i=");
            url.push_str(leg.index_param());
        }
        url
    };
    Endpoints {
        primary_rtmp: url("rtmp", hosts.rtmp_port, Leg::Primary),
        backup_rtmp: url("rtmp", hosts.rtmp_port, Leg::Backup),
        primary_rtmps: url("rtmps", hosts.rtmps_port, Leg::Primary),
        backup_rtmps: url("rtmps", hosts.rtmps_port, Leg::Backup),
        stream_names: (1..=renditions.clamp(1, MAX_RENDITION))
            .map(|n| stream_name(entry_id, n))
            .collect(),
    }
}

/// A host as written in a URL: IPv6 addresses go in brackets.
fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(url_host("::1"), "[::1]");
        assert_eq!(url_host("[::1]"), "[::1]");
        assert_eq!(url_host("127.0.0.1"), "127.0.0.1");
    }
}
