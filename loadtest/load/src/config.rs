//! The command line and the validated settings a run is made from.
//!
//! [`Cli`] is what clap parses: the load's options ([`LoadArgs`], every one documented
//! with its unit) or the `soak` mode's ([`crate::soak::SoakArgs`], the same plus its
//! own). [`Settings`] is what [`crate::run()`] takes, built by [`LoadArgs::settings`],
//! which checks ranges and URLs and names the option at fault. Units are parsed by small
//! functions here:
//! bitrates (`6000k`, `6M`, `600000`), durations (`30s`, `500ms`, `2m`, `1.5`) and
//! rates (`20/s`, `20`).

use clap::{Args, Parser, Subcommand, ValueEnum};
use longhaul_rtmp::RtmpUrl;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

const EXAMPLE: &str = "\
Example (against `longhaul dev`; both dev origins share one entry registry):
  longhaul-load \\
    --region fra=rtmp://127.0.0.1:3935/kLive \\
    --region sin=rtmp://127.0.0.1:5935/kLive,play=rtmp://127.0.0.1:2935/kLive \\
    --play rtmp://127.0.0.1:1935/kLive --api http://127.0.0.1:8081 \\
    --publishers 10 --bitrate 1000k --duration 20s --ramp 20/s --json out.json";

/// Simulates regional encoders: N publishers per region send a synthetic stream to an
/// edge or origin; a player per stream at the origin measures what arrives. `soak` keeps
/// them coming and going for a long time, with hostile clients beside them, and watches
/// the nodes' memory.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "longhaul-load",
    version,
    after_help = EXAMPLE,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(subcommand)]
    pub mode: Option<Mode>,
}

/// The other modes; without one, a load run.
#[derive(Debug, Clone, Subcommand)]
pub enum Mode {
    /// Publishers and players churning for `--length` (30 minutes by default) through
    /// an edge, hostile clients beside them, and the nodes' memory and bounds watched.
    Soak(crate::soak::SoakArgs),
}

/// A load run's options (the `soak` mode takes them too).
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// A region's publish base URL, `NAME=rtmp://HOST:PORT/APP`, optionally followed by
    /// `,play=rtmp://ORIGIN:PORT/APP` (where its players play; default --play) and
    /// `,api=http://ORIGIN:PORT` (where its entries are created; default --api).
    /// Repeat for each region. Several play URLs separated by `|` (the origins a stream
    /// may move between in a failover or a drain): a player whose stream ends, or stays
    /// silent for 1.5 s, before its publisher is done plays it again from whichever has
    /// it, the other origins asked first.
    #[arg(long = "region", value_name = "SPEC", required = true)]
    pub regions: Vec<String>,
    /// Publishers per region (one entry, one stream, one player each).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub publishers: u32,
    /// Default play base URL, `rtmp://ORIGIN:PORT/APP`: players play `{base}/{id}_1`.
    #[arg(long, value_name = "URL", env = "LONGHAUL_LOAD_PLAY")]
    pub play: Option<String>,
    /// Default entries API base URL, `http://ORIGIN:PORT`.
    #[arg(long, value_name = "URL", env = "LONGHAUL_API")]
    pub api: Option<String>,
    /// Entries made beforehand instead of creating them through the API: a file of lines
    /// `REGION ID TOKEN` (blank-separated; `#` comments), at least --publishers per region.
    #[arg(long, value_name = "FILE")]
    pub entries: Option<PathBuf>,
    /// Bearer token for the entries API (the origin's `http.api_token`).
    #[arg(long, value_name = "TOKEN", env = "LONGHAUL_API_TOKEN")]
    pub api_token: Option<String>,
    /// Video bitrate per stream, bits/s; suffix k or M (e.g. 6000k, 6M).
    #[arg(long, default_value = "6000k", value_parser = parse_bitrate, value_name = "BITS/S")]
    pub bitrate: u64,
    /// Video frames per second.
    #[arg(long, default_value_t = 25, value_name = "FPS")]
    pub fps: u32,
    /// Keyframe interval (e.g. 2s, 500ms).
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub gop: Duration,
    /// AAC audio bitrate per stream, bits/s; suffix k or M; 0 for no audio.
    #[arg(long, default_value = "128k", value_parser = parse_bitrate, value_name = "BITS/S")]
    pub audio_bitrate: u64,
    /// How long each stream sends media, once its player is attached (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Duration,
    /// Publishers started per second, all regions together (e.g. 20/s).
    #[arg(long, default_value = "20/s", value_parser = parse_rate, value_name = "N/s")]
    pub ramp: f64,
    /// After a stream's last frame left (its due time, or later if the path held the
    /// publisher back), its player waits this long for stragglers.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub drain: Duration,
    /// Frames arriving later than this after their send time count as late.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub late: Duration,
    /// Where the publish token goes: `app` (ffmpeg style, `APP/?t=TOKEN/NAME`) or `name`
    /// (OBS style, `APP/NAME?t=TOKEN`).
    #[arg(long, value_enum, default_value_t = TokenIn::App)]
    pub token_in: TokenIn,
    /// Write the full report (settings, per stream, per region, total) as JSON here.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
    /// Seed of the frame-size randomness: the same seed sends the same streams.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seed: u64,
    /// Viewers per stream besides its measuring player: connections that only count the
    /// bytes they get, cheap enough to load a server with thousands from one core (the
    /// players-per-core benchmark). Each attaches with the player and stops when the
    /// stream's media ends.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub viewers: u32,
    /// Where viewers play: `rtmp://HOST:PORT/APP` (plays `{base}/{name}`) or
    /// `http://HOST:PORT/PATH` (HTTP-FLV, gets `{base}/{name}.flv`). Default: the
    /// region's play URL.
    #[arg(long, value_name = "URL")]
    pub viewers_at: Option<String>,
}

/// Where the publish token goes in the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenIn {
    /// `rtmp://host/APP/?t=TOKEN/NAME` (ffmpeg's app/instance split keeps it in the app).
    App,
    /// `rtmp://host/APP/NAME?t=TOKEN` (OBS's stream key).
    Name,
}

/// One region: where its encoders publish, where its players play, where its entries
/// are made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Region {
    pub name: String,
    /// `rtmp://HOST:PORT/APP`, no trailing slash.
    pub publish: String,
    /// `rtmp://HOST:PORT/APP`, or several separated by `|`.
    pub play: String,
    /// Empty when no API was given (then `--entries` must list the entries).
    pub api: String,
}

impl Region {
    /// The URL an encoder publishes stream `name` (`{id}_{rendition}`) with `token` to.
    pub fn publish_url(&self, token_in: TokenIn, name: &str, token: &str) -> String {
        match token_in {
            TokenIn::App => format!("{}/?t={token}/{name}", self.publish),
            TokenIn::Name => format!("{}/{name}?t={token}", self.publish),
        }
    }

    /// The URL a player of stream `name` plays (the first, with several).
    pub fn play_url(&self, name: &str) -> String {
        self.play_urls(name).swap_remove(0)
    }

    /// Every URL stream `name` may be played from (`play` lists several, `|`-separated).
    pub fn play_urls(&self, name: &str) -> Vec<String> {
        self.play
            .split('|')
            .map(|base| format!("{base}/{name}"))
            .collect()
    }
}

/// Everything a run needs, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub regions: Vec<Region>,
    pub publishers_per_region: u32,
    #[serde(skip)]
    pub api_token: Option<String>,
    /// Entries made beforehand (`--entries`), instead of the API.
    pub entries_file: Option<PathBuf>,
    pub video_bps: u64,
    pub fps: u32,
    #[serde(serialize_with = "secs")]
    pub gop: Duration,
    pub audio_bps: u64,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// Publishers started per second.
    pub ramp_per_sec: f64,
    #[serde(serialize_with = "secs")]
    pub drain: Duration,
    #[serde(serialize_with = "secs")]
    pub late: Duration,
    pub token_in: TokenIn,
    pub seed: u64,
    /// Show the progress bar (when stderr is a terminal).
    #[serde(skip)]
    pub progress: bool,
    /// Counting viewers per stream (`--viewers`).
    pub viewers: u32,
    /// Where they play; `None`: the region's (first) play URL, over RTMP.
    #[serde(serialize_with = "viewer_url")]
    pub viewers_at: Option<crate::viewer::ViewerUrl>,
}

fn viewer_url<S: serde::Serializer>(
    url: &Option<crate::viewer::ViewerUrl>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(crate::viewer::ViewerUrl::Rtmp(base)) => s.serialize_some(base),
        Some(crate::viewer::ViewerUrl::HttpFlv { host_port, path }) => {
            s.serialize_some(&format!("http://{host_port}{path}"))
        }
        None => s.serialize_none(),
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A setting that cannot be used, naming the option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {reason}")]
pub struct ConfigError {
    pub option: &'static str,
    pub reason: String,
}

fn bad(option: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        option,
        reason: reason.into(),
    }
}

/// Most publishers per region: sequence numbers and stream indexes are `u32`, and one
/// process is sized for a few thousand streams (see the crate docs).
const MAX_PUBLISHERS: u32 = 100_000;

impl LoadArgs {
    /// Publishers the run will start, before the regions are checked.
    fn total_publishers_hint(&self) -> usize {
        self.regions.len() * self.publishers as usize
    }

    /// Checks every option and resolves each region's play and API URLs.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut regions: Vec<Region> = Vec::new();
        for spec in &self.regions {
            let r = parse_region(spec, self.play.as_deref(), self.api.as_deref())?;
            if regions.iter().any(|o| o.name == r.name) {
                return Err(bad("--region", format!("region {:?} given twice", r.name)));
            }
            regions.push(r);
        }
        if self.entries.is_none() {
            if let Some(r) = regions.iter().find(|r| r.api.is_empty()) {
                return Err(bad(
                    "--api",
                    format!(
                        "region {} has no API URL: give --api, ,api= in --region, or --entries",
                        r.name
                    ),
                ));
            }
        }
        if self.publishers == 0 || self.publishers > MAX_PUBLISHERS {
            return Err(bad(
                "--publishers",
                format!("{} is not in 1..={MAX_PUBLISHERS}", self.publishers),
            ));
        }
        if !(1..=240).contains(&self.fps) {
            return Err(bad("--fps", format!("{} is not in 1..=240", self.fps)));
        }
        if self.bitrate == 0 {
            return Err(bad("--bitrate", "must be above 0"));
        }
        if self.gop.is_zero() {
            return Err(bad("--gop", "must be above 0"));
        }
        if self.duration.is_zero() {
            return Err(bad("--duration", "must be above 0"));
        }
        // u32 sequence numbers: at 240 fps + audio, about 0.5 years of frames.
        if self.duration > Duration::from_secs(24 * 3600) {
            return Err(bad("--duration", "at most 24h"));
        }
        if !(self.ramp.is_finite() && self.ramp > 0.0) {
            return Err(bad("--ramp", "must be a positive rate"));
        }
        // Every wait of the run is bounded by a sum of these: keep each to a day so the
        // sum is a time, and the ramp to one publisher a day at the slowest.
        const DAY: Duration = Duration::from_secs(24 * 3600);
        if self.gop > Duration::from_secs(60) {
            return Err(bad("--gop", "at most 60s"));
        }
        if self.drain > DAY || self.late > DAY {
            return Err(bad("--drain/--late", "at most 24h"));
        }
        if self.total_publishers_hint() as f64 / self.ramp > DAY.as_secs_f64() {
            return Err(bad("--ramp", "the ramp would take over a day"));
        }
        // Each viewer is a socket of this process: a few hundred thousand at most.
        if u64::from(self.viewers) * self.total_publishers_hint() as u64 > 200_000 {
            return Err(bad(
                "--viewers",
                "over 200,000 viewers in all (one socket each)",
            ));
        }
        let viewers_at = self
            .viewers_at
            .as_deref()
            .map(crate::viewer::ViewerUrl::parse)
            .transpose()
            .map_err(|e| bad("--viewers-at", e))?;
        Ok(Settings {
            regions,
            publishers_per_region: self.publishers,
            api_token: self.api_token.clone(),
            entries_file: self.entries.clone(),
            video_bps: self.bitrate,
            fps: self.fps,
            gop: self.gop,
            audio_bps: self.audio_bitrate,
            duration: self.duration,
            ramp_per_sec: self.ramp,
            drain: self.drain,
            late: self.late,
            token_in: self.token_in,
            seed: self.seed,
            progress: !self.quiet,
            viewers: self.viewers,
            viewers_at,
        })
    }
}

impl Settings {
    /// Parses command-line words (the first is the program name) into settings: what the
    /// binary does, and a handy way for tests to make settings.
    pub fn from_args<I, T>(args: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        if cli.mode.is_some() {
            return Err("a load run's settings, not a mode's".into());
        }
        cli.load.settings().map_err(|e| e.to_string())
    }

    /// Publishers in all regions.
    pub fn total_publishers(&self) -> usize {
        self.regions.len() * self.publishers_per_region as usize
    }

    /// How long starting every publisher takes at the ramp rate.
    pub fn ramp_time(&self) -> Duration {
        Duration::from_secs_f64(self.total_publishers() as f64 / self.ramp_per_sec)
    }
}

/// `NAME=rtmp://…[,play=rtmp://…][,api=http://…]`.
pub fn parse_region(
    spec: &str,
    play: Option<&str>,
    api: Option<&str>,
) -> Result<Region, ConfigError> {
    let (name, rest) = spec.split_once('=').ok_or_else(|| {
        bad(
            "--region",
            format!("{spec:?} is not NAME=rtmp://HOST:PORT/APP"),
        )
    })?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad(
            "--region",
            format!("region name {name:?} must be letters, digits, - or _"),
        ));
    }
    let mut parts = rest.split(',');
    let publish = parts.next().unwrap_or_default();
    let (mut play, mut api) = (play.map(str::to_string), api.map(str::to_string));
    for part in parts {
        match part.split_once('=') {
            Some(("play", url)) => play = Some(url.to_string()),
            Some(("api", url)) => api = Some(url.to_string()),
            _ => {
                return Err(bad(
                    "--region",
                    format!("{part:?} in {spec:?}: expected play=URL or api=URL"),
                ))
            }
        }
    }
    let publish = rtmp_base(publish).map_err(|r| bad("--region", format!("{name}: {r}")))?;
    let play = play.ok_or_else(|| {
        bad(
            "--play",
            format!("region {name} has no play URL: give --play or ,play= in --region"),
        )
    })?;
    let play = play
        .split('|')
        .map(rtmp_base)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|r| bad("--play", format!("{name}: {r}")))?
        .join("|");
    let api = api.unwrap_or_default().trim_end_matches('/').to_string();
    if !api.is_empty() && !api.starts_with("http://") {
        return Err(bad(
            "--api",
            format!("{api:?} is not an http:// URL (HTTPS is not supported here)"),
        ));
    }
    Ok(Region {
        name: name.to_string(),
        publish,
        play,
        api,
    })
}

/// Checks `rtmp://HOST[:PORT]/APP` and returns it without a trailing slash.
fn rtmp_base(url: &str) -> Result<String, String> {
    let base = url.trim_end_matches('/');
    let probe = format!("{base}/probe");
    let parsed = RtmpUrl::parse(&probe).map_err(|e| format!("{url:?}: {e}"))?;
    if parsed.name != "probe" || parsed.app.contains(['?', '/']) {
        return Err(format!(
            "{url:?} must be rtmp://HOST:PORT/APP with a one-segment app and no query"
        ));
    }
    if parsed.tls {
        return Err(format!(
            "{url:?}: rtmps:// is not supported by the load generator"
        ));
    }
    Ok(base.to_string())
}

/// `6000k`, `6M`, `600000` (bits/s).
pub fn parse_bitrate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'm' | 'M')) => (&t[..i], 1e6),
        _ => (t, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a bitrate like 6000k, 6M or 600000"))?;
    let bps = v * mul;
    if !bps.is_finite() || !(0.0..=10e9).contains(&bps) {
        return Err(format!("{s:?} is not a bitrate between 0 and 10G"));
    }
    Ok(bps.round() as u64)
}

/// `30s`, `500ms`, `2m`, `1h`, or plain seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 500ms or 2m"))?;
    Duration::try_from_secs_f64(v * unit)
        .map_err(|_| format!("{s:?} is not a duration of 0 or more"))
}

/// `20/s` or `20`: per second.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let num = t.strip_suffix("/s").unwrap_or(t);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a rate like 20/s"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("{s:?}: the rate must be above 0"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn help_renders_and_the_parser_is_consistent() {
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        for option in [
            "--region",
            "--publishers",
            "--play",
            "--api",
            "--api-token",
            "--bitrate",
            "--fps",
            "--gop",
            "--audio-bitrate",
            "--duration",
            "--ramp",
            "--drain",
            "--late",
            "--token-in",
            "--json",
            "--quiet",
            "--seed",
            "Example",
        ] {
            assert!(help.contains(option), "--help lacks {option}");
        }
    }

    #[test]
    fn units() {
        assert_eq!(parse_bitrate("6000k"), Ok(6_000_000));
        assert_eq!(parse_bitrate("6M"), Ok(6_000_000));
        assert_eq!(parse_bitrate("1.5M"), Ok(1_500_000));
        assert_eq!(parse_bitrate("128000"), Ok(128_000));
        assert!(parse_bitrate("fast").is_err());
        assert!(parse_bitrate("-1k").is_err());
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_rate("20/s"), Ok(20.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(parse_rate("0/s").is_err());
    }

    #[test]
    fn regions_and_urls() {
        let s = Settings::from_args([
            "longhaul-load",
            "--region",
            "sin=rtmp://10.77.1.2:1935/kLive/,play=rtmp://10.99.0.3:1935/kLive,api=http://10.99.0.3:8081/",
            "--region",
            "fra=rtmp://10.77.2.2:1935/kLive",
            "--play",
            "rtmp://10.99.0.2:1935/kLive",
            "--api",
            "http://10.99.0.2:8081",
            "--token-in",
            "name",
        ])
        .unwrap();
        let (sin, fra) = (&s.regions[0], &s.regions[1]);
        assert_eq!(sin.play, "rtmp://10.99.0.3:1935/kLive");
        assert_eq!(sin.api, "http://10.99.0.3:8081");
        assert_eq!(fra.play, "rtmp://10.99.0.2:1935/kLive");
        assert_eq!(
            sin.publish_url(TokenIn::App, "abc_1", "tok"),
            "rtmp://10.77.1.2:1935/kLive/?t=tok/abc_1"
        );
        assert_eq!(
            sin.publish_url(TokenIn::Name, "abc_1", "tok"),
            "rtmp://10.77.1.2:1935/kLive/abc_1?t=tok"
        );
        assert_eq!(fra.play_url("abc_1"), "rtmp://10.99.0.2:1935/kLive/abc_1");
        // ffmpeg's split of the app-token form gives the entry's stream name.
        let u = RtmpUrl::parse(&sin.publish_url(TokenIn::App, "abc_1", "tok")).unwrap();
        assert_eq!((u.app.as_str(), u.name.as_str()), ("kLive/?t=tok", "abc_1"));
        assert_eq!(s.token_in, TokenIn::Name);
        assert_eq!(s.total_publishers(), 20);
        assert_eq!(s.ramp_time(), Duration::from_secs(1));
    }

    #[test]
    fn bad_settings_name_their_option() {
        let err = |args: &[&str]| {
            let mut v = vec!["longhaul-load"];
            v.extend_from_slice(args);
            Settings::from_args(v).unwrap_err()
        };
        let e = err(&[
            "--region",
            "sin=rtmp://h:1935/kLive",
            "--api",
            "http://h:8081",
        ]);
        assert!(e.contains("--play"), "{e}");
        let e = err(&[
            "--region",
            "sin=rtmp://h:1935/kLive",
            "--play",
            "rtmp://h/kLive",
        ]);
        assert!(e.contains("--api"), "{e}");
        let base = ["--play", "rtmp://h/kLive", "--api", "http://h:8081"];
        let e = err(&[&["--region", "sin=http://h/kLive"][..], &base].concat());
        assert!(e.contains("--region"), "{e}");
        let e = err(&[
            &["--region", "sin=rtmp://h/kLive", "--publishers", "0"][..],
            &base,
        ]
        .concat());
        assert!(e.contains("--publishers"), "{e}");
        let e = err(&[
            &["--region", "a=rtmp://h/k", "--region", "a=rtmp://h/k"][..],
            &base,
        ]
        .concat());
        assert!(e.contains("twice"), "{e}");
        let e = err(&[&["--region", "sin=rtmp://h/kLive,foo=1"][..], &base].concat());
        assert!(e.contains("foo=1"), "{e}");
    }
}
