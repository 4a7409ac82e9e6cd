//! Fresh entry ids and publish tokens, from the operating system's CSPRNG (`getrandom`).
//!
//! Both are drawn without modulo bias: id characters by rejection sampling, token
//! characters as 5-bit slices of random bytes.

use crate::error::RegistryError;

/// Prefix of the entry ids we issue, in the product's `{digits}_{8 chars}` shape
/// (`1_gdrt137u`). One registry serves one tenant, so the digits are fixed.
pub const ENTRY_ID_PREFIX: &str = "1_";
/// Random characters after the prefix: 36^8 ≈ 2.8 × 10^12 ids, so collisions (retried
/// anyway) are rare for any realistic number of entries.
pub const ENTRY_ID_RANDOM_CHARS: usize = 8;
/// How many fresh ids [`crate::Registry::create_entry`] tries before giving up; with
/// 36^8 ids, even a registry of a million entries fails a draw one time in 2.8 million.
pub const ENTRY_ID_ATTEMPTS: u32 = 8;
/// Characters of entry ids after the prefix: lowercase letters and digits.
const ENTRY_ID_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Length of a publish token. 16 characters of lowercase base32 carry 80 bits of CSPRNG
/// entropy: far beyond online guessing (each guess is a TCP + RTMP handshake), short
/// enough for ffmpeg's 1024-character tcUrl cap and for reading aloud, and URL-safe and
/// case-insensitive-safe without any escaping.
pub const TOKEN_CHARS: usize = 16;
/// RFC 4648 base32 alphabet, lowercased: `[a-z2-7]`, 32 symbols, 5 bits each.
const TOKEN_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Random bytes behind one token: 16 × 5 bits = 80 bits = 10 bytes.
const TOKEN_BYTES: usize = TOKEN_CHARS * 5 / 8;

/// Random bytes at or above this are rejected when drawing an id character, so that each
/// of the 36 characters is equally likely (252 = 7 × 36).
const ID_REJECT_FROM: u8 = (256 / ENTRY_ID_ALPHABET.len() * ENTRY_ID_ALPHABET.len()) as u8;

fn fill_random(buf: &mut [u8]) -> Result<(), RegistryError> {
    getrandom::fill(buf).map_err(|e| RegistryError::Random(e.to_string()))
}

/// A fresh entry id: `1_` and 8 uniformly random characters of `[a-z0-9]`.
pub fn new_entry_id() -> Result<String, RegistryError> {
    let mut id = String::with_capacity(ENTRY_ID_PREFIX.len() + ENTRY_ID_RANDOM_CHARS);
    id.push_str(ENTRY_ID_PREFIX);
    let mut buf = [0u8; 16];
    while id.len() < ENTRY_ID_PREFIX.len() + ENTRY_ID_RANDOM_CHARS {
        fill_random(&mut buf)?;
        for &byte in buf.iter().filter(|&&b| b < ID_REJECT_FROM) {
            if id.len() == ENTRY_ID_PREFIX.len() + ENTRY_ID_RANDOM_CHARS {
                break;
            }
            id.push(char::from(
                ENTRY_ID_ALPHABET[usize::from(byte) % ENTRY_ID_ALPHABET.len()],
            ));
        }
    }
    Ok(id)
}

/// A fresh publish token: [`TOKEN_CHARS`] characters of `[a-z2-7]`, 80 random bits.
pub fn new_token() -> Result<String, RegistryError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    fill_random(&mut bytes)?;
    Ok(base32_lower(&bytes))
}

/// Each consecutive 5 bits of `bytes`, most significant first, as a base32 character.
fn base32_lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        acc = (acc << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(TOKEN_ALPHABET[((acc >> bits) & 0x1f) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_bound_is_a_multiple_of_the_alphabet() {
        assert_eq!(ID_REJECT_FROM, 252);
        assert_eq!(usize::from(ID_REJECT_FROM) % ENTRY_ID_ALPHABET.len(), 0);
    }

    #[test]
    fn base32_matches_rfc4648_test_vectors() {
        // RFC 4648 base32, lowercased (as Python's base64.b32encode(b"foobarfoob") gives).
        assert_eq!(base32_lower(b"foobarfoob"), "mzxw6ytbojtg633c");
        assert_eq!(base32_lower(&[0; 10]), "aaaaaaaaaaaaaaaa");
        assert_eq!(base32_lower(&[0xff; 10]), "7777777777777777");
    }

    #[test]
    fn shapes() {
        let id = new_entry_id().unwrap();
        assert_eq!(id.len(), 10);
        assert!(id.starts_with("1_"));
        let token = new_token().unwrap();
        assert_eq!(token.len(), TOKEN_CHARS);
        assert!(token.bytes().all(|b| TOKEN_ALPHABET.contains(&b)));
    }

    /// Every id character shows up, and none far more often than the others: a gross
    /// bias (like `% 36` on bytes, which favours a..d by 8/7) would not pass by chance.
    #[test]
    fn id_characters_are_roughly_uniform() {
        let mut counts = [0u32; 36];
        for _ in 0..4000 {
            for b in new_entry_id().unwrap().bytes().skip(2) {
                let index = ENTRY_ID_ALPHABET.iter().position(|&c| c == b).unwrap();
                counts[index] += 1;
            }
        }
        // 32 000 draws: expected 889 each, standard deviation ≈ 29.
        for (c, &n) in ENTRY_ID_ALPHABET.iter().zip(&counts) {
            assert!(
                (700..1080).contains(&n),
                "{} drawn {n} times",
                char::from(*c)
            );
        }
    }
}
