//! Who may use the console, and the sessions that remember it.
//!
//! The console acts with the entries API's authority, so it asks for the same secret:
//! an operator signs in once with the API's bearer key (`http.api_token`) and gets a
//! session cookie ([`cookie`]: `HttpOnly`, `SameSite=Strict`, `Secure` when the page
//! came over HTTPS). Without a key configured, the console serves loopback clients only
//! (as the API does: `longhaul dev`), each given a session on its first page.
//!
//! Every form that changes something carries the session's CSRF token
//! ([`Session::csrf_matches`]); `SameSite=Strict` already keeps the cookie off other
//! sites' requests, and the token covers browsers and proxies that ignore it.
//!
//! Plain code with time passed in, as the rest of the node's decisions are.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "longhaul_console";

/// A session unused this long ends: an operator's shift, not a browser's lifetime.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(8 * 3600);

/// Sessions kept at once. Each is about 200 bytes; a node has a handful of operators,
/// and a loopback client that never keeps its cookie (curl) makes one per page, so the
/// oldest are dropped past this.
pub const MAX_SESSIONS: usize = 1024;

/// How a client may use the console, before any session is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A key is configured: the client needs a session made by signing in with it.
    SignIn,
    /// No key, and the client is on loopback: served, with a session made on the spot.
    Loopback,
    /// No key, and the client is not on loopback: refused.
    Forbidden,
}

impl Access {
    /// The rule, as the entries API applies it: a configured key is always needed;
    /// without one only loopback is served.
    pub fn of(key_configured: bool, client: IpAddr) -> Access {
        let loopback = match client {
            IpAddr::V4(v4) => v4.is_loopback(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        };
        match (key_configured, loopback) {
            (true, _) => Access::SignIn,
            (false, true) => Access::Loopback,
            (false, false) => Access::Forbidden,
        }
    }
}

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token every state-changing form must carry.
    pub csrf: String,
    /// How it was let in, for the logs: `api key` or `loopback`.
    pub by: &'static str,
    last_used: Instant,
}

impl Session {
    /// Whether `presented` is this session's CSRF token (in constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        !presented.is_empty() && bool::from(presented.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

/// The node's console sessions, by id.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: HashMap<String, Session>,
}

impl Sessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a session; returns its id (the cookie's value) and the session, or
    /// `None` if the operating system's random number generator failed (a guessable
    /// session would be worse than none).
    pub fn start(&mut self, by: &'static str, now: Instant) -> Option<(String, Session)> {
        self.expire(now);
        if self.by_id.len() >= MAX_SESSIONS {
            if let Some(oldest) = self
                .by_id
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| id.clone())
            {
                self.by_id.remove(&oldest);
            }
        }
        let id = random_token()?;
        let session = Session {
            csrf: random_token()?,
            by,
            last_used: now,
        };
        self.by_id.insert(id.clone(), session.clone());
        Some((id, session))
    }

    /// The session `id` names, if it is live; using it keeps it live.
    pub fn get(&mut self, id: &str, now: Instant) -> Option<Session> {
        let session = self.by_id.get_mut(id)?;
        if now.saturating_duration_since(session.last_used) >= IDLE_TIMEOUT {
            self.by_id.remove(id);
            return None;
        }
        session.last_used = now;
        Some(session.clone())
    }

    /// Ends the session `id` (signing out).
    pub fn end(&mut self, id: &str) -> bool {
        self.by_id.remove(id).is_some()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        self.by_id
            .retain(|_, s| now.saturating_duration_since(s.last_used) < IDLE_TIMEOUT);
    }
}

/// Whether `presented` is the configured key (in constant time).
pub fn key_matches(presented: &str, key: &str) -> bool {
    !presented.is_empty() && bool::from(presented.as_bytes().ct_eq(key.as_bytes()))
}

/// The `Set-Cookie` value for session `id`. `secure` when the page came over HTTPS
/// (at a TLS-terminating proxy, which says so with `X-Forwarded-Proto`).
pub fn cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE_NAME}={id}; Path=/console; HttpOnly; SameSite=Strict{secure}")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cookie_removed(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE_NAME}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

/// The session id in a `Cookie` header, if it has one.
pub fn session_id_of(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// 32 random bytes, hex: a session id or CSRF token no one can guess.
fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_needed_wherever_the_client_is_when_one_is_configured() {
        assert_eq!(
            Access::of(true, "127.0.0.1".parse().unwrap()),
            Access::SignIn
        );
        assert_eq!(
            Access::of(true, "10.0.0.8".parse().unwrap()),
            Access::SignIn
        );
    }

    #[test]
    fn without_a_key_only_loopback_is_served() {
        assert_eq!(
            Access::of(false, "127.0.0.1".parse().unwrap()),
            Access::Loopback
        );
        assert_eq!(Access::of(false, "::1".parse().unwrap()), Access::Loopback);
        assert_eq!(
            Access::of(false, "::ffff:127.0.0.1".parse().unwrap()),
            Access::Loopback
        );
        assert_eq!(
            Access::of(false, "10.0.0.8".parse().unwrap()),
            Access::Forbidden
        );
        assert_eq!(
            Access::of(false, "::ffff:10.0.0.8".parse().unwrap()),
            Access::Forbidden
        );
    }

    #[test]
    fn a_session_lives_while_used_and_ends_when_idle_or_signed_out() {
        let mut sessions = Sessions::new();
        let t0 = Instant::now();
        let (id, session) = sessions.start("api key", t0).unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(id, session.csrf);
        let later = t0 + IDLE_TIMEOUT - Duration::from_secs(1);
        assert!(sessions.get(&id, later).is_some());
        // Used at `later`, so it lives until `later + IDLE_TIMEOUT`.
        assert!(sessions.get(&id, later + IDLE_TIMEOUT / 2).is_some());
        assert!(sessions.get(&id, later + IDLE_TIMEOUT * 2).is_none());
        assert!(
            sessions.get(&id, later).is_none(),
            "an expired session is gone"
        );
        let (id, _) = sessions.start("api key", t0).unwrap();
        assert!(sessions.end(&id));
        assert!(sessions.get(&id, t0).is_none());
        assert!(sessions.get("not-a-session", t0).is_none());
    }

    #[test]
    fn the_oldest_session_goes_when_the_store_is_full() {
        let mut sessions = Sessions::new();
        let t0 = Instant::now();
        let (first, _) = sessions.start("loopback", t0).unwrap();
        for i in 1..MAX_SESSIONS as u64 {
            sessions
                .start("loopback", t0 + Duration::from_millis(i))
                .unwrap();
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        let (newest, _) = sessions
            .start("loopback", t0 + Duration::from_secs(10))
            .unwrap();
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(sessions.get(&first, t0 + Duration::from_secs(10)).is_none());
        assert!(sessions
            .get(&newest, t0 + Duration::from_secs(10))
            .is_some());
    }

    #[test]
    fn csrf_and_key_checks_refuse_empty_and_wrong_values() {
        let mut sessions = Sessions::new();
        let (_, session) = sessions.start("api key", Instant::now()).unwrap();
        assert!(session.csrf_matches(&session.csrf.clone()));
        assert!(!session.csrf_matches(""));
        assert!(!session.csrf_matches(&session.csrf[1..]));
        assert!(key_matches("s3cret-key", "s3cret-key"));
        assert!(!key_matches("", ""));
        assert!(!key_matches("s3cret", "s3cret-key"));
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_over_https() {
        let c = cookie("abc", false);
        assert_eq!(
            c,
            "longhaul_console=abc; Path=/console; HttpOnly; SameSite=Strict"
        );
        assert!(cookie("abc", true).ends_with("; Secure"));
        assert!(cookie_removed(false).contains("Max-Age=0"));
        assert_eq!(session_id_of("a=1; longhaul_console=xyz; b=2"), Some("xyz"));
        assert_eq!(session_id_of("longhaul_console="), None);
        assert_eq!(session_id_of("other=1"), None);
    }
}
