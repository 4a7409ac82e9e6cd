//! Stream identity: a stream name plus the leg (primary or backup) it was published on.

use std::fmt;

/// Which of a stream's redundant ingest legs a publication arrived on. Encoders
/// configured for redundancy publish the same stream name twice, to a primary and a
/// backup URL: two independent live streams in the hub that share a name.
pub use longhaul_endpoint::Leg;

/// The identity of one live stream in the hub: `1_gdrt137u_1` on the primary leg is
/// a different stream from the same name on the backup leg.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub name: String,
    pub leg: Leg,
}

impl StreamKey {
    pub fn new(name: impl Into<String>, leg: Leg) -> StreamKey {
        StreamKey {
            name: name.into(),
            leg,
        }
    }
}

impl fmt::Display for StreamKey {
    /// `name.p` / `name.b`, the way the ingest host names spell it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.leg.label())
    }
}

/// What a player wants when it subscribes by name.
///
/// A leg is *live* from the moment its publication exists (`Hub::publish`) until that
/// publication ends. For a leg (every choice but [`LegChoice::OnAir`]) the choice is
/// made once, at subscribe time: a subscription stays on the leg it got and ends with
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LegChoice {
    /// The rendition's on-air stream: the primary leg while it is healthy, the backup
    /// while it is not, switched without the player noticing (`crate::on_air`); it
    /// ends when both legs have.
    #[default]
    OnAir,
    /// The primary leg if it is live, else the backup leg if that is.
    PreferPrimary,
    /// The backup leg if it is live, else the primary leg if that is.
    PreferBackup,
    /// Exactly this leg, or nothing.
    Only(Leg),
}

impl LegChoice {
    /// What a player asked for by the name it plays: `{entryId}_{n}` is the rendition's
    /// on-air stream, `{entryId}_{n}.p` and `{entryId}_{n}.b` one leg only (the way
    /// [`StreamKey`] displays). The stream name and the choice.
    pub fn from_play_name(name: &str) -> (&str, LegChoice) {
        for leg in Leg::ALL {
            if let Some(base) = name.strip_suffix(leg.label()) {
                if let Some(base) = base.strip_suffix('.').filter(|b| !b.is_empty()) {
                    return (base, LegChoice::Only(leg));
                }
            }
        }
        (name, LegChoice::OnAir)
    }

    /// Legs to try, in order (none for the on-air stream, which is not a leg).
    pub(crate) fn candidates(self) -> [Option<Leg>; 2] {
        match self {
            LegChoice::OnAir => [None, None],
            LegChoice::PreferPrimary => [Some(Leg::Primary), Some(Leg::Backup)],
            LegChoice::PreferBackup => [Some(Leg::Backup), Some(Leg::Primary)],
            LegChoice::Only(leg) => [Some(leg), None],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse() {
        let key = StreamKey::new("1_gdrt137u_1", Leg::Backup);
        assert_eq!(key.to_string(), "1_gdrt137u_1.b");
        assert_eq!(Leg::Primary.other(), Leg::Backup);
    }

    #[test]
    fn play_names_choose_the_on_air_stream_or_one_leg() {
        let cases = [
            ("1_gdrt137u_1", ("1_gdrt137u_1", LegChoice::OnAir)),
            (
                "1_gdrt137u_1.p",
                ("1_gdrt137u_1", LegChoice::Only(Leg::Primary)),
            ),
            (
                "1_gdrt137u_1.b",
                ("1_gdrt137u_1", LegChoice::Only(Leg::Backup)),
            ),
            ("1_gdrt137u_1.x", ("1_gdrt137u_1.x", LegChoice::OnAir)),
            (".b", (".b", LegChoice::OnAir)),
            ("b", ("b", LegChoice::OnAir)),
        ];
        for (name, want) in cases {
            assert_eq!(LegChoice::from_play_name(name), want, "{name}");
        }
        assert_eq!(
            LegChoice::from_play_name(&StreamKey::new("x_1", Leg::Backup).to_string()),
            ("x_1", LegChoice::Only(Leg::Backup))
        );
    }
}
