//! Query strings as encoders send them: `&`-separated `k=v` pairs, %-decoded.
//!
//! Lenient on purpose, because the text comes from hand-typed encoder settings: a pair
//! without `=` is a key with an empty value, a malformed `%` escape is kept as typed, and
//! bytes that do not decode to UTF-8 become U+FFFD (a token with them simply will not
//! match). `+` is not a space here: RTMP URLs are not HTML forms.

/// Splits `text` at its first `?` into the part before and the query after, if any.
pub(crate) fn split_query(text: &str) -> (&str, Option<&str>) {
    match text.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (text, None),
    }
}

/// The %-decoded value of the first pair in `query` whose %-decoded key is `key` and
/// whose value is not empty. An empty value (`t=`) counts as absent.
pub(crate) fn param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == key).then(|| percent_decode(v))
        })
        .find(|value| !value.is_empty())
}

/// Decodes `%XX` escapes; anything else passes through unchanged.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) => hex_value(hi).zip(hex_value(lo)),
            _ => None,
        };
        match escaped {
            Some((hi, lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes everything but RFC 3986 unreserved characters as `%XX`, for putting a value
/// in a query we hand out.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_first_question_mark() {
        assert_eq!(split_query("kLive/?t=abc"), ("kLive/", Some("t=abc")));
        assert_eq!(split_query("a?b?c"), ("a", Some("b?c")));
        assert_eq!(split_query("kLive"), ("kLive", None));
    }

    #[test]
    fn finds_the_first_non_empty_value() {
        assert_eq!(param("p=1&e=x&t=abc", "t").as_deref(), Some("abc"));
        assert_eq!(param("t=&t=second", "t").as_deref(), Some("second"));
        assert_eq!(param("t=first&t=second", "t").as_deref(), Some("first"));
        assert_eq!(param("t", "t"), None);
        assert_eq!(param("tt=abc", "t"), None);
        assert_eq!(param("", "t"), None);
        assert_eq!(param("%74=abc", "t").as_deref(), Some("abc"));
    }

    #[test]
    fn decodes_escapes_and_keeps_malformed_ones() {
        assert_eq!(percent_decode("a%2Fb%3d"), "a/b=");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("a+b"), "a+b");
        assert_eq!(percent_decode("%C3%A9"), "é");
        assert_eq!(percent_decode("%FF"), "\u{FFFD}");
    }

    #[test]
    fn encoding_round_trips() {
        let text = "a b&c=d/é~_.-";
        let encoded = percent_encode(text);
        assert_eq!(encoded, "a%20b%26c%3Dd%2F%C3%A9~_.-");
        assert_eq!(percent_decode(&encoded), text);
    }
}
