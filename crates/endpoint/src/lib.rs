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
//! - [`entry_endpoints`] builds the URLs and stream names we hand out for an entry
//!   ([`Endpoints`]), with the leg in a host label or, for local development, in `i=0|1`.
//! - [`fmle_profile_xml`] exports them as an Adobe FMLE profile for encoders that import it.
//!
//! ```
//! use longhaul_endpoint::{entry_endpoints, resolve_publish, EndpointHosts, Leg, LegSource};
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
//!     rtmp_host: "publish.example.com".into(),
//!     rtmp_port: 1935,
//!     rtmps_port: 443,
//!     app: "kLive".into(),
//!     use_leg_subdomains: true,
//! };
//! let endpoints = entry_endpoints("1_gdrt137u", "tok", &hosts, 2);
//! assert_eq!(endpoints.primary_rtmp, "rtmp://1_gdrt137u.p.publish.example.com:1935/kLive/?t=tok");
//! assert_eq!(endpoints.stream_names, ["1_gdrt137u_1", "1_gdrt137u_2"]);
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

pub use endpoints::{entry_endpoints, EndpointHosts, Endpoints};
pub use entry_id::{is_entry_id, parse_stream_name, stream_name, MAX_RENDITION};
pub use error::{EndpointError, EntrySource, Place};
pub use fmle::{fmle_profile_xml, RenditionProfile, DEFAULT_LADDER};
pub use leg::{Leg, LegSource};
pub use publish::{resolve_publish, PublishTarget, APPLICATION, MAX_INPUT_LEN};
pub use redact::{redact_tokens, REDACTED};
