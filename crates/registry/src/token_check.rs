//! Checking a presented publish token against the stored one.
//!
//! What is constant-time: the comparison takes the same time whatever the stored token's
//! *content* and however many leading characters of a guess are right. It does depend on
//! the two lengths: the presented length is the attacker's own, and the stored length
//! is public ([`crate::generate::TOKEN_CHARS`]). The presented token is copied into a
//! buffer of the stored token's length (zero-padded or cut), compared with
//! `subtle::ConstantTimeEq`, and the result combined, again without branching, with
//! whether the lengths were equal. Finding the entry (by id, which is not secret) and
//! "no token at all" are ordinary branches.

use subtle::{Choice, ConstantTimeEq};

/// The result of [`crate::Registry::check_token`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    /// The token is the entry's current one, of this generation.
    Valid { generation: u32 },
    /// No token was presented (or an empty one).
    Missing,
    /// A token was presented and it is not the current one (it may be an old one).
    Wrong,
    /// No entry has this id.
    UnknownEntry,
}

impl TokenCheck {
    /// Whether publishing may go ahead.
    pub fn is_valid(self) -> bool {
        matches!(self, TokenCheck::Valid { .. })
    }
}

/// Whether `presented` equals `stored`, in time independent of `stored`'s content.
pub(crate) fn tokens_equal(stored: &[u8], presented: &[u8]) -> bool {
    let mut padded = vec![0u8; stored.len()];
    let common = stored.len().min(presented.len());
    padded[..common].copy_from_slice(&presented[..common]);
    let same_len = Choice::from(u8::from(stored.len() == presented.len()));
    let same_bytes = stored.ct_eq(&padded);
    bool::from(same_len & same_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_length_and_bytes_match() {
        assert!(tokens_equal(b"abcdefgh", b"abcdefgh"));
        assert!(!tokens_equal(b"abcdefgh", b"abcdefgx"));
        assert!(!tokens_equal(b"abcdefgh", b"abcdefg"));
        assert!(!tokens_equal(b"abcdefgh", b"abcdefgh\0"));
        assert!(!tokens_equal(b"abcdefgh", b""));
        // Zero padding must not make a prefix match a stored token ending in zeros.
        assert!(!tokens_equal(b"abc\0", b"abc"));
        assert!(tokens_equal(b"", b""));
    }
}
