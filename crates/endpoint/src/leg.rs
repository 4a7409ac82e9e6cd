//! Which of an entry's two ingest legs (primary or backup) a publisher is on, and how we
//! learned it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One of the two redundant ingest paths of an entry. Encoders that want redundancy
/// publish the same stream to both; the `p`/`b` host label (or `i=0|1`) says which is which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Leg {
    /// The main path (`p` host label, `i=0`).
    Primary,
    /// The redundant path (`b` host label, `i=1`).
    Backup,
}

impl Leg {
    /// Both legs, primary first.
    pub const ALL: [Leg; 2] = [Leg::Primary, Leg::Backup];

    /// The other leg.
    pub fn other(self) -> Leg {
        match self {
            Leg::Primary => Leg::Backup,
            Leg::Backup => Leg::Primary,
        }
    }

    /// `"primary"` or `"backup"`, as in serde and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Leg::Primary => "primary",
            Leg::Backup => "backup",
        }
    }

    /// The host label of the product's URL form: `"p"` or `"b"` (`1_gdrt137u.p.host`).
    pub fn label(self) -> &'static str {
        match self {
            Leg::Primary => "p",
            Leg::Backup => "b",
        }
    }

    /// The Wowza-style `i` query value: `"0"` for primary, `"1"` for backup.
    pub fn index_param(self) -> &'static str {
        match self {
            Leg::Primary => "0",
            Leg::Backup => "1",
        }
    }

    /// The leg of a host label (`p`/`b`, ASCII case-insensitive, since DNS is).
    pub fn from_label(label: &str) -> Option<Leg> {
        if label.eq_ignore_ascii_case("p") {
            Some(Leg::Primary)
        } else if label.eq_ignore_ascii_case("b") {
            Some(Leg::Backup)
        } else {
            None
        }
    }

    /// The leg of an `i` query value (`0`/`1`).
    pub fn from_index_param(value: &str) -> Option<Leg> {
        match value {
            "0" => Some(Leg::Primary),
            "1" => Some(Leg::Backup),
            _ => None,
        }
    }
}

impl fmt::Display for Leg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where [`crate::resolve_publish`] found the leg of a publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegSource {
    /// The tcUrl host's second label: `1_gdrt137u.p.host` / `1_gdrt137u.b.host`.
    HostLabel,
    /// An `i=0|1` query parameter.
    QueryParam,
    /// Nothing said; the node's configured default was used.
    NodeDefault,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_labels_and_params_round_trip() {
        for leg in Leg::ALL {
            assert_eq!(Leg::from_label(leg.label()), Some(leg));
            assert_eq!(Leg::from_index_param(leg.index_param()), Some(leg));
            assert_eq!(leg.to_string(), leg.as_str());
        }
        assert_eq!(Leg::from_label("P"), Some(Leg::Primary));
        assert_eq!(Leg::from_label("x"), None);
        assert_eq!(Leg::from_index_param("2"), None);
    }
}
