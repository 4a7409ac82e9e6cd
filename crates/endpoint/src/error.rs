//! Why what an encoder sent could not be turned into a publish target. Messages are for
//! the encoder's operator: they say what was wrong and what we expected instead. They
//! never repeat a query string, so a token never lands in a log through an error.

use std::fmt;

use thiserror::Error;

use crate::leg::Leg;

/// At most this many characters of an offending value are kept in an error, so an
/// error message stays one readable line whatever the encoder sent.
pub const ERROR_EXCERPT_CHARS: usize = 64;

/// A part of what an encoder sends when it connects and publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The connect command's `app` (`kLive/?t=abc`).
    App,
    /// The connect command's `tcUrl` (`rtmp://host:1935/kLive/?t=abc`).
    TcUrl,
    /// The publish command's stream name (`1_gdrt137u_1?t=abc`).
    StreamName,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Place::App => "the application (connect app)",
            Place::TcUrl => "the tcUrl",
            Place::StreamName => "the stream name",
        })
    }
}

/// Where an entry id other than the stream name's came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntrySource {
    /// The tcUrl host's first label (`1_gdrt137u.p.host`).
    TcUrlHost,
    /// An `e=<entryId>` query parameter, in the given place's query.
    Param(Place),
}

impl fmt::Display for EntrySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntrySource::TcUrlHost => f.write_str("the server host name"),
            EntrySource::Param(place) => write!(f, "the 'e' parameter in {place}"),
        }
    }
}

/// What was wrong with a publish attempt.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EndpointError {
    /// One input is longer than [`crate::MAX_INPUT_LEN`].
    #[error("{place} is {len} bytes long; at most {max} bytes are accepted")]
    InputTooLong {
        place: Place,
        len: usize,
        max: usize,
    },

    /// The base application (app up to `?`, trailing `/` trimmed) is not `kLive`.
    #[error(
        "application '{app}' is not served here; publish to the kLive application \
         (rtmp://<host>:1935/kLive/?t=<token>)"
    )]
    UnknownApplication { app: String },

    /// The stream name (without its query) is not `{entryId}_{n}`.
    #[error(
        "stream name '{name}' is not of the form {{entryId}}_{{n}} (like 1_gdrt137u_1, \
         with n from 1 to 99); copy the stream name shown with the endpoint"
    )]
    BadStreamName { name: String },

    /// The stream name's entry and another entry id in the URL disagree.
    #[error(
        "stream name is for entry {stream_entry} but {other} names entry {other_entry}; \
         use the URL and stream names of one entry"
    )]
    EntryMismatch {
        stream_entry: String,
        other_entry: String,
        other: EntrySource,
    },

    /// An `i` parameter that is neither `0` nor `1`.
    #[error("'i={value}' in {place} is not valid: use i=0 for primary or i=1 for backup")]
    BadLegParam { value: String, place: Place },

    /// The host label and the `i` parameter name different legs.
    #[error(
        "the server host name is the {host} endpoint but 'i' asks for {param}; \
         remove 'i' from the URL or use the {param} endpoint's URL"
    )]
    LegMismatch { host: Leg, param: Leg },
}

/// At most [`ERROR_EXCERPT_CHARS`] characters of `value`, with `…` if cut.
pub(crate) fn excerpt(value: &str) -> String {
    let mut chars = value.chars();
    let head: String = chars.by_ref().take(ERROR_EXCERPT_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_cuts_long_values_on_char_boundaries() {
        assert_eq!(excerpt("abc"), "abc");
        let long = "é".repeat(100);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), ERROR_EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn bad_stream_name_message_shows_the_expected_form() {
        let err = EndpointError::BadStreamName { name: "foo".into() };
        assert_eq!(
            err.to_string(),
            "stream name 'foo' is not of the form {entryId}_{n} (like 1_gdrt137u_1, with n \
             from 1 to 99); copy the stream name shown with the endpoint"
        );
    }
}
