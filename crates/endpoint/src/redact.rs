//! Publish tokens out of log lines: one function every log line that carries an
//! encoder's URL, app, tcUrl or publish name goes through, at every level.
//!
//! A token travels as the `t` parameter of a query string (`?t=`, `&t=`), in the
//! connect `app`, the `tcUrl` or the publish name (see [`crate::resolve_publish`]); its
//! value runs to the next `&`, `/` or the end. Everything else is kept, so a log line
//! still says which entry, rendition and leg a publish was for.

use std::borrow::Cow;

/// What a token's value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// `text` with the value of every `t` query parameter replaced by [`REDACTED`].
pub fn redact_tokens(text: &str) -> Cow<'_, str> {
    if !text.contains("t=") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_token(rest) {
        let value_start = at + 2;
        out.push_str(&rest[..value_start]);
        out.push_str(REDACTED);
        let value = &rest[value_start..];
        let end = value.find(['&', '/', '?', '#']).unwrap_or(value.len());
        rest = &value[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The position of the next `t=` that starts a query parameter (after `?` or `&`).
fn find_token(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find("t=") {
        let at = from + i;
        if at > 0 && matches!(bytes[at - 1], b'?' | b'&') {
            return Some(at);
        }
        from = at + 2;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_place_a_token_travels_is_redacted() {
        for (text, expected) in [
            ("kLive/?t=abc", "kLive/?t=<redacted>"),
            ("kLive?t=abc", "kLive?t=<redacted>"),
            ("1_gdrt137u_1?t=abc", "1_gdrt137u_1?t=<redacted>"),
            (
                "rtmp://h:1935/kLive/?p=1&e=1_x&i=0&t=abc",
                "rtmp://h:1935/kLive/?p=1&e=1_x&i=0&t=<redacted>",
            ),
            (
                "rtmp://h/kLive/?t=abc&i=1/1_x_1",
                "rtmp://h/kLive/?t=<redacted>&i=1/1_x_1",
            ),
            ("kLive/?t=a/b?t=c", "kLive/?t=<redacted>/b?t=<redacted>"),
            ("kLive/?t=", "kLive/?t=<redacted>"),
            ("1_gdrt137u_1", "1_gdrt137u_1"),
            // Not a query parameter: kept.
            ("format=flv", "format=flv"),
            ("kLive/?at=1", "kLive/?at=1"),
        ] {
            assert_eq!(redact_tokens(text), expected, "{text}");
        }
    }

    #[test]
    fn no_value_of_a_t_parameter_survives() {
        for text in [
            "?t=SECRET",
            "&t=SECRET&t=SECRET",
            "é?t=SECRETé",
            "a?b=1&t=SECRET#x",
            "?t=?t=SECRET",
            "x/?t=SECRET/y?t=SECRET&z=1",
        ] {
            let out = redact_tokens(text);
            assert!(!out.contains("SECRET"), "{text} -> {out}");
        }
        for text in ["t=", "?t", "&", "", "\u{0}?t=\u{0}"] {
            let _ = redact_tokens(text);
        }
    }
}
