//! The endpoint URLs and stream names we hand out for an entry.
//!
//! An encoder publishes either straight to the data centres (the origins) or, from far
//! away, to a regional edge that keeps persistent tunnels to them (the product's EMEA,
//! LATAM and APAC endpoints). Each of those places has two legs, primary and backup,
//! and each leg an RTMP and an RTMPS URL. A place names its legs one of two ways
//! ([`LegHosts`]):
//!
//! - **Leg subdomains** (production, the product's form): the entry and leg are host
//!   labels, `rtmp://1_gdrt137u.p.kpublish.example.com:1935/kLive/?t=tok`, and DNS sends
//!   `*.p.` and `*.b.` to different data centres (or, for a region,
//!   `1_gdrt137u.p.fra.kpublish.example.com` to its edges). Needs wildcard DNS and a
//!   wildcard certificate for RTMPS.
//! - **A host and ports per leg** (local development, or a site without wildcard DNS):
//!   `rtmp://127.0.0.1:1935/kLive/?t=tok&i=0` and `rtmp://127.0.0.1:2935/kLive/?t=tok&i=1`.
//!   The leg also goes in `i=0|1`, so the node that takes the publish (an origin, or an
//!   edge choosing the origin for the leg) knows it even when both legs share a host.
//!
//! A place whose addresses have an `rtsp_port` also offers RTSP, for devices that do not
//! speak RTMP (the product's "RTSP endpoints"): the same legs and token, but the URL
//! names the stream, so there is one pair of URLs per rendition ([`RtspRendition`]):
//! `rtsp://1_gdrt137u.p.s.kpublish.example.com:554/kLive/1_gdrt137u_1?t=tok` (an `s`
//! label after the leg's, so DNS may send RTSP elsewhere: wildcard records and, for
//! RTSPS, certificates for `*.p.s.{host}` and `*.b.s.{host}`), or
//! `rtsp://127.0.0.1:1554/kLive/1_gdrt137u_1?t=tok&i=0` with a host per leg. An
//! `rtsps_port` adds the same over TLS (`rtsps://...:322/...`). Without an `rtsp_port` a
//! place lists no RTSP at all, and its JSON is as before.
//!
//! Every URL handed out resolves back to its entry, leg and token with
//! [`crate::resolve_publish`] (RTSP ones with [`crate::resolve_rtsp_publish`]), as long
//! as the place passes [`LegHosts::check`].

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::entry_id::{
    stream_name, ENTRY_PREFIX_MAX_DIGITS, ENTRY_SUFFIX_MAX_CHARS, MAX_RENDITION,
};
use crate::leg::Leg;
use crate::query::percent_encode;

/// Where one leg of a place is reachable: a host, its two RTMP ports and, where RTSP is
/// offered, its RTSP ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestAddress {
    /// A host name (`kpublish.example.com`) or address (`127.0.0.1`, `::1`).
    pub host: String,
    /// The plain RTMP port, usually 1935.
    pub rtmp_port: u16,
    /// The RTMPS port, usually 443.
    pub rtmps_port: u16,
    /// The plain RTSP port, usually 554; `None`: no RTSP here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtsp_port: Option<u16>,
    /// The RTSPS port, usually 322; `None`: no RTSPS here. Only beside an `rtsp_port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtsps_port: Option<u16>,
}

impl IngestAddress {
    /// An address offering RTMP and RTMPS only.
    pub fn rtmp(host: &str, rtmp_port: u16, rtmps_port: u16) -> IngestAddress {
        IngestAddress {
            host: host.to_owned(),
            rtmp_port,
            rtmps_port,
            rtsp_port: None,
            rtsps_port: None,
        }
    }

    /// The same address also offering RTSP on `rtsp_port` and, if given, RTSPS.
    pub fn with_rtsp(self, rtsp_port: u16, rtsps_port: Option<u16>) -> IngestAddress {
        IngestAddress {
            rtsp_port: Some(rtsp_port),
            rtsps_port,
            ..self
        }
    }
}

/// The label that follows the leg's in an RTSP host under leg subdomains:
/// `{entryId}.{p|b}.s.{host}`.
pub const RTSP_HOST_LABEL: &str = "s";

/// How a place names its two legs in URLs; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegHosts {
    /// `{entryId}.{p|b}.{host}` on the address's ports: DNS routes each leg.
    Subdomains(IngestAddress),
    /// Each leg its own host and ports (they may be the same), the leg in `i=0|1`.
    PerLeg {
        primary: IngestAddress,
        backup: IngestAddress,
    },
}

impl LegHosts {
    /// Both legs on one host and ports, told apart by `i=0|1` only.
    pub fn shared(address: IngestAddress) -> LegHosts {
        LegHosts::PerLeg {
            primary: address.clone(),
            backup: address,
        }
    }

    /// Whether the leg is a host label (`{entryId}.{p|b}.{host}`).
    pub fn uses_subdomains(&self) -> bool {
        matches!(self, LegHosts::Subdomains(_))
    }

    /// The address configured for `leg` (for leg subdomains, the one shared suffix).
    pub fn address(&self, leg: Leg) -> &IngestAddress {
        match (self, leg) {
            (LegHosts::Subdomains(address), _) => address,
            (LegHosts::PerLeg { primary, .. }, Leg::Primary) => primary,
            (LegHosts::PerLeg { backup, .. }, Leg::Backup) => backup,
        }
    }

    /// The RTMP and RTMPS URLs of both legs for `entry_id` and `token` on `app`.
    pub fn urls(&self, app: &str, entry_id: &str, token: &str) -> LegUrls {
        let url = |secure: bool, leg: Leg| {
            let address = self.address(leg);
            let (scheme, port) = if secure {
                ("rtmps", address.rtmps_port)
            } else {
                ("rtmp", address.rtmp_port)
            };
            self.url(leg, scheme, port, None, &format!("{app}/"), entry_id, token)
        };
        LegUrls {
            primary_rtmp: url(false, Leg::Primary),
            backup_rtmp: url(false, Leg::Backup),
            primary_rtmps: url(true, Leg::Primary),
            backup_rtmps: url(true, Leg::Backup),
        }
    }

    /// The RTSP (and, where offered, RTSPS) URLs of both legs for each of `stream_names`
    /// of `entry_id`; empty unless both legs have an `rtsp_port`. RTSPS is listed only
    /// when both legs have an `rtsps_port`.
    pub fn rtsp_urls(
        &self,
        app: &str,
        entry_id: &str,
        token: &str,
        stream_names: &[String],
    ) -> Vec<RtspRendition> {
        let both = |port: fn(&IngestAddress) -> Option<u16>| {
            Some((
                port(self.address(Leg::Primary))?,
                port(self.address(Leg::Backup))?,
            ))
        };
        let Some(rtsp) = both(|a| a.rtsp_port) else {
            return Vec::new();
        };
        let rtsps = both(|a| a.rtsps_port);
        let label = Some(RTSP_HOST_LABEL);
        stream_names
            .iter()
            .map(|name| {
                let path = format!("{app}/{name}");
                let url = |leg: Leg, scheme: &str, port: u16| {
                    self.url(leg, scheme, port, label, &path, entry_id, token)
                };
                RtspRendition {
                    stream_name: name.clone(),
                    primary_rtsp: url(Leg::Primary, "rtsp", rtsp.0),
                    backup_rtsp: url(Leg::Backup, "rtsp", rtsp.1),
                    primary_rtsps: rtsps.map(|(p, _)| url(Leg::Primary, "rtsps", p)),
                    backup_rtsps: rtsps.map(|(_, b)| url(Leg::Backup, "rtsps", b)),
                }
            })
            .collect()
    }

    /// One URL: `{scheme}://{entryId}.{p|b}[.{label}].{host}:{port}/{path}?t={token}`
    /// under leg subdomains, else `{scheme}://{host}:{port}/{path}?t={token}&i={0|1}`.
    #[allow(clippy::too_many_arguments)]
    fn url(
        &self,
        leg: Leg,
        scheme: &str,
        port: u16,
        label: Option<&str>,
        path: &str,
        entry_id: &str,
        token: &str,
    ) -> String {
        let address = self.address(leg);
        let token = percent_encode(token);
        match self {
            LegHosts::Subdomains(_) => {
                let label = label.map(|l| format!(".{l}")).unwrap_or_default();
                format!(
                    "{scheme}://{entry_id}.{}{label}.{}:{port}/{path}?t={token}",
                    leg.label(),
                    address.host
                )
            }
            LegHosts::PerLeg { .. } => format!(
                "{scheme}://{}:{port}/{path}?t={token}&i={}",
                url_host(&address.host),
                leg.index_param()
            ),
        }
    }

    /// Checks every host with [`check_host`], that no port is 0, that RTSPS comes only
    /// beside RTSP, and that both legs offer the same of RTSP and RTSPS (their URLs come
    /// in primary/backup pairs). Under leg subdomains with RTSP, the host must leave room
    /// for `{entryId}.p.s.` ([`MAX_RTSP_SUBDOMAIN_HOST_LEN`]).
    pub fn check(&self) -> Result<(), BadLegAddress> {
        let subdomains = self.uses_subdomains();
        let legs: &[(Option<Leg>, &IngestAddress)] = match self {
            LegHosts::Subdomains(address) => &[(None, address)],
            LegHosts::PerLeg { primary, backup } => {
                &[(Some(Leg::Primary), primary), (Some(Leg::Backup), backup)]
            }
        };
        for &(leg, address) in legs {
            let bad = |field, reason| BadLegAddress { leg, field, reason };
            check_host(&address.host, subdomains).map_err(|e| bad("host", e))?;
            for (field, port) in [
                ("rtmp_port", Some(address.rtmp_port)),
                ("rtmps_port", Some(address.rtmps_port)),
                ("rtsp_port", address.rtsp_port),
                ("rtsps_port", address.rtsps_port),
            ] {
                if port == Some(0) {
                    return Err(bad(field, "is 0; encoders need a real port".into()));
                }
            }
            if address.rtsps_port.is_some() && address.rtsp_port.is_none() {
                return Err(bad(
                    "rtsps_port",
                    "is set without rtsp_port: RTSPS is offered beside RTSP, so set \
                     rtsp_port too"
                        .into(),
                ));
            }
            if subdomains
                && address.rtsp_port.is_some()
                && address.host.len() > MAX_RTSP_SUBDOMAIN_HOST_LEN
            {
                return Err(bad(
                    "host",
                    format!(
                        "is {} characters; with RTSP's {{entryId}}.p.s. in front it must be \
                         at most {MAX_RTSP_SUBDOMAIN_HOST_LEN} to stay a DNS name",
                        address.host.len()
                    ),
                ));
            }
        }
        if let LegHosts::PerLeg { primary, backup } = self {
            for (field, port) in [
                ("rtsp_port", (primary.rtsp_port, backup.rtsp_port)),
                ("rtsps_port", (primary.rtsps_port, backup.rtsps_port)),
            ] {
                if port.0.is_some() != port.1.is_some() {
                    let (has, lacks) = if port.0.is_some() {
                        (Leg::Primary, Leg::Backup)
                    } else {
                        (Leg::Backup, Leg::Primary)
                    };
                    return Err(BadLegAddress {
                        leg: Some(lacks),
                        field,
                        reason: format!(
                            "is not set, but the {has} leg's is: RTSP URLs come in \
                             primary/backup pairs, so give both legs one or neither"
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Why [`LegHosts::check`] refused an address: which leg (none under leg subdomains,
/// where both share it), which field (`host`, `rtmp_port`, `rtmps_port`), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLegAddress {
    pub leg: Option<Leg>,
    pub field: &'static str,
    pub reason: String,
}

impl std::fmt::Display for BadLegAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(leg) = self.leg {
            write!(f, "{leg} ")?;
        }
        write!(f, "{} {}", self.field, self.reason)
    }
}

/// A regional endpoint: an edge (or a pair of them) near encoders far from the data
/// centres, with tunnels to the origins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionHosts {
    /// The region code, as edges name their `node.region` (`fra`).
    pub region: String,
    /// What operators read, `EMEA (Frankfurt)`.
    pub name: String,
    /// Where its legs are: `{entryId}.{p|b}.fra.kpublish.example.com`, or per-leg
    /// addresses.
    pub legs: LegHosts,
    /// A page that measures the encoder's path to this region, if there is one.
    pub speed_test: Option<String>,
}

/// A page that measures an encoder's path to one place, so its operator can pick the
/// endpoint with the best speed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeedTest {
    /// The place's region code (`nyc`).
    pub region: String,
    /// What operators read, `US (New York)`.
    pub name: String,
    /// The page, `http://ny-publish-speedtest.example.com`.
    pub url: String,
}

/// Where this cluster's ingest is reachable: everything [`entry_endpoints`] needs
/// besides the entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointHosts {
    /// The application, normally [`crate::APPLICATION`] (`kLive`).
    pub app: String,
    /// The data centres: leg p to one origin, leg b to the other.
    pub origins: LegHosts,
    /// Speed tests of the data centres, listed with every entry.
    pub speed_tests: Vec<SpeedTest>,
    /// The regional endpoints, in the order they are listed.
    pub regions: Vec<RegionHosts>,
}

impl EndpointHosts {
    /// One place with no regions and no speed tests: what a single host needs.
    pub fn single(app: &str, origins: LegHosts) -> EndpointHosts {
        EndpointHosts {
            app: app.to_owned(),
            origins,
            speed_tests: Vec::new(),
            regions: Vec::new(),
        }
    }
}

/// The four URLs of one place: each leg over RTMP and RTMPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegUrls {
    /// Primary leg, plain RTMP.
    pub primary_rtmp: String,
    /// Backup leg, plain RTMP.
    pub backup_rtmp: String,
    /// Primary leg, RTMPS.
    pub primary_rtmps: String,
    /// Backup leg, RTMPS.
    pub backup_rtmps: String,
}

impl LegUrls {
    /// The URL of `leg` over RTMP or, with `secure`, RTMPS.
    pub fn url(&self, leg: Leg, secure: bool) -> &str {
        match (leg, secure) {
            (Leg::Primary, false) => &self.primary_rtmp,
            (Leg::Backup, false) => &self.backup_rtmp,
            (Leg::Primary, true) => &self.primary_rtmps,
            (Leg::Backup, true) => &self.backup_rtmps,
        }
    }

    /// All four, primary RTMP first, each with its leg and whether it is RTMPS.
    pub fn all(&self) -> [(Leg, bool, &str); 4] {
        [
            (Leg::Primary, false, &self.primary_rtmp),
            (Leg::Backup, false, &self.backup_rtmp),
            (Leg::Primary, true, &self.primary_rtmps),
            (Leg::Backup, true, &self.backup_rtmps),
        ]
    }
}

/// One rendition's RTSP publish URLs at one place: RTSP names the stream in its URL
/// (`.../kLive/1_gdrt137u_2?t=tok`), where RTMP gives it separately, so each rendition
/// has URLs of its own. One object per rendition, with its stream name beside its
/// URLs, lets a camera's operator copy the pair for the stream they want without
/// building a URL, and reads the same in the API, the CLI's table and a console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtspRendition {
    /// The rendition's stream name, `{entryId}_{n}`, as in [`Endpoints::stream_names`].
    pub stream_name: String,
    /// Primary leg, plain RTSP.
    pub primary_rtsp: String,
    /// Backup leg, plain RTSP.
    pub backup_rtsp: String,
    /// Primary leg, RTSPS, where offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_rtsps: Option<String>,
    /// Backup leg, RTSPS, where offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_rtsps: Option<String>,
}

impl RtspRendition {
    /// The URL of `leg` over RTSP or, with `secure`, RTSPS (if offered).
    pub fn url(&self, leg: Leg, secure: bool) -> Option<&str> {
        match (leg, secure) {
            (Leg::Primary, false) => Some(&self.primary_rtsp),
            (Leg::Backup, false) => Some(&self.backup_rtsp),
            (Leg::Primary, true) => self.primary_rtsps.as_deref(),
            (Leg::Backup, true) => self.backup_rtsps.as_deref(),
        }
    }

    /// Every URL listed, primary RTSP first, each with its leg and whether it is RTSPS.
    pub fn all(&self) -> Vec<(Leg, bool, &str)> {
        [
            (Leg::Primary, false),
            (Leg::Backup, false),
            (Leg::Primary, true),
            (Leg::Backup, true),
        ]
        .into_iter()
        .filter_map(|(leg, secure)| Some((leg, secure, self.url(leg, secure)?)))
        .collect()
    }
}

/// One regional endpoint of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionEndpoints {
    /// The region code (`fra`).
    pub region: String,
    /// What operators read, `EMEA (Frankfurt)`.
    pub name: String,
    /// Its URLs, flattened into this object.
    #[serde(flatten)]
    pub urls: LegUrls,
    /// Its RTSP URLs, one entry per rendition; empty (and left out of JSON) where the
    /// region offers no RTSP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rtsp: Vec<RtspRendition>,
    /// Its speed test page, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_test: Option<String>,
}

/// Everything an encoder's operator needs to publish to an entry. In JSON the data
/// centres' URLs are top-level fields (`primary_rtmp`, ...), as they always were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// Straight to the data centres.
    #[serde(flatten)]
    pub origins: LegUrls,
    /// One stream name per rendition: `{entryId}_1` .. `{entryId}_{n}`.
    pub stream_names: Vec<String>,
    /// Straight to the data centres over RTSP, one entry per rendition; empty (and left
    /// out of JSON, so answers without RTSP are as they were) where none is offered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rtsp: Vec<RtspRendition>,
    /// Through the regional edges.
    #[serde(default)]
    pub regions: Vec<RegionEndpoints>,
    /// The data centres' speed tests (each region lists its own).
    #[serde(default)]
    pub speed_tests: Vec<SpeedTest>,
}

/// The endpoints of `entry_id` with publish token `token` and `renditions` stream names.
/// `renditions` is clamped to `1..=99`, the range stream names can carry.
pub fn entry_endpoints(
    entry_id: &str,
    token: &str,
    hosts: &EndpointHosts,
    renditions: u32,
) -> Endpoints {
    let stream_names: Vec<String> = (1..=renditions.clamp(1, MAX_RENDITION))
        .map(|n| stream_name(entry_id, n))
        .collect();
    Endpoints {
        origins: hosts.origins.urls(&hosts.app, entry_id, token),
        rtsp: hosts
            .origins
            .rtsp_urls(&hosts.app, entry_id, token, &stream_names),
        regions: hosts
            .regions
            .iter()
            .map(|r| RegionEndpoints {
                region: r.region.clone(),
                name: r.name.clone(),
                urls: r.legs.urls(&hosts.app, entry_id, token),
                rtsp: r.legs.rtsp_urls(&hosts.app, entry_id, token, &stream_names),
                speed_test: r.speed_test.clone(),
            })
            .collect(),
        stream_names,
        speed_tests: hosts.speed_tests.clone(),
    }
}

/// Longest entry id: `{10 digits}_{16 characters}`.
const MAX_ENTRY_ID_LEN: usize = ENTRY_PREFIX_MAX_DIGITS + 1 + ENTRY_SUFFIX_MAX_CHARS;
/// Longest DNS name (RFC 1035: 255 octets on the wire, 253 written out).
const MAX_DNS_NAME_LEN: usize = 253;
/// Longest host under leg subdomains: `{entryId}.p.` goes in front and the whole name
/// must stay a DNS name.
pub const MAX_SUBDOMAIN_HOST_LEN: usize = MAX_DNS_NAME_LEN - MAX_ENTRY_ID_LEN - ".p.".len();
/// Longest host under leg subdomains where RTSP is offered: `{entryId}.p.s.` goes in front.
pub const MAX_RTSP_SUBDOMAIN_HOST_LEN: usize = MAX_SUBDOMAIN_HOST_LEN - ".s".len();

/// Checks that `host` can go in the URLs we hand out and come back through
/// [`crate::resolve_publish`]: a DNS name (labels of `[A-Za-z0-9-]`, 1 to 63 long, no
/// hyphen at either end, no empty label), or, unless the legs are `subdomains` of it,
/// an IPv4 or IPv6 address. Without underscores a host's labels never read as an entry
/// id, so a per-leg host cannot be mistaken for `{entryId}.{p|b}.rest`.
pub fn check_host(host: &str, subdomains: bool) -> Result<(), String> {
    let is_address = host.parse::<Ipv4Addr>().is_ok()
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .parse::<Ipv6Addr>()
            .is_ok();
    if is_address {
        return if subdomains {
            Err(format!(
                "{host:?} is an address, which has no subdomains: name a host with wildcard \
                 DNS, or give each leg its own address (leg_subdomains = false)"
            ))
        } else {
            Ok(())
        };
    }
    let max = if subdomains {
        MAX_SUBDOMAIN_HOST_LEN
    } else {
        MAX_DNS_NAME_LEN
    };
    if host.is_empty() || host.len() > max {
        return Err(format!(
            "{:?} is not a host name of 1 to {max} characters",
            excerpt(host)
        ));
    }
    let good_label = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if !host.split('.').all(good_label) {
        return Err(format!(
            "{:?} is not a host name: dot-separated labels of letters, digits and inner \
             hyphens, 1 to 63 each, or an IP address",
            excerpt(host)
        ));
    }
    Ok(())
}

/// The first 64 characters of `text`, for an error message.
fn excerpt(text: &str) -> String {
    text.chars().take(64).collect()
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

    #[test]
    fn hosts_that_cannot_be_handed_out_are_named() {
        for good in [
            "kpublish.example.com",
            "fra.kpublish.example.com",
            "localhost",
            "a-b.c",
        ] {
            check_host(good, true).expect(good);
            check_host(good, false).expect(good);
        }
        for address in ["127.0.0.1", "::1", "[::1]", "2001:db8::7"] {
            check_host(address, false).expect(address);
            let err = check_host(address, true).unwrap_err();
            assert!(err.contains("no subdomains"), "{err}");
        }
        let long_label = "a".repeat(64);
        let long_host = format!("{}.com", ["abcdefghi"; 26].join("."));
        for bad in [
            "",
            "kpublish.example.com.",
            ".example.com",
            "a..b",
            "1_gdrt137u.p.example.com",
            "-a.example.com",
            "a-.example.com",
            "host:1935",
            "rtmp://host",
            "h/ost",
            "h ost",
            "hôst.example",
            long_label.as_str(),
            long_host.as_str(),
            "fe80::1%eth0",
        ] {
            for subdomains in [false, true] {
                assert!(check_host(bad, subdomains).is_err(), "{bad:?}");
            }
        }
        // The longest host that still fits under leg subdomains.
        let last = MAX_SUBDOMAIN_HOST_LEN - 3 * 56;
        let fits = format!("{0}.{0}.{0}.{1}", "a".repeat(55), "b".repeat(last));
        assert_eq!(fits.len(), MAX_SUBDOMAIN_HOST_LEN);
        check_host(&fits, true).expect("fits");
        let over = format!("a{fits}");
        check_host(&over, true).unwrap_err();
        check_host(&over, false).expect("fine without subdomains");
    }

    #[test]
    fn zero_ports_and_bad_hosts_name_the_leg() {
        let address = IngestAddress::rtmp;
        LegHosts::shared(address("127.0.0.1", 1935, 1936))
            .check()
            .expect("valid");
        let err = LegHosts::PerLeg {
            primary: address("127.0.0.1", 1935, 1936),
            backup: address("127.0.0.1", 2935, 0),
        }
        .check()
        .unwrap_err();
        assert_eq!((err.leg, err.field), (Some(Leg::Backup), "rtmps_port"));
        assert!(
            err.to_string().starts_with("backup rtmps_port is 0"),
            "{err}"
        );
        let err = LegHosts::Subdomains(address("127.0.0.1", 1935, 443))
            .check()
            .unwrap_err();
        assert_eq!((err.leg, err.field), (None, "host"));
        assert!(
            err.to_string()
                .starts_with("host \"127.0.0.1\" is an address"),
            "{err}"
        );
    }

    #[test]
    fn rtsp_ports_are_checked_as_pairs_and_beside_rtsp() {
        let rtmp = |host: &str| IngestAddress::rtmp(host, 1935, 443);
        let rtsp = |host: &str, tls| rtmp(host).with_rtsp(554, tls);
        LegHosts::Subdomains(rtsp("kpublish.example.com", Some(322)))
            .check()
            .expect("valid");
        LegHosts::PerLeg {
            primary: rtsp("127.0.0.1", None),
            backup: rtsp("127.0.0.2", None),
        }
        .check()
        .expect("RTSP without RTSPS is fine");

        let err = LegHosts::shared(rtmp("127.0.0.1").with_rtsp(0, None))
            .check()
            .unwrap_err();
        assert_eq!((err.leg, err.field), (Some(Leg::Primary), "rtsp_port"));
        let err = LegHosts::Subdomains(IngestAddress {
            rtsps_port: Some(322),
            ..rtmp("kpublish.example.com")
        })
        .check()
        .unwrap_err();
        assert_eq!((err.leg, err.field), (None, "rtsps_port"));
        assert!(err.reason.contains("without rtsp_port"), "{err}");

        // One leg with RTSP and the other without would list half a pair.
        let err = LegHosts::PerLeg {
            primary: rtmp("127.0.0.1"),
            backup: rtsp("127.0.0.1", None),
        }
        .check()
        .unwrap_err();
        assert_eq!((err.leg, err.field), (Some(Leg::Primary), "rtsp_port"));
        assert!(
            err.to_string()
                .starts_with("primary rtsp_port is not set, but the backup leg's is"),
            "{err}"
        );
        let err = LegHosts::PerLeg {
            primary: rtsp("127.0.0.1", Some(1322)),
            backup: rtsp("127.0.0.1", None),
        }
        .check()
        .unwrap_err();
        assert_eq!((err.leg, err.field), (Some(Leg::Backup), "rtsps_port"));

        // `{entryId}.p.s.` must fit in front of the host, two characters more than RTMP's.
        let last = MAX_RTSP_SUBDOMAIN_HOST_LEN - 3 * 56;
        let fits = format!("{0}.{0}.{0}.{1}", "a".repeat(55), "b".repeat(last));
        assert_eq!(fits.len(), MAX_RTSP_SUBDOMAIN_HOST_LEN);
        LegHosts::Subdomains(rtsp(&fits, None))
            .check()
            .expect("fits");
        let over = format!("a{fits}");
        LegHosts::Subdomains(rtmp(&over))
            .check()
            .expect("RTMP only");
        let err = LegHosts::Subdomains(rtsp(&over, None)).check().unwrap_err();
        assert_eq!((err.leg, err.field), (None, "host"));
        assert!(err.reason.contains("{entryId}.p.s."), "{err}");
    }

    #[test]
    fn no_rtsp_port_no_rtsp_urls() {
        let names = ["1_gdrt137u_1".to_owned()];
        let hosts = LegHosts::shared(IngestAddress::rtmp("127.0.0.1", 1935, 1936));
        assert!(hosts
            .rtsp_urls("kLive", "1_gdrt137u", "t", &names)
            .is_empty());
        // Half a pair (unchecked) lists nothing rather than one leg.
        let half = LegHosts::PerLeg {
            primary: IngestAddress::rtmp("127.0.0.1", 1935, 1936).with_rtsp(1554, Some(1322)),
            backup: IngestAddress::rtmp("127.0.0.1", 2935, 2936).with_rtsp(2554, None),
        };
        let urls = half.rtsp_urls("kLive", "1_gdrt137u", "t", &names);
        assert_eq!(urls.len(), 1);
        assert_eq!(urls[0].primary_rtsps, None);
        assert_eq!(urls[0].all().len(), 2);
    }
}
