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
//! Every URL handed out resolves back to its entry, leg and token with
//! [`crate::resolve_publish`], as long as the hosts pass [`check_host`].

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::entry_id::{
    stream_name, ENTRY_PREFIX_MAX_DIGITS, ENTRY_SUFFIX_MAX_CHARS, MAX_RENDITION,
};
use crate::leg::Leg;
use crate::query::percent_encode;

/// Where one leg of a place is reachable: a host and its two ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestAddress {
    /// A host name (`kpublish.example.com`) or address (`127.0.0.1`, `::1`).
    pub host: String,
    /// The plain RTMP port, usually 1935.
    pub rtmp_port: u16,
    /// The RTMPS port, usually 443.
    pub rtmps_port: u16,
}

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
            let token = percent_encode(token);
            match self {
                LegHosts::Subdomains(_) => format!(
                    "{scheme}://{entry_id}.{}.{}:{port}/{app}/?t={token}",
                    leg.label(),
                    address.host
                ),
                LegHosts::PerLeg { .. } => format!(
                    "{scheme}://{}:{port}/{app}/?t={token}&i={}",
                    url_host(&address.host),
                    leg.index_param()
                ),
            }
        };
        LegUrls {
            primary_rtmp: url(false, Leg::Primary),
            backup_rtmp: url(false, Leg::Backup),
            primary_rtmps: url(true, Leg::Primary),
            backup_rtmps: url(true, Leg::Backup),
        }
    }

    /// Checks every host with [`check_host`] and that no port is 0.
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
                ("rtmp_port", address.rtmp_port),
                ("rtmps_port", address.rtmps_port),
            ] {
                if port == 0 {
                    return Err(bad(field, "is 0; encoders need a real port".into()));
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
    Endpoints {
        origins: hosts.origins.urls(&hosts.app, entry_id, token),
        stream_names: (1..=renditions.clamp(1, MAX_RENDITION))
            .map(|n| stream_name(entry_id, n))
            .collect(),
        regions: hosts
            .regions
            .iter()
            .map(|r| RegionEndpoints {
                region: r.region.clone(),
                name: r.name.clone(),
                urls: r.legs.urls(&hosts.app, entry_id, token),
                speed_test: r.speed_test.clone(),
            })
            .collect(),
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
        let address = |host: &str, rtmp_port, rtmps_port| IngestAddress {
            host: host.into(),
            rtmp_port,
            rtmps_port,
        };
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
}
