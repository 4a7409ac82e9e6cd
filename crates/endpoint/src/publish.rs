//! Turning what an encoder sent (connect `app`, `tcUrl`, publish name) into a
//! [`PublishTarget`]: which entry, which rendition, which leg, and which token.
//!
//! The rules, from what real encoders send (ffmpeg, OBS/librtmp, FMLE, Wowza-style URLs):
//!
//! - **Application.** The base app is the connect `app` up to its first `?`, trailing
//!   `/` trimmed. It must be [`APPLICATION`] (`kLive`), compared ASCII case-insensitively.
//! - **Parameters** (`t` token, `e` entry, `i` leg, `p` partner) are read from three
//!   queries, in this order of precedence: the publish name's, the app's, the tcUrl's.
//!   The first place holding a non-empty value wins. Queries are `&`-separated `k=v`,
//!   %-decoded. `p` is accepted and ignored (the entry id alone names the entry).
//! - **Entry and rendition** come from the stream name, which must be `{entryId}_{n}`
//!   (see [`crate::parse_stream_name`]). An `e` parameter or a tcUrl host of the form
//!   `{entryId}.{p|b}.{rest}` that names another entry is an [`EndpointError::EntryMismatch`].
//! - **Leg** comes from the tcUrl host's second label (`p`/`b`), else from `i=0|1`, else
//!   the node's default. If both the host and `i` say something, they must agree.
//! - **Limits.** Each input longer than [`MAX_INPUT_LEN`] bytes is refused.

use std::fmt;

use crate::entry_id::{is_entry_id, parse_stream_name, stream_name};
use crate::error::{excerpt, EndpointError, EntrySource, Place};
use crate::leg::{Leg, LegSource};
use crate::query::{param, split_query};

/// The only application we ingest on, as in the product's URLs (`.../kLive/?t=...`).
pub const APPLICATION: &str = "kLive";

/// Longest `app`, `tcUrl` or publish name accepted, in bytes. ffmpeg caps tcUrl at 1024
/// characters; twice that leaves room for any real encoder and bounds the work an
/// attacker can make us do.
pub const MAX_INPUT_LEN: usize = 2048;

/// Where a publisher's stream goes, as resolved from what its encoder sent.
#[derive(Clone, PartialEq, Eq)]
pub struct PublishTarget {
    /// The entry id, like `1_gdrt137u`.
    pub entry_id: String,
    /// The rendition number `n` of the stream name, `1..=99`.
    pub rendition: u32,
    /// The leg this publisher is on.
    pub leg: Leg,
    /// Where the leg came from.
    pub leg_source: LegSource,
    /// The `t` token as presented (%-decoded), if any. Check it with the registry.
    pub token: Option<String>,
    /// The canonical stream name `{entryId}_{n}`, without any query.
    pub stream_name: String,
}

/// Shows everything but the token, so a target can be logged.
impl fmt::Debug for PublishTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishTarget")
            .field("entry_id", &self.entry_id)
            .field("rendition", &self.rendition)
            .field("leg", &self.leg)
            .field("leg_source", &self.leg_source)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("stream_name", &self.stream_name)
            .finish()
    }
}

/// Resolves a publish attempt; see the [module docs](self) for the rules.
///
/// `app` and `tc_url` are the connect command's fields (`tc_url` is optional in RTMP),
/// `publish_name` the publish command's stream name, and `default_leg` the leg this node
/// serves when the URL does not say.
pub fn resolve_publish(
    app: &str,
    tc_url: Option<&str>,
    publish_name: &str,
    default_leg: Leg,
) -> Result<PublishTarget, EndpointError> {
    check_len(Place::App, app)?;
    check_len(Place::StreamName, publish_name)?;
    if let Some(tc_url) = tc_url {
        check_len(Place::TcUrl, tc_url)?;
    }

    let (app_base, app_query) = split_query(app);
    let app_base = app_base.trim_end_matches('/');
    if !app_base.eq_ignore_ascii_case(APPLICATION) {
        return Err(EndpointError::UnknownApplication {
            app: excerpt(app_base),
        });
    }

    let (name, name_query) = split_query(publish_name);
    let Some((entry_id, rendition)) = parse_stream_name(name) else {
        return Err(EndpointError::BadStreamName {
            name: excerpt(name),
        });
    };

    let tc = tc_url.map(TcUrl::parse).unwrap_or_default();
    let queries = [
        (Place::StreamName, name_query),
        (Place::App, app_query),
        (Place::TcUrl, tc.query),
    ];
    let lookup = |key: &str| {
        queries
            .iter()
            .find_map(|&(place, query)| Some((param(query?, key)?, place)))
    };

    if let Some((other_entry, place)) = lookup("e") {
        if other_entry != entry_id {
            return Err(EndpointError::EntryMismatch {
                stream_entry: entry_id.to_owned(),
                other_entry: excerpt(&other_entry),
                other: EntrySource::Param(place),
            });
        }
    }
    let host = tc.host.and_then(LegHost::parse);
    if let Some(host) = &host {
        if host.entry_id != entry_id {
            return Err(EndpointError::EntryMismatch {
                stream_entry: entry_id.to_owned(),
                other_entry: host.entry_id.clone(),
                other: EntrySource::TcUrlHost,
            });
        }
    }

    let param_leg = match lookup("i") {
        Some((value, place)) => match Leg::from_index_param(&value) {
            Some(leg) => Some(leg),
            None => {
                return Err(EndpointError::BadLegParam {
                    value: excerpt(&value),
                    place,
                })
            }
        },
        None => None,
    };
    let (leg, leg_source) = match (host.map(|h| h.leg), param_leg) {
        (Some(host), Some(param)) if host != param => {
            return Err(EndpointError::LegMismatch { host, param })
        }
        (Some(host), _) => (host, LegSource::HostLabel),
        (None, Some(param)) => (param, LegSource::QueryParam),
        (None, None) => (default_leg, LegSource::NodeDefault),
    };

    Ok(PublishTarget {
        entry_id: entry_id.to_owned(),
        rendition,
        leg,
        leg_source,
        token: lookup("t").map(|(token, _)| token),
        stream_name: stream_name(entry_id, rendition),
    })
}

/// What an RTMP encoder would have sent for an RTSP publish URL: the product's RTSP
/// endpoints are `rtsp://{entryId}.{p|b}.s.{host}:554/kLive/{entryId}_{n}?t={token}`, so
/// the last path segment (with the query) is the publish name, the path before it the
/// `app`, and the URL up to the app the `tcUrl` (whose host gives the leg). Those go
/// through [`resolve_publish`]'s rules unchanged, so RTSP and RTMP publishes meet the
/// same ones. `None` for a URL with no `scheme://` or no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtspPublishParts {
    /// The path before the stream name (`kLive`).
    pub app: String,
    /// `scheme://authority/app`: its host carries the leg label.
    pub tc_url: String,
    /// The last path segment with the URL's query (`{entryId}_{n}?t={token}`).
    pub name: String,
}

impl RtspPublishParts {
    pub fn from_url(url: &str) -> Option<RtspPublishParts> {
        let (before_query, query) = split_query(url);
        let (scheme, rest) = before_query.split_once("://")?;
        let (authority, path) = rest.split_once('/')?;
        let path = path.trim_end_matches('/');
        let (app, name) = path.rsplit_once('/').unwrap_or(("", path));
        let name = match query {
            Some(q) => format!("{name}?{q}"),
            None => name.to_owned(),
        };
        Some(RtspPublishParts {
            app: app.to_owned(),
            tc_url: format!("{scheme}://{authority}/{app}"),
            name,
        })
    }
}

/// [`resolve_publish`] for an RTSP ANNOUNCE's URL (see [`RtspPublishParts`]).
pub fn resolve_rtsp_publish(url: &str, default_leg: Leg) -> Result<PublishTarget, EndpointError> {
    check_len(Place::TcUrl, url)?;
    let parts = RtspPublishParts::from_url(url)
        .ok_or_else(|| EndpointError::BadStreamName { name: excerpt(url) })?;
    resolve_publish(&parts.app, Some(&parts.tc_url), &parts.name, default_leg)
}

fn check_len(place: Place, text: &str) -> Result<(), EndpointError> {
    if text.len() > MAX_INPUT_LEN {
        return Err(EndpointError::InputTooLong {
            place,
            len: text.len(),
            max: MAX_INPUT_LEN,
        });
    }
    Ok(())
}

/// The parts of a tcUrl (`scheme://[user@]host[:port]/path?query`) we use. Lenient: a
/// tcUrl without `://` simply has no host.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct TcUrl<'a> {
    host: Option<&'a str>,
    query: Option<&'a str>,
}

impl<'a> TcUrl<'a> {
    fn parse(tc_url: &'a str) -> TcUrl<'a> {
        let (before_query, query) = split_query(tc_url);
        let host = before_query.split_once("://").and_then(|(_, rest)| {
            let authority = rest.split('/').next().unwrap_or_default();
            let host_port = authority.rsplit('@').next().unwrap_or_default();
            let host = match host_port.strip_prefix('[') {
                Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
                None => host_port.split(':').next().unwrap_or_default(),
            };
            (!host.is_empty()).then_some(host)
        });
        TcUrl { host, query }
    }
}

/// A host of the product's form `{entryId}.{p|b}.{rest}`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LegHost {
    entry_id: String,
    leg: Leg,
}

impl LegHost {
    fn parse(host: &str) -> Option<LegHost> {
        let host = host.to_ascii_lowercase();
        let mut labels = host.split('.');
        let entry_id = labels.next()?;
        let leg = Leg::from_label(labels.next()?)?;
        let rest: Vec<&str> = labels.collect();
        if !is_entry_id(entry_id) || rest.is_empty() || rest.iter().any(|l| l.is_empty()) {
            return None;
        }
        Some(LegHost {
            entry_id: entry_id.to_owned(),
            leg,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tc_url_parts() {
        let tc = TcUrl::parse("rtmp://1_gdrt137u.p.example.com:1935/kLive/?t=abc");
        assert_eq!(tc.host, Some("1_gdrt137u.p.example.com"));
        assert_eq!(tc.query, Some("t=abc"));
        assert_eq!(TcUrl::parse("rtmps://h/kLive").host, Some("h"));
        assert_eq!(TcUrl::parse("rtmp://u:pw@h:1/kLive").host, Some("h"));
        assert_eq!(TcUrl::parse("rtmp://[::1]:1935/kLive").host, Some("::1"));
        assert_eq!(TcUrl::parse("rtmp://h?t=x").host, Some("h"));
        assert_eq!(TcUrl::parse("kLive?t=x").host, None);
        assert_eq!(TcUrl::parse("rtmp:///kLive").host, None);
    }

    #[test]
    fn leg_hosts() {
        let host = LegHost::parse("1_GDRT137U.B.Example.com").unwrap();
        assert_eq!(host.entry_id, "1_gdrt137u");
        assert_eq!(host.leg, Leg::Backup);
        for not_leg_host in [
            "1_gdrt137u.p",
            "1_gdrt137u.p.",
            "1_gdrt137u.x.example.com",
            "www.p.example.com",
            "127.0.0.1",
            "localhost",
        ] {
            assert_eq!(LegHost::parse(not_leg_host), None, "{not_leg_host}");
        }
    }

    #[test]
    fn debug_redacts_the_token() {
        let target = resolve_publish("kLive", None, "1_gdrt137u_1?t=secret", Leg::Primary).unwrap();
        let shown = format!("{target:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn rtsp_urls_resolve_as_rtmp_ones() {
        let url = "rtsp://1_gdrt137u.b.s.fra.publish.example.com:554/kLive/1_gdrt137u_2?t=tok";
        assert_eq!(
            RtspPublishParts::from_url(url).unwrap(),
            RtspPublishParts {
                app: "kLive".into(),
                tc_url: "rtsp://1_gdrt137u.b.s.fra.publish.example.com:554/kLive".into(),
                name: "1_gdrt137u_2?t=tok".into(),
            }
        );
        let target = resolve_rtsp_publish(url, Leg::Primary).unwrap();
        assert_eq!(target.stream_name, "1_gdrt137u_2");
        assert_eq!(
            (target.leg, target.leg_source),
            (Leg::Backup, LegSource::HostLabel)
        );
        assert_eq!(target.token.as_deref(), Some("tok"));

        // Without the leg label, the node's default; a wrong app or name is refused
        // with the same words as over RTMP.
        let plain =
            resolve_rtsp_publish("rtsp://127.0.0.1:1554/kLive/1_gdrt137u_1?t=x", Leg::Backup)
                .unwrap();
        assert_eq!(
            (plain.leg, plain.leg_source),
            (Leg::Backup, LegSource::NodeDefault)
        );
        assert!(matches!(
            resolve_rtsp_publish("rtsp://127.0.0.1:1554/live/1_gdrt137u_1?t=x", Leg::Primary),
            Err(EndpointError::UnknownApplication { .. })
        ));
        assert!(matches!(
            resolve_rtsp_publish("rtsp://127.0.0.1:1554/kLive/cam?t=x", Leg::Primary),
            Err(EndpointError::BadStreamName { .. })
        ));
        assert!(resolve_rtsp_publish("not a url", Leg::Primary).is_err());
        assert!(resolve_rtsp_publish("rtsp://host-only", Leg::Primary).is_err());
    }
}
