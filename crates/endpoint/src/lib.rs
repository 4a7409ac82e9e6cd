//! # longhaul-endpoint: publish URLs, stream names and where the token is
//!
//! Encoders publish to longhaul with URLs of the product's form
//!
//! ```text
//! rtmp://1_gdrt137u.p.publish.example.com:1935/kLive/?t=b9106yth4   stream name 1_gdrt137u_1
//! ```
//!
//! but every encoder splits that URL differently when it speaks RTMP: ffmpeg puts the
//! token in the connect `app` (`kLive/?t=abc`) or in the publish name (`1_gdrt137u_1?t=abc`),
//! OBS copies the server URL into `tcUrl`, Wowza-style setups send `?e=..&i=..&t=..`.
//! This crate holds those rules in one place, as pure code with no IO, so the RTMP
//! server, the admin API and the tests all agree on them.
//!
//! - [`resolve_publish`] turns what an encoder sent (`app`, `tcUrl`, publish name) into a
//!   [`PublishTarget`]: entry id, rendition, [`Leg`] (and where it came from, a
//!   [`LegSource`]) and the presented token, or an [`EndpointError`] an operator can act
//!   on. It does not check the token: the registry does.
//! - [`resolve_rtsp_publish`] does the same for an RTSP publish's URL
//!   (`rtsp://1_gdrt137u.p.s.publish.example.com:554/kLive/1_gdrt137u_1?t=tok`), by the
//!   same rules.
//! - [`entry_endpoints`] builds the URLs and stream names we hand out for an entry
//!   ([`Endpoints`]): primary and backup, RTMP and RTMPS, at the data centres and at
//!   each regional edge, with the leg in a host label or, where there is no wildcard DNS,
//!   a host and port per leg and the leg in `i=0|1` ([`LegHosts`]); where RTSP is
//!   offered, RTSP and RTSPS URLs per rendition ([`RtspRendition`]); [`check_host`] says
//!   whether a configured host can be handed out.
//! - [`fmle_profile_xml`] exports them as an Adobe FMLE profile for encoders that import it.
//!
//! ```
//! use longhaul_endpoint::{
//!     entry_endpoints, resolve_publish, resolve_rtsp_publish, EndpointHosts, IngestAddress, Leg,
//!     LegHosts, LegSource, RegionHosts,
//! };
//!
//! // ffmpeg -f flv 'rtmp://1_gdrt137u.b.publish.example.com:1935/kLive/?t=tok/1_gdrt137u_2'
//! let target = resolve_publish(
//!     "kLive/?t=tok",
//!     Some("rtmp://1_gdrt137u.b.publish.example.com:1935/kLive/?t=tok"),
//!     "1_gdrt137u_2",
//!     Leg::Primary,
//! )?;
//! assert_eq!(target.entry_id, "1_gdrt137u");
//! assert_eq!(target.rendition, 2);
//! assert_eq!((target.leg, target.leg_source), (Leg::Backup, LegSource::HostLabel));
//! assert_eq!(target.token.as_deref(), Some("tok"));
//!
//! let hosts = EndpointHosts {
//!     app: "kLive".into(),
//!     // The data centres also take RTSP on 554 and RTSPS on 322.
//!     origins: LegHosts::Subdomains(
//!         IngestAddress::rtmp("publish.example.com", 1935, 443).with_rtsp(554, Some(322)),
//!     ),
//!     speed_tests: vec![],
//!     regions: vec![RegionHosts {
//!         region: "fra".into(),
//!         name: "EMEA (Frankfurt)".into(),
//!         legs: LegHosts::Subdomains(IngestAddress::rtmp("fra.publish.example.com", 1935, 443)),
//!         speed_test: None,
//!     }],
//! };
//! let endpoints = entry_endpoints("1_gdrt137u", "tok", &hosts, 2);
//! assert_eq!(endpoints.origins.primary_rtmp, "rtmp://1_gdrt137u.p.publish.example.com:1935/kLive/?t=tok");
//! assert_eq!(endpoints.regions[0].urls.backup_rtmps, "rtmps://1_gdrt137u.b.fra.publish.example.com:443/kLive/?t=tok");
//! assert_eq!(endpoints.stream_names, ["1_gdrt137u_1", "1_gdrt137u_2"]);
//! // RTSP names the stream in the URL: a pair of URLs per rendition.
//! assert_eq!(endpoints.rtsp[1].stream_name, "1_gdrt137u_2");
//! assert_eq!(
//!     endpoints.rtsp[1].backup_rtsp,
//!     "rtsp://1_gdrt137u.b.s.publish.example.com:554/kLive/1_gdrt137u_2?t=tok"
//! );
//! assert!(endpoints.regions[0].rtsp.is_empty(), "no RTSP configured for fra");
//!
//! // The regional backup URL, as ffmpeg splits it, resolves to the backup leg.
//! let target = resolve_publish(
//!     "kLive/?t=tok",
//!     Some("rtmps://1_gdrt137u.b.fra.publish.example.com:443/kLive/?t=tok"),
//!     "1_gdrt137u_1",
//!     Leg::Primary,
//! )?;
//! assert_eq!((target.leg, target.leg_source), (Leg::Backup, LegSource::HostLabel));
//!
//! // And so does the RTSP one, rendition and token included.
//! let target = resolve_rtsp_publish(&endpoints.rtsp[1].backup_rtsp, Leg::Primary)?;
//! assert_eq!((target.rendition, target.leg), (2, Leg::Backup));
//! assert_eq!(target.token.as_deref(), Some("tok"));
//! # Ok::<(), longhaul_endpoint::EndpointError>(())
//! ```

pub mod endpoints;
pub mod entry_id;
pub mod error;
pub mod fmle;
pub mod leg;
pub mod publish;
mod query;
pub mod redact;

pub use endpoints::{
    check_host, entry_endpoints, BadLegAddress, EndpointHosts, Endpoints, IngestAddress, LegHosts,
    LegUrls, RegionEndpoints, RegionHosts, RtspRendition, SpeedTest, MAX_RTSP_SUBDOMAIN_HOST_LEN,
    MAX_SUBDOMAIN_HOST_LEN, RTSP_HOST_LABEL,
};
pub use entry_id::{is_entry_id, parse_stream_name, stream_name, stream_parts, MAX_RENDITION};
pub use error::{EndpointError, EntrySource, Place};
pub use fmle::{fmle_profile_xml, RenditionProfile, DEFAULT_LADDER};
pub use leg::{Leg, LegSource};
pub use publish::{
    resolve_publish, resolve_rtsp_publish, PublishTarget, RtspPublishParts, APPLICATION,
    MAX_INPUT_LEN,
};
pub use redact::{redact_tokens, REDACTED};
