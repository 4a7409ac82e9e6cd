//! The shape of entry ids (`1_gdrt137u`) and stream names (`1_gdrt137u_1`).
//!
//! The registry issues ids as `{digits}_{8 × [a-z0-9]}`. We accept 4 to 16 such
//! characters after the underscore, so ids from an older or foreign registry (Kaltura's
//! own are 8) still parse; the registry, not this shape check, decides whether an entry
//! exists.

/// At most this many digits before the underscore (a partner or shard number).
pub const ENTRY_PREFIX_MAX_DIGITS: usize = 10;
/// Fewest `[a-z0-9]` characters accepted after the underscore.
pub const ENTRY_SUFFIX_MIN_CHARS: usize = 4;
/// Most `[a-z0-9]` characters accepted after the underscore.
pub const ENTRY_SUFFIX_MAX_CHARS: usize = 16;
/// Highest rendition number in a stream name: FMLE-style ladders number renditions
/// `1..=N`, and two digits is far more than any encoder sends.
pub const MAX_RENDITION: u32 = 99;

/// Whether `text` has the shape of an entry id: `{1..=10 digits}_{4..=16 × [a-z0-9]}`.
pub fn is_entry_id(text: &str) -> bool {
    let Some((prefix, suffix)) = text.split_once('_') else {
        return false;
    };
    (1..=ENTRY_PREFIX_MAX_DIGITS).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && (ENTRY_SUFFIX_MIN_CHARS..=ENTRY_SUFFIX_MAX_CHARS).contains(&suffix.len())
        && suffix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Splits a stream name `{entryId}_{n}` into its entry id and rendition number, or
/// `None` if it does not have that shape. `n` is `1..=99` written without leading zeros,
/// so every rendition has exactly one name.
pub fn parse_stream_name(name: &str) -> Option<(&str, u32)> {
    let (entry_id, number) = name.rsplit_once('_')?;
    let canonical = !number.is_empty() && !number.starts_with('0') && number.len() <= 2;
    if !canonical || !number.bytes().all(|b| b.is_ascii_digit()) || !is_entry_id(entry_id) {
        return None;
    }
    let rendition: u32 = number.parse().ok()?;
    (1..=MAX_RENDITION)
        .contains(&rendition)
        .then_some((entry_id, rendition))
}

/// The `entry` and `rendition` of a stream name as metrics labels and log fields give
/// them: `("1_gdrt137u", "2")` for `1_gdrt137u_2`. A name of another form (the publish
/// path refuses them, but a refusal is logged with what was asked) is its own entry,
/// with an empty rendition.
pub fn stream_parts(name: &str) -> (String, String) {
    match parse_stream_name(name) {
        Some((entry, n)) => (entry.to_owned(), n.to_string()),
        None => (name.to_owned(), String::new()),
    }
}

/// The stream name of rendition `rendition` of `entry_id`.
pub fn stream_name(entry_id: &str, rendition: u32) -> String {
    format!("{entry_id}_{rendition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_parts_as_logged() {
        assert_eq!(
            stream_parts("1_gdrt137u_2"),
            ("1_gdrt137u".into(), "2".into())
        );
        assert_eq!(
            stream_parts("not-a-stream"),
            ("not-a-stream".into(), String::new())
        );
    }

    #[test]
    fn entry_id_shapes() {
        for good in ["1_gdrt137u", "0_abcd", "1234567890_abcdefghij012345"] {
            assert!(is_entry_id(good), "{good}");
        }
        for bad in [
            "",
            "1_",
            "_gdrt137u",
            "1_abc",
            "1_GDRT137U",
            "x_gdrt137u",
            "12345678901_gdrt137u",
            "1_abcdefghij01234567",
            "1_gdrt-37u",
            "1_gdrt_37u",
        ] {
            assert!(!is_entry_id(bad), "{bad}");
        }
    }

    #[test]
    fn stream_names_parse_only_in_canonical_form() {
        assert_eq!(parse_stream_name("1_gdrt137u_1"), Some(("1_gdrt137u", 1)));
        assert_eq!(parse_stream_name("1_gdrt137u_99"), Some(("1_gdrt137u", 99)));
        for bad in [
            "1_gdrt137u",
            "1_gdrt137u_0",
            "1_gdrt137u_01",
            "1_gdrt137u_100",
            "1_gdrt137u_",
            "1_gdrt137u_x",
            "1_gdrt137u_+1",
            "foo",
            "",
            "_1",
        ] {
            assert_eq!(parse_stream_name(bad), None, "{bad}");
        }
        assert_eq!(stream_name("1_gdrt137u", 3), "1_gdrt137u_3");
    }
}
