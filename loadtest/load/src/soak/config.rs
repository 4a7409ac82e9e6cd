//! The `soak` mode's command line ([`SoakArgs`]: a load run's options and its own) and
//! its validated settings ([`SoakSettings`]).

use super::watch::{parse_node, NodeSpec};
use crate::config::{parse_duration, ConfigError, LoadArgs, Settings};
use clap::Args;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::time::Duration;

const DAY: Duration = Duration::from_secs(24 * 3600);
const HOUR: Duration = Duration::from_secs(3600);

/// A soak: publishers that keep coming and going through an edge, each session measured
/// by its own player at the origin; players that join and leave streams; hostile
/// clients beside them; the nodes' memory and bounds sampled all along and after.
///
/// The load options keep their meaning per session: `--publishers` publishers per
/// region at any time (each one a *slot* that publishes, stops and comes back),
/// `--duration` of media per session, `--ramp` for the first sessions.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// How long publishers and players keep coming and going; then the load stops and
    /// the nodes are watched for --settle more (e.g. 30m, 90s).
    #[arg(long, default_value = "30m", value_parser = parse_duration, value_name = "DURATION")]
    pub length: Duration,
    /// Pause between a publisher's sessions: each pause is drawn between half and 1.5
    /// times this.
    #[arg(long, default_value = "3s", value_parser = parse_duration, value_name = "DURATION")]
    pub gap: Duration,
    /// Players at the origin besides each session's own: each joins a random stream,
    /// watches it for up to --lurk, leaves, and picks another.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub lurkers: u32,
    /// The longest a lurker watches one stream.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub lurk: Duration,
    /// Clients that spray 65,536 chunk stream ids after the handshake, about once a
    /// second each, at the first region's publish address.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub sprayers: u32,
    /// Clients that publish with a valid token (an entry of their own), then send a
    /// million one-byte chunks that each decode to an empty video message.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub flooders: u32,
    /// Connections that send one byte of the handshake and nothing more, opened again
    /// each time the node closes them.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub slowloris: u32,
    /// Clients publishing with a wrong token, about once a second each.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub bad_tokens: u32,
    /// The loopback address hostile clients connect from: sprayers this one, flooders
    /// the next, then slowloris, then bad tokens, so a node's bans fall on them and not
    /// on the honest publishers (127.0.0.1).
    #[arg(long, default_value = "127.0.0.2", value_name = "IPV4")]
    pub hostile_from: Ipv4Addr,
    /// A node to watch, `NAME=PID,http://HOST:PORT`: its RSS from /proc/PID/status, its
    /// bounds and open connections from /metrics there. Repeat for each node.
    #[arg(long = "node", value_name = "SPEC")]
    pub nodes: Vec<String>,
    /// How often the nodes are sampled.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub sample: Duration,
    /// After the load stops, how long the nodes are still watched before the last
    /// sample (memory coming back down).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub settle: Duration,
}

/// How many hostile clients of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Hostile {
    pub sprayers: u32,
    pub flooders: u32,
    pub slowloris: u32,
    pub bad_tokens: u32,
    /// The first of their four source addresses.
    pub from: Ipv4Addr,
}

/// A soak's settings, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SoakSettings {
    /// Per session: `publishers_per_region` slots per region, `duration` of media.
    pub load: Settings,
    #[serde(serialize_with = "secs")]
    pub length: Duration,
    #[serde(serialize_with = "secs")]
    pub gap: Duration,
    pub lurkers: u32,
    #[serde(serialize_with = "secs")]
    pub lurk: Duration,
    pub hostile: Hostile,
    pub nodes: Vec<NodeSpec>,
    #[serde(serialize_with = "secs")]
    pub sample: Duration,
    #[serde(serialize_with = "secs")]
    pub settle: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn bad(option: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        option,
        reason: reason.into(),
    }
}

/// Most clients of one hostile kind, and most lurkers: one process is sized for a few
/// thousand connections.
const MAX_CLIENTS: u32 = 10_000;

impl SoakArgs {
    /// Checks every option (the load's too) and names the one at fault.
    pub fn settings(&self) -> Result<SoakSettings, ConfigError> {
        let load = self.load.settings()?;
        if self.length.is_zero() || self.length > DAY {
            return Err(bad("--length", "must be above 0 and at most 24h"));
        }
        if load.gop + load.duration > self.length {
            return Err(bad(
                "--duration",
                format!(
                    "a session ({:.0} s of media after up to a {:.0} s phase) does not fit in --length {:.0} s",
                    load.duration.as_secs_f64(),
                    load.gop.as_secs_f64(),
                    self.length.as_secs_f64()
                ),
            ));
        }
        for (option, d) in [
            ("--gap", self.gap),
            ("--lurk", self.lurk),
            ("--settle", self.settle),
        ] {
            if d > HOUR {
                return Err(bad(option, "at most 1h"));
            }
        }
        if self.lurkers > 0 && self.lurk < Duration::from_millis(100) {
            return Err(bad("--lurk", "at least 100ms"));
        }
        if !(Duration::from_millis(100)..=HOUR).contains(&self.sample) {
            return Err(bad("--sample", "between 100ms and 1h"));
        }
        for (option, n) in [
            ("--lurkers", self.lurkers),
            ("--sprayers", self.sprayers),
            ("--flooders", self.flooders),
            ("--slowloris", self.slowloris),
            ("--bad-tokens", self.bad_tokens),
        ] {
            if n > MAX_CLIENTS {
                return Err(bad(option, format!("{n} is over {MAX_CLIENTS}")));
            }
        }
        let last = Ipv4Addr::from(u32::from(self.hostile_from).wrapping_add(3));
        if !(self.hostile_from.is_loopback() && last.is_loopback()) {
            return Err(bad(
                "--hostile-from",
                format!("{} to {last} must be loopback addresses", self.hostile_from),
            ));
        }
        if (self.flooders > 0 || self.bad_tokens > 0)
            && load.regions.first().is_some_and(|r| r.api.is_empty())
        {
            return Err(bad(
                "--api",
                "flooders and bad-token clients need entries from the first region's API",
            ));
        }
        let nodes = self
            .nodes
            .iter()
            .map(|n| parse_node(n).map_err(|r| bad("--node", r)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SoakSettings {
            load,
            length: self.length,
            gap: self.gap,
            lurkers: self.lurkers,
            lurk: self.lurk,
            hostile: Hostile {
                sprayers: self.sprayers,
                flooders: self.flooders,
                slowloris: self.slowloris,
                bad_tokens: self.bad_tokens,
                from: self.hostile_from,
            },
            nodes,
            sample: self.sample,
            settle: self.settle,
        })
    }
}

impl SoakSettings {
    /// Parses command-line words (the program name, `soak`, then options) into
    /// settings, as the binary does.
    pub fn from_args<I, T>(args: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::Parser;
        let cli = crate::Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        match cli.mode {
            Some(crate::config::Mode::Soak(args)) => args.settings().map_err(|e| e.to_string()),
            None => Err("not a soak: the words must start with `soak`".into()),
        }
    }

    /// Sockets the generator holds at most: each slot's publisher and player, the
    /// lurkers and the hostile clients.
    pub fn sockets(&self) -> usize {
        let h = &self.hostile;
        2 * self.load.total_publishers()
            + (self.lurkers + h.sprayers + h.flooders + h.slowloris + h.bad_tokens) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soak(extra: &[&str]) -> Result<SoakSettings, String> {
        let mut args = vec![
            "longhaul-load",
            "soak",
            "--region",
            "fra=rtmp://127.0.0.1:3935/kLive",
            "--play",
            "rtmp://127.0.0.1:1935/kLive",
            "--api",
            "http://127.0.0.1:8081",
        ];
        args.extend_from_slice(extra);
        SoakSettings::from_args(args)
    }

    #[test]
    fn defaults_and_options() {
        let s = soak(&[]).unwrap();
        assert_eq!(s.length, Duration::from_secs(1800));
        assert_eq!(s.load.duration, Duration::from_secs(30));
        assert_eq!(s.hostile.slowloris, 50);
        assert!(s.nodes.is_empty());
        let s = soak(&[
            "--length",
            "1m",
            "--duration",
            "10s",
            "--publishers",
            "300",
            "--node",
            "edge=12,http://127.0.0.1:8083",
            "--node",
            "origin=13,http://127.0.0.1:8081",
            "--sprayers",
            "1",
        ])
        .unwrap();
        assert_eq!(s.length, Duration::from_secs(60));
        assert_eq!(s.load.publishers_per_region, 300);
        assert_eq!(s.nodes.len(), 2);
        assert_eq!(s.nodes[1].pid, 13);
        assert_eq!(s.hostile.sprayers, 1);
        assert_eq!(s.sockets(), 600 + 20 + 1 + 2 + 50 + 2);
    }

    #[test]
    fn bad_options_are_named() {
        for (extra, option) in [
            (&["--length", "0s"][..], "--length"),
            (&["--length", "20s", "--duration", "30s"][..], "--duration"),
            (&["--sample", "1ms"][..], "--sample"),
            (&["--hostile-from", "10.0.0.2"][..], "--hostile-from"),
            (&["--hostile-from", "127.255.255.254"][..], "--hostile-from"),
            (&["--node", "edge"][..], "--node"),
            (&["--slowloris", "20000"][..], "--slowloris"),
        ] {
            let e = soak(extra).unwrap_err();
            assert!(e.contains(option), "{extra:?}: {e}");
        }
        // A load run's words are not a soak's.
        let e = SoakSettings::from_args([
            "longhaul-load",
            "--region",
            "fra=rtmp://h/kLive",
            "--play",
            "rtmp://h/kLive",
            "--api",
            "http://h:1",
        ])
        .unwrap_err();
        assert!(e.contains("soak"), "{e}");
    }
}
