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

/// A session ends this long after it started, used or not: a tab left open refreshes
/// its live sections every 2 s, which would otherwise keep it alive for ever.
pub const MAX_AGE: Duration = Duration::from_secs(12 * 3600);

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

/// What [`Access::of`] looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The peer's address.
    pub client: IpAddr,
    /// The `Host` header.
    pub host: Option<&'a str>,
    /// Whether it carries `Forwarded` or `X-Forwarded-For`: a proxy on this host
    /// passing on someone else's request.
    pub forwarded: bool,
}

impl Access {
    /// The rule, as the entries API applies it: a configured key is always needed;
    /// without one only loopback is served. Loopback means the peer's address *and* a
    /// `Host` that names this machine (`localhost`, `127.0.0.1`, `[::1]`, any port), and
    /// no proxy's forwarding headers: a page of another site whose name was pointed at
    /// 127.0.0.1 (DNS rebinding) sends its own host name, and a local proxy forwards
    /// the whole internet from loopback.
    pub fn of(key_configured: bool, request: Request) -> Access {
        let loopback = match request.client {
            IpAddr::V4(v4) => v4.is_loopback(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        };
        let local_host = request.host.is_some_and(names_this_machine);
        match key_configured {
            true => Access::SignIn,
            false if loopback && local_host && !request.forwarded => Access::Loopback,
            false => Access::Forbidden,
        }
    }
}

/// Whether a `Host` header names this machine by a loopback name or address.
pub fn names_this_machine(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // `[::1]:8081`
        rest.split(']').next().unwrap_or_default()
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token every state-changing form must carry.
    pub csrf: String,
    /// How it was let in, for the logs: `api key` or `loopback`.
    pub by: &'static str,
    started: Instant,
    last_used: Instant,
}

impl Session {
    fn live_at(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_used) < IDLE_TIMEOUT
            && now.saturating_duration_since(self.started) < MAX_AGE
    }

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
            started: now,
            last_used: now,
        };
        self.by_id.insert(id.clone(), session.clone());
        Some((id, session))
    }

    /// The session `id` names, if it is live; using it keeps it live.
    pub fn get(&mut self, id: &str, now: Instant) -> Option<Session> {
        let session = self.by_id.get_mut(id)?;
        if !session.live_at(now) {
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
        self.by_id.retain(|_, s| s.live_at(now));
    }
}

/// Whether `presented` is the configured key. The SHA-256 digests are compared, in
/// constant time, so neither the time taken nor an early return on a length mismatch
/// tells a guesser anything about the key.
pub fn key_matches(presented: &str, key: &str) -> bool {
    let digest = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    !presented.is_empty() && bool::from(digest(presented).as_ref().ct_eq(digest(key).as_ref()))
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

/// The session ids in a `Cookie` header (a browser may send a stale one beside the
/// live one).
pub fn session_ids_of(cookie_header: &str) -> impl Iterator<Item = &str> {
    cookie_header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE_NAME)
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

    fn request(client: &str, host: &'static str) -> Request<'static> {
        Request {
            client: client.parse().unwrap(),
            host: Some(host),
            forwarded: false,
        }
    }

    #[test]
    fn a_key_is_needed_wherever_the_client_is_when_one_is_configured() {
        assert_eq!(
            Access::of(true, request("127.0.0.1", "127.0.0.1:8081")),
            Access::SignIn
        );
        assert_eq!(
            Access::of(true, request("10.0.0.8", "origin:8081")),
            Access::SignIn
        );
    }

    #[test]
    fn without_a_key_only_loopback_is_served() {
        for (client, host) in [
            ("127.0.0.1", "127.0.0.1:8081"),
            ("::1", "[::1]:8081"),
            ("::ffff:127.0.0.1", "localhost:8081"),
            ("127.0.0.1", "LOCALHOST"),
            ("127.0.0.1", "127.0.0.2"),
        ] {
            assert_eq!(
                Access::of(false, request(client, host)),
                Access::Loopback,
                "{client} {host}"
            );
        }
        assert_eq!(
            Access::of(false, request("10.0.0.8", "127.0.0.1:8081")),
            Access::Forbidden
        );
        assert_eq!(
            Access::of(false, request("::ffff:10.0.0.8", "localhost")),
            Access::Forbidden
        );
    }

    #[test]
    fn loopback_with_another_sites_name_or_a_proxy_is_not_loopback() {
        // DNS rebinding: a page of evil.example, its name pointed at 127.0.0.1.
        for host in [
            "evil.example",
            "evil.example:8081",
            "localhost.evil.example",
            "[::2]:1",
        ] {
            assert_eq!(
                Access::of(false, request("127.0.0.1", host)),
                Access::Forbidden,
                "{host}"
            );
        }
        let mut no_host = request("127.0.0.1", "x");
        no_host.host = None;
        assert_eq!(Access::of(false, no_host), Access::Forbidden);
        let mut proxied = request("127.0.0.1", "localhost:8081");
        proxied.forwarded = true;
        assert_eq!(Access::of(false, proxied), Access::Forbidden);
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
        // Used every few seconds, a session still ends at its maximum age.
        let (id, _) = sessions.start("api key", t0).unwrap();
        let mut t = t0;
        while t < t0 + MAX_AGE - Duration::from_secs(60) {
            t += Duration::from_secs(3600);
            assert!(sessions
                .get(&id, t.min(t0 + MAX_AGE - Duration::from_secs(1)))
                .is_some());
        }
        assert!(sessions.get(&id, t0 + MAX_AGE).is_none());
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
        let ids = |h| session_ids_of(h).collect::<Vec<_>>();
        assert_eq!(ids("a=1; longhaul_console=xyz; b=2"), ["xyz"]);
        assert_eq!(
            ids("longhaul_console=old; longhaul_console=new"),
            ["old", "new"]
        );
        assert!(ids("longhaul_console=").is_empty());
        assert!(ids("other=1").is_empty());
    }
}
