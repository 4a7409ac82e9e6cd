//! A live entry: what an encoder publishes to, and its publish token.

use serde::{Deserialize, Serialize};

/// Longest entry name accepted, in characters: enough for any title, bounded so a
/// listing stays small.
pub const MAX_NAME_CHARS: usize = 256;

/// A live entry as stored in the registry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The entry id, `1_` and 8 characters of `[a-z0-9]` (`1_gdrt137u`).
    pub id: String,
    /// A human name for listings; defaults to the id.
    pub name: String,
    /// The current publish token, 16 characters of `[a-z2-7]`. Secret: do not log it.
    pub token: String,
    /// When the entry was created, in Unix seconds.
    pub created_at: i64,
    /// How many times the token has been regenerated (1 for the first token).
    pub token_generation: u32,
}

/// Shows everything but the token, so an entry can be logged.
impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("token_generation", &self.token_generation)
            .finish()
    }
}

/// Checks a name: at most [`MAX_NAME_CHARS`] characters, no control characters.
pub(crate) fn validate_name(name: &str) -> Result<(), crate::RegistryError> {
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(crate::RegistryError::InvalidName(
            "longer than 256 characters",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(crate::RegistryError::InvalidName(
            "contains control characters (like newlines or tabs)",
        ));
    }
    Ok(())
}

/// Now in Unix seconds; 0 if the clock is before 1970.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
