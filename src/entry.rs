//! `longhaul entry`: the entries API from the command line.
//!
//! Each subcommand is one HTTP request to an origin's `/api/v1`; errors print the API's
//! own message. `--api` defaults to the dev cluster's first origin.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use longhaul_endpoint::{Endpoints, Leg};

/// The dev cluster's origin nyc (config/dev.toml).
pub const DEFAULT_API: &str = "http://127.0.0.1:8081";

#[derive(clap::Args)]
pub struct EntryArgs {
    /// Base URL of an origin's HTTP port (`http://` is assumed without a scheme).
    #[arg(long, global = true, default_value = DEFAULT_API, env = "LONGHAUL_API", value_name = "URL", help_heading = "Connection")]
    api: String,
    /// Bearer token, when the origin sets `http.api_token`.
    #[arg(
        long,
        global = true,
        env = "LONGHAUL_API_TOKEN",
        value_name = "TOKEN",
        help_heading = "Connection"
    )]
    api_token: Option<String>,
    /// Print the API's JSON instead of a summary.
    #[arg(long, global = true, help_heading = "Output")]
    json: bool,
    #[command(subcommand)]
    command: EntryCommand,
}

#[derive(clap::Subcommand)]
enum EntryCommand {
    /// Create an entry and print its id, token and endpoints.
    Create {
        /// A name for people (the event, the room); the id is made up by the origin.
        #[arg(long)]
        name: Option<String>,
    },
    /// List entries.
    List,
    /// Show one entry.
    Show {
        /// The entry's id, e.g. `1_abcd1234` (`longhaul entry list` shows them).
        id: String,
    },
    /// Rename an entry.
    Rename {
        /// The entry's id, e.g. `1_abcd1234` (`longhaul entry list` shows them).
        id: String,
        /// The new name.
        #[arg(long)]
        name: String,
    },
    /// Give an entry a new token; the old one is refused from now on, and live publishes
    /// that used it are cut at every origin and edge.
    RegenerateToken {
        /// The entry's id, e.g. `1_abcd1234` (`longhaul entry list` shows them).
        id: String,
    },
    /// Cut the entry's live publishes now, at this origin and every edge it reaches (the
    /// token stays valid; regenerate it to refuse it).
    Revoke {
        /// The entry's id, e.g. `1_abcd1234` (`longhaul entry list` shows them).
        id: String,
    },
    /// Delete an entry.
    Delete {
        /// The entry's id, e.g. `1_abcd1234` (`longhaul entry list` shows them).
        id: String,
    },
    /// Print the entry's Adobe FMLE profile XML (for FMLE, Wirecast and others).
    Fmle {
        /// The entry's id, e.g. `1_abcd1234` (`longhaul entry list` shows them).
        id: String,
    },
}

pub async fn run(args: EntryArgs) -> anyhow::Result<()> {
    let api = api_base(&args.api);
    let api = api.as_str();
    let (method, path, body) = match &args.command {
        EntryCommand::Create { name } => (
            Method::POST,
            "/api/v1/entries".to_string(),
            serde_json::json!({ "name": name }).to_string(),
        ),
        EntryCommand::List => (Method::GET, "/api/v1/entries".into(), String::new()),
        EntryCommand::Show { id } => (Method::GET, format!("/api/v1/entries/{id}"), String::new()),
        EntryCommand::Rename { id, name } => (
            Method::PATCH,
            format!("/api/v1/entries/{id}"),
            serde_json::json!({ "name": name }).to_string(),
        ),
        EntryCommand::RegenerateToken { id } => (
            Method::POST,
            format!("/api/v1/entries/{id}/regenerate-token"),
            String::new(),
        ),
        EntryCommand::Revoke { id } => (
            Method::POST,
            format!("/api/v1/entries/{id}/revoke"),
            String::new(),
        ),
        EntryCommand::Delete { id } => (
            Method::DELETE,
            format!("/api/v1/entries/{id}"),
            String::new(),
        ),
        EntryCommand::Fmle { id } => (
            Method::GET,
            format!("/api/v1/entries/{id}/fmle.xml"),
            String::new(),
        ),
    };
    let url = format!("{api}{path}");
    let method_name = method.clone();
    let mut request = Request::builder()
        .method(method)
        .uri(&url)
        .header("content-type", "application/json");
    if let Some(token) = &args.api_token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .with_context(|| format!("bad API URL {url}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.with_context(|| {
        format!(
            "cannot reach the longhaul API at {api} (is `longhaul dev` running? Otherwise name \
             an origin's HTTP port with --api or LONGHAUL_API)"
        )
    })?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .context("reading the API response")?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.to_string());
        anyhow::bail!("{method_name} {url} answered {status}: {message}");
    }
    match &args.command {
        EntryCommand::Fmle { .. } => print!("{text}"),
        EntryCommand::Delete { id } => println!("deleted entry {id}"),
        EntryCommand::Revoke { id } if !args.json => {
            let v: serde_json::Value = serde_json::from_slice(&bytes)?;
            println!(
                "revoked entry {id}: {} live publishes cut here, {} edges told",
                v["cut"], v["edges"]
            );
        }
        _ if args.json => println!("{text}"),
        EntryCommand::List => {
            let v: serde_json::Value = serde_json::from_slice(&bytes)?;
            for e in v["entries"].as_array().into_iter().flatten() {
                println!(
                    "{}  {}",
                    e["id"].as_str().unwrap_or("?"),
                    e["name"].as_str().unwrap_or("")
                );
            }
        }
        _ => print_entry(&serde_json::from_slice(&bytes)?),
    }
    Ok(())
}

/// The API's base URL as typed: `http://` is assumed without a scheme, and a trailing
/// `/` is dropped.
pub(crate) fn api_base(typed: &str) -> String {
    let typed = typed.trim().trim_end_matches('/');
    if typed.contains("://") {
        typed.to_string()
    } else {
        format!("http://{typed}")
    }
}

fn print_entry(e: &serde_json::Value) {
    print!("{}", entry_summary(e));
}

/// An entry as people read it: id, name and token, then a table of where to publish
/// (the data centres, then each region; each leg over RTMP and RTMPS), the stream names,
/// where RTSP is offered a table of its URLs (one per place, rendition and leg: RTSP
/// names the stream in the URL), and the speed tests.
fn entry_summary(e: &serde_json::Value) -> String {
    use std::fmt::Write;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let mut out = String::new();
    let _ = writeln!(out, "entry    {}  {}", s(&e["id"]), s(&e["name"]));
    let _ = writeln!(out, "token    {}", s(&e["token"]));
    let Ok(ep) = serde_json::from_value::<Endpoints>(e["endpoints"].clone()) else {
        let _ = writeln!(out, "endpoints  (not understood: {})", e["endpoints"]);
        return out;
    };
    let mut places = vec![("data centres".to_string(), &ep.origins)];
    places.extend(
        ep.regions
            .iter()
            .map(|r| (format!("{} [{}]", r.name, r.region), &r.urls)),
    );
    let width = places
        .iter()
        .map(|(place, _)| place.chars().count())
        .max()
        .unwrap_or(0)
        .max("where".len());
    let _ = writeln!(out, "\n{:width$}  leg      URL (RTMP, then RTMPS)", "where");
    for (place, urls) in &places {
        for (n, leg) in Leg::ALL.into_iter().enumerate() {
            let place = if n == 0 { place.as_str() } else { "" };
            let _ = writeln!(
                out,
                "{place:width$}  {:7}  {}",
                leg.as_str(),
                urls.url(leg, false)
            );
            let _ = writeln!(out, "{:width$}  {:7}  {}", "", "", urls.url(leg, true));
        }
    }
    let _ = writeln!(out, "\nstreams  {}", ep.stream_names.join("  "));
    let rtsp_places: Vec<(&str, &[longhaul_endpoint::RtspRendition])> =
        std::iter::once((places[0].0.as_str(), ep.rtsp.as_slice()))
            .chain(
                places[1..]
                    .iter()
                    .zip(&ep.regions)
                    .map(|((place, _), r)| (place.as_str(), r.rtsp.as_slice())),
            )
            .filter(|(_, renditions)| !renditions.is_empty())
            .collect();
    if !rtsp_places.is_empty() {
        let stream_width = rtsp_places
            .iter()
            .flat_map(|(_, renditions)| renditions.iter())
            .map(|r| r.stream_name.chars().count())
            .max()
            .unwrap_or(0)
            .max("stream".len());
        let _ = writeln!(
            out,
            "\nRTSP, for devices without RTMP (the URL names the stream)\n\
             {:width$}  {:stream_width$}  leg      URL (RTSP, then RTSPS)",
            "where", "stream"
        );
        for (place, renditions) in rtsp_places {
            for (r, rendition) in renditions.iter().enumerate() {
                for (n, leg) in Leg::ALL.into_iter().enumerate() {
                    // The place on its first line, the stream on its rendition's first.
                    let place = if r == 0 && n == 0 { place } else { "" };
                    let stream = if n == 0 {
                        rendition.stream_name.as_str()
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        out,
                        "{place:width$}  {stream:stream_width$}  {:7}  {}",
                        leg.as_str(),
                        rendition.url(leg, false).unwrap_or_default()
                    );
                    if let Some(url) = rendition.url(leg, true) {
                        let _ =
                            writeln!(out, "{:width$}  {:stream_width$}  {:7}  {url}", "", "", "");
                    }
                }
            }
        }
    }
    let tests: Vec<(&str, &str)> = ep
        .speed_tests
        .iter()
        .map(|t| (t.name.as_str(), t.url.as_str()))
        .chain(
            ep.regions
                .iter()
                .filter_map(|r| Some((r.name.as_str(), r.speed_test.as_deref()?))),
        )
        .collect();
    if !tests.is_empty() {
        let width = tests
            .iter()
            .map(|(n, _)| n.chars().count())
            .max()
            .unwrap_or(0);
        let _ = writeln!(out, "\nspeed tests (pick the place with the best path)");
        for (name, url) in tests {
            let _ = writeln!(out, "  {name:width$}  {url}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_lists_every_place_leg_and_protocol() {
        let entry = serde_json::json!({
            "id": "1_abcd1234", "name": "Town hall", "token": "tok",
            "endpoints": {
                "primary_rtmp": "rtmp://p/kLive/?t=tok", "backup_rtmp": "rtmp://b/kLive/?t=tok",
                "primary_rtmps": "rtmps://p/kLive/?t=tok", "backup_rtmps": "rtmps://b/kLive/?t=tok",
                "stream_names": ["1_abcd1234_1", "1_abcd1234_2"],
                "rtsp": [
                    {"stream_name": "1_abcd1234_1", "primary_rtsp": "rtsp://p/1", "backup_rtsp": "rtsp://b/1",
                     "primary_rtsps": "rtsps://p/1", "backup_rtsps": "rtsps://b/1"},
                    {"stream_name": "1_abcd1234_2", "primary_rtsp": "rtsp://p/2", "backup_rtsp": "rtsp://b/2",
                     "primary_rtsps": "rtsps://p/2", "backup_rtsps": "rtsps://b/2"}
                ],
                "regions": [{
                    "region": "fra", "name": "EMEA (Frankfurt)",
                    "primary_rtmp": "rtmp://fp", "backup_rtmp": "rtmp://fb",
                    "primary_rtmps": "rtmps://fp", "backup_rtmps": "rtmps://fb",
                    "speed_test": "http://fr-speedtest"
                }],
                "speed_tests": [{"region": "nyc", "name": "US (New York)", "url": "http://ny-speedtest"}]
            }
        });
        let text = entry_summary(&entry);
        let expected = "\
entry    1_abcd1234  Town hall
token    tok

where                   leg      URL (RTMP, then RTMPS)
data centres            primary  rtmp://p/kLive/?t=tok
                                 rtmps://p/kLive/?t=tok
                        backup   rtmp://b/kLive/?t=tok
                                 rtmps://b/kLive/?t=tok
EMEA (Frankfurt) [fra]  primary  rtmp://fp
                                 rtmps://fp
                        backup   rtmp://fb
                                 rtmps://fb

streams  1_abcd1234_1  1_abcd1234_2

RTSP, for devices without RTMP (the URL names the stream)
where                   stream        leg      URL (RTSP, then RTSPS)
data centres            1_abcd1234_1  primary  rtsp://p/1
                                               rtsps://p/1
                                      backup   rtsp://b/1
                                               rtsps://b/1
                        1_abcd1234_2  primary  rtsp://p/2
                                               rtsps://p/2
                                      backup   rtsp://b/2
                                               rtsps://b/2

speed tests (pick the place with the best path)
  US (New York)     http://ny-speedtest
  EMEA (Frankfurt)  http://fr-speedtest
";
        assert_eq!(text, expected, "\n{text}");
        // An older origin's entry (no regions, no speed tests, no RTSP) still prints.
        let mut old = entry.clone();
        let endpoints = old["endpoints"].as_object_mut().unwrap();
        endpoints.remove("regions");
        endpoints.remove("speed_tests");
        endpoints.remove("rtsp");
        let text = entry_summary(&old);
        assert!(
            text.contains("\ndata centres  primary  rtmp://p/kLive/?t=tok\n"),
            "{text}"
        );
        assert!(!text.contains("speed tests"), "{text}");
        assert!(!text.contains("RTSP"), "{text}");
    }

    #[test]
    fn an_api_url_without_a_scheme_is_http() {
        assert_eq!(api_base("127.0.0.1:8082"), "http://127.0.0.1:8082");
        assert_eq!(api_base("http://127.0.0.1:8082/"), "http://127.0.0.1:8082");
        assert_eq!(
            api_base("https://api.example.com"),
            "https://api.example.com"
        );
    }
}
