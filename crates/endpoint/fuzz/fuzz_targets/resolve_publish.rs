//! Fuzzes the URL and token rules with whatever an encoder may send as connect `app`,
//! `tcUrl` and publish name (split from the input at NUL bytes). Any panic is a bug;
//! an accepted target must name an entry id and a rendition in range, and no token it
//! found may survive the log redaction of the text it came in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use longhaul_endpoint::{
    is_entry_id, redact_tokens, resolve_publish, Leg, MAX_RENDITION, REDACTED,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let app = parts.next().unwrap_or_default();
    let tc_url = parts.next();
    let name = parts.next().unwrap_or_default();
    for leg in [Leg::Primary, Leg::Backup] {
        if let Ok(target) = resolve_publish(app, tc_url, name, leg) {
            assert!(is_entry_id(&target.entry_id), "{target:?}");
            assert!((1..=MAX_RENDITION).contains(&target.rendition));
            let clear = |t: &&str| t.len() >= 4 && !REDACTED.contains(*t);
            if let Some(token) = target.token.as_deref().filter(clear) {
                for place in [app, tc_url.unwrap_or_default(), name] {
                    let redacted = redact_tokens(place);
                    for form in [format!("?t={token}"), format!("&t={token}")] {
                        assert!(!redacted.contains(&form), "{place} -> {redacted}");
                    }
                }
            }
        }
    }
});
