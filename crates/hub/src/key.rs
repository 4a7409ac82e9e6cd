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

/// Which leg a player wants when it subscribes by name.
///
/// A leg is *live* from the moment its publication exists (`Hub::publish`) until that
/// publication ends. The choice is made once, at subscribe time: a subscription stays
/// on the leg it got and ends with it (switching legs is the caller's decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LegChoice {
    /// The primary leg if it is live, else the backup leg if that is.
    #[default]
    PreferPrimary,
    /// The backup leg if it is live, else the primary leg if that is.
    PreferBackup,
    /// Exactly this leg, or nothing.
    Only(Leg),
}

impl LegChoice {
    /// Legs to try, in order.
    pub(crate) fn candidates(self) -> [Option<Leg>; 2] {
        match self {
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
}
