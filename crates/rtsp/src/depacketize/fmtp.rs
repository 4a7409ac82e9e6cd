//! The SDP `a=fmtp` parameters a depacketiser reads, and the two encodings they use.
//!
//! An fmtp line's parameters are `name=value` pairs separated by `;` (RFC 4566, 6, and
//! each payload format's RFC). Names are case-insensitive (RFC 3640, 4.1; RFC 6184,
//! 8.1), values are kept as sent. Parameter sets travel in base64 (RFC 6184
//! `sprop-parameter-sets`, RFC 7798 `sprop-vps`/`sprop-sps`/`sprop-pps`) and the AAC
//! AudioSpecificConfig in hex (RFC 3640 `config`), decoded here without a dependency.

use super::DepacketizeError;

/// The parameters of an fmtp string, in order.
#[derive(Debug, Default)]
pub(super) struct FormatParameters<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> FormatParameters<'a> {
    /// Splits `fmtp` (without the `a=fmtp:<pt> ` prefix) into its parameters; a
    /// parameter without `=` has an empty value. `None` gives no parameters.
    pub(super) fn parse(fmtp: Option<&'a str>) -> Self {
        let pairs = fmtp
            .unwrap_or("")
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((name, value)) => (name.trim(), value.trim()),
                None => (p, ""),
            })
            .collect();
        Self { pairs }
    }

    /// The value of parameter `name` (case-insensitive), the first if repeated.
    pub(super) fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// Parameter `name` as a number; `Ok(None)` when absent.
    pub(super) fn number(&self, name: &'static str) -> Result<Option<u32>, DepacketizeError> {
        match self.get(name) {
            None => Ok(None),
            Some(value) => value
                .parse()
                .map(Some)
                .map_err(|_| DepacketizeError::BadParameter {
                    name,
                    reason: format!("{value:?} is not a number"),
                }),
        }
    }
}

/// Decodes standard base64 (RFC 4648, 4), padding optional, as parameter sets are sent.
pub(super) fn base64(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let text = text.trim().trim_end_matches('=').as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut bits = 0u32;
        for &c in chunk {
            bits = (bits << 6) | sextet(c)?;
        }
        // A chunk of n characters holds n * 6 bits, of which (n - 1) bytes are data.
        bits <<= 6 * (4 - chunk.len() as u32);
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// Decodes hex digits (either case), as RFC 3640's `config` is sent.
pub(super) fn hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim().as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2)
        .map(|pair| {
            let digit = |c: u8| char::from(c).to_digit(16);
            let (high, low) = (pair.first()?, pair.get(1)?);
            Some((digit(*high)? * 16 + digit(*low)?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_split_and_names_case_insensitive() {
        let p = FormatParameters::parse(Some(
            "packetization-mode=1; sprop-parameter-sets=Z0LAHtkA,aMuMsg==;Profile-Level-Id=42C01E;flag",
        ));
        assert_eq!(p.get("packetization-mode"), Some("1"));
        assert_eq!(p.get("sprop-parameter-sets"), Some("Z0LAHtkA,aMuMsg=="));
        assert_eq!(p.get("profile-level-id"), Some("42C01E"));
        assert_eq!(p.get("flag"), Some(""));
        assert_eq!(p.get("absent"), None);
        assert_eq!(p.number("packetization-mode").unwrap(), Some(1));
        assert!(p.number("profile-level-id").is_err());
        assert_eq!(FormatParameters::parse(None).get("x"), None);
    }

    #[test]
    fn base64_with_and_without_padding() {
        assert_eq!(base64("aMuMsg==").unwrap(), [0x68, 0xcb, 0x8c, 0xb2]);
        assert_eq!(base64("aMuMsg").unwrap(), [0x68, 0xcb, 0x8c, 0xb2]);
        assert_eq!(base64("TWFu").unwrap(), b"Man");
        assert_eq!(base64("TWE=").unwrap(), b"Ma");
        assert_eq!(base64("").unwrap(), b"");
        assert_eq!(base64("T"), None);
        assert_eq!(base64("TW!u"), None);
    }

    #[test]
    fn hex_digits() {
        assert_eq!(hex("1190").unwrap(), [0x11, 0x90]);
        assert_eq!(hex("118856e500").unwrap(), [0x11, 0x88, 0x56, 0xe5, 0x00]);
        assert_eq!(hex("119"), None);
        assert_eq!(hex("1g"), None);
    }
}
