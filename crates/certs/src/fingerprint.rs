//! Certificate fingerprints and the deny list made of them, sans IO.
//!
//! A fingerprint is the SHA-256 of a certificate's DER bytes, written as 64 lowercase hex
//! digits: what `longhaul pki fingerprint FILE` prints and what `openssl x509
//! -fingerprint -sha256` prints with colons. An operator who loses one edge's key lists
//! its fingerprint and the origins shut that certificate out, without a new CA.

use std::collections::HashSet;
use std::fmt;

/// The SHA-256 of a certificate's DER encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of(der: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }

    /// Reads 64 hex digits, either case, optionally in colon-separated pairs (openssl's
    /// form) and after a `sha256:` or openssl's `sha256 Fingerprint=` prefix.
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let trimmed = text.trim();
        let lower = trimmed.to_ascii_lowercase();
        let body = lower
            .strip_prefix("sha256 fingerprint=")
            .or_else(|| lower.strip_prefix("sha256:"))
            .unwrap_or(&lower);
        let digits: Vec<u8> = body.bytes().filter(|b| *b != b':').collect();
        let bad = || format!("{trimmed:?} is not a SHA-256 fingerprint (64 hex digits)");
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (i, pair) in digits.chunks(2).enumerate() {
            let hex = |b: u8| (b as char).to_digit(16);
            match (hex(pair[0]), hex(pair[1])) {
                (Some(h), Some(l)) => bytes[i] = (h * 16 + l) as u8,
                _ => return Err(bad()),
            }
        }
        Ok(Fingerprint(bytes))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Certificates a node refuses whatever signed them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DenyList(HashSet<Fingerprint>);

impl DenyList {
    pub fn new(fingerprints: impl IntoIterator<Item = Fingerprint>) -> DenyList {
        DenyList(fingerprints.into_iter().collect())
    }

    pub fn contains(&self, fingerprint: &Fingerprint) -> bool {
        self.0.contains(fingerprint)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many of these fingerprints `other` does not hold.
    pub fn difference(&self, other: &DenyList) -> usize {
        self.0.difference(&other.0).count()
    }
}

/// Reads a deny list file: one fingerprint per line, `#` starts a comment, blank lines
/// are skipped. One bad line refuses the whole file (naming the line): a list read in
/// part could leave out the very certificate it was edited to deny.
pub fn parse_deny_file(text: &str) -> Result<Vec<Fingerprint>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        out.push(Fingerprint::parse(line).map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_and_reads_back_in_every_accepted_form() {
        let f = Fingerprint::of(b"some certificate");
        let hex = f.to_string();
        assert_eq!(hex.len(), 64);
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let colons: Vec<String> = f.0.iter().map(|b| format!("{b:02X}")).collect();
        for form in [
            hex.clone(),
            hex.to_uppercase(),
            format!("  sha256:{hex} "),
            format!("sha256 Fingerprint={}", colons.join(":")),
        ] {
            assert_eq!(Fingerprint::parse(&form), Ok(f), "{form}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_fingerprint() {
        let hex = Fingerprint::of(b"x").to_string();
        for bad in [
            "",
            "abc",
            &hex[..62],
            &format!("{hex}00"),
            &format!("{}zz", &hex[..62]),
            "é".repeat(32).as_str(),
        ] {
            assert!(Fingerprint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_deny_file_skips_comments_and_names_a_bad_line() {
        let (a, b) = (Fingerprint::of(b"a"), Fingerprint::of(b"b"));
        let text = format!("# stolen 2025-01\n{a}  # fra-1\n\n   {b}\n");
        assert_eq!(parse_deny_file(&text), Ok(vec![a, b]));
        let list = DenyList::new(parse_deny_file(&text).unwrap());
        assert!(list.contains(&a) && list.contains(&b) && list.len() == 2);
        assert!(!list.contains(&Fingerprint::of(b"c")));

        let err = parse_deny_file(&format!("{a}\nfra-1\n")).unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        assert_eq!(parse_deny_file("# nobody yet\n"), Ok(vec![]));
    }
}
