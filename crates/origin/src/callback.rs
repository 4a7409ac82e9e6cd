//! The HTTP authorisation callback: for platforms that keep entries and tokens in their
//! own service (as nginx-rtmp's `on_publish` and MediaMTX's HTTP auth do), the origin
//! asks that service about each publish instead of its registry (`[auth] mode =
//! "callback"`).
//!
//! **Request.** `POST {auth.callback.url}`, `content-type: application/json`, and
//! `authorization: Bearer <token>` when `auth.callback.bearer_env` names one:
//!
//! ```json
//! {"entry_id": "1_gdrt137u", "rendition": 1, "leg": "primary", "stream_name": "1_gdrt137u_1",
//!  "token": "b9106yth4abcdefg", "client_addr": "203.0.113.7:50312", "transport": "rtmp",
//!  "encoder_region": "fra", "edge": "fra-1", "origin": "nyc-1"}
//! ```
//!
//! `token` is `null` when the URL carried none; `edge` is `null` for a publish made
//! straight to the origin; `transport` is `rtmp`, `rtmps` or `tunnel` (through an edge).
//!
//! **Reply.** Any 2xx allows the publish (the body is ignored). A 4xx refuses it: the
//! reason the encoder hears is the body's `{"reason": "..."}`, or else its first line of
//! text (at most 200 characters, control characters removed), or else the status. A
//! 5xx, a timeout (`auth.callback.timeout_ms`) or a failed connection is tried again up
//! to `auth.callback.retries` times; if none answers, the publish is refused as
//! "the authorisation service is unavailable" (an ingest that cannot ask must not let
//! everyone in).
//!
//! **Cache.** An allow is reused for `auth.callback.cache_secs` and a refusal for
//! `auth.callback.refusal_cache_secs`, for the same entry, rendition, leg, token and
//! client address; failures are never cached. `POST /api/v1/entries/{id}/revoke` forgets
//! the entry's answers and cuts its live publishes, so the next attempt asks again.

use crate::config::CallbackSection;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Longest reply body read: a reason, not a document.
const MAX_REPLY_BYTES: usize = 4096;
/// Longest reason passed on to the encoder and the logs.
const MAX_REASON_CHARS: usize = 200;
/// Answers kept at once. Ten thousand is every publish of a large cluster inside one
/// cache period; beyond it the expired ones go first, then the oldest.
const MAX_CACHED: usize = 10_000;
/// Pause before a retry: long enough for a restarting instance behind a load balancer
/// to be replaced, short against the encoder's patience.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Calls in flight at once. A burst of publishes (every encoder of an edge coming back
/// after a restart) is spread over the service rather than all thrown at it; past this
/// a publish waits for a slot within its timeout, then is refused as unavailable.
const MAX_IN_FLIGHT: usize = 64;

/// What the callback is told about a publish.
#[derive(Debug, Clone, Serialize)]
pub struct CallbackRequest {
    pub entry_id: String,
    pub rendition: u32,
    /// `primary` or `backup` (the URL's `p`/`b`, or `i=0`/`i=1`).
    pub leg: &'static str,
    pub stream_name: String,
    pub token: Option<String>,
    pub client_addr: String,
    pub transport: &'static str,
    pub encoder_region: String,
    pub edge: Option<String>,
    pub origin: String,
}

/// The callback's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackVerdict {
    Allowed,
    /// Refused, in the service's words.
    Refused {
        reason: String,
    },
    /// No answer after every attempt: why, for the logs.
    Unavailable {
        why: String,
    },
}

/// Which answers the cache holds: an answer is only reused for the very same question
/// (the client's port aside: a reconnect comes from a new one).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    entry_id: String,
    rendition: u32,
    leg: &'static str,
    token: Option<String>,
    client_ip: String,
}

struct Cached {
    verdict: CallbackVerdict,
    until: Instant,
}

/// The callback client. One per origin.
pub struct CallbackAuthority {
    client: Client<HttpConnector, Full<Bytes>>,
    url: hyper::Uri,
    bearer: Option<String>,
    timeout: Duration,
    retries: u32,
    allow_for: Duration,
    refuse_for: Duration,
    cache: Mutex<HashMap<Key, Cached>>,
    /// Moves on at every [`CallbackAuthority::forget`]: an answer asked for before a
    /// revocation and arriving after it is not cached.
    forgotten: std::sync::atomic::AtomicU64,
    in_flight: tokio::sync::Semaphore,
}

impl std::fmt::Debug for CallbackAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackAuthority")
            .field("url", &self.url)
            .finish()
    }
}

impl CallbackAuthority {
    /// The client for a validated `[auth.callback]`.
    pub fn new(section: &CallbackSection) -> Result<CallbackAuthority, String> {
        let url = section
            .url
            .parse()
            .map_err(|e| format!("auth.callback.url: {e}"))?;
        let bearer = match &section.bearer_env {
            Some(var) => Some(
                std::env::var(var)
                    .map_err(|_| format!("auth.callback.bearer_env: {var} is not set"))?,
            ),
            None => None,
        };
        Ok(CallbackAuthority {
            client: Client::builder(TokioExecutor::new()).build_http(),
            url,
            bearer,
            timeout: Duration::from_millis(section.timeout_ms),
            retries: section.retries,
            allow_for: Duration::from_secs(section.cache_secs),
            refuse_for: Duration::from_secs(section.refusal_cache_secs),
            cache: Mutex::new(HashMap::new()),
            forgotten: std::sync::atomic::AtomicU64::new(0),
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
        })
    }

    /// Where the callback goes, for messages.
    pub fn url(&self) -> String {
        self.url.to_string()
    }

    /// Asks about a publish (or reuses a fresh answer to the same question). The second
    /// value says whether the answer came from the cache.
    pub async fn check(&self, request: &CallbackRequest) -> (CallbackVerdict, bool) {
        let key = Key {
            entry_id: request.entry_id.clone(),
            rendition: request.rendition,
            leg: request.leg,
            token: request.token.clone(),
            client_ip: client_ip(&request.client_addr),
        };
        if let Some(verdict) = self.cached(&key, Instant::now()) {
            return (verdict, true);
        }
        let asked = self.forgotten.load(std::sync::atomic::Ordering::Acquire);
        let verdict = match tokio::time::timeout(self.timeout, self.in_flight.acquire()).await {
            Ok(Ok(_slot)) => self.ask(request).await,
            _ => CallbackVerdict::Unavailable {
                why: format!("{MAX_IN_FLIGHT} calls already in flight"),
            },
        };
        let keep_for = match verdict {
            CallbackVerdict::Allowed => self.allow_for,
            CallbackVerdict::Refused { .. } => self.refuse_for,
            CallbackVerdict::Unavailable { .. } => Duration::ZERO,
        };
        let unchanged = self.forgotten.load(std::sync::atomic::Ordering::Acquire) == asked;
        if !keep_for.is_zero() && unchanged {
            self.remember(key, verdict.clone(), keep_for, Instant::now());
        }
        (verdict, false)
    }

    /// Forgets every answer about `entry_id` (it was revoked), and any answer still
    /// on its way.
    pub fn forget(&self, entry_id: &str) {
        let mut cache = self.lock();
        self.forgotten
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        cache.retain(|k, _| k.entry_id != entry_id);
    }

    fn cached(&self, key: &Key, now: Instant) -> Option<CallbackVerdict> {
        let cache = self.lock();
        cache
            .get(key)
            .filter(|c| c.until > now)
            .map(|c| c.verdict.clone())
    }

    fn remember(&self, key: Key, verdict: CallbackVerdict, keep_for: Duration, now: Instant) {
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, c| c.until > now);
        }
        if cache.len() >= MAX_CACHED {
            if let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, c)| c.until)
                .map(|(k, _)| k.clone())
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(
            key,
            Cached {
                verdict,
                until: now + keep_for,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Cached>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls the service, retrying what may be passing (no answer, 5xx).
    async fn ask(&self, request: &CallbackRequest) -> CallbackVerdict {
        let body = Bytes::from(serde_json::to_vec(request).unwrap_or_default());
        let mut why = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            match tokio::time::timeout(self.timeout, self.call(body.clone())).await {
                Ok(Ok(verdict)) => return verdict,
                Ok(Err(e)) => why = e,
                Err(_) => why = format!("no answer within {} ms", self.timeout.as_millis()),
            }
            tracing::warn!(url = %self.url, entry = %request.entry_id, attempt = attempt + 1,
                error = %why, "authorisation callback failed");
        }
        CallbackVerdict::Unavailable { why }
    }

    /// One call: `Ok` with a verdict for a 2xx or 4xx, `Err` for what may be retried.
    async fn call(&self, body: Bytes) -> Result<CallbackVerdict, String> {
        let mut builder = hyper::Request::builder()
            .method(hyper::Method::POST)
            .uri(self.url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("longhaul/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(bearer) = &self.bearer {
            builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {bearer}"));
        }
        let req = builder
            .body(Full::new(body))
            .map_err(|e| format!("building the request: {e}"))?;
        let response = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("calling {}: {e}", self.url))?;
        let status = response.status();
        // Read the (bounded) body in every case, so the connection can be reused.
        let reply = Limited::new(response.into_body(), MAX_REPLY_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            return Ok(CallbackVerdict::Allowed);
        }
        if status.is_server_error() || status.is_informational() || status.is_redirection() {
            return Err(format!("{} answered {status}", self.url));
        }
        Ok(CallbackVerdict::Refused {
            reason: reason_from(&reply).unwrap_or_else(|| format!("refused ({status})")),
        })
    }
}

/// The reason in a refusal's body: `{"reason": "..."}`, or its first line of text.
fn reason_from(body: &[u8]) -> Option<String> {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => v.get("reason")?.as_str()?.to_owned(),
        Err(_) => String::from_utf8_lossy(body)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
    };
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON_CHARS)
        .collect();
    let clean = clean.trim().to_owned();
    (!clean.is_empty()).then_some(clean)
}

/// The address without its port.
fn client_ip(addr: &str) -> String {
    addr.parse::<std::net::SocketAddr>()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| addr.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_read_and_cleaned() {
        for (body, expected) in [
            (
                &br#"{"reason":"entry suspended for unpaid invoice"}"#[..],
                Some("entry suspended for unpaid invoice"),
            ),
            (b"token expired\nmore lines", Some("token expired")),
            (br#"{"other":"x"}"#, None),
            (b"", None),
            (b"  \t ", None),
            (b"bad\x07bell", Some("badbell")),
        ] {
            assert_eq!(reason_from(body).as_deref(), expected, "{body:?}");
        }
        let long = "x".repeat(1000);
        assert_eq!(
            reason_from(long.as_bytes()).unwrap().len(),
            MAX_REASON_CHARS
        );
    }

    #[test]
    fn the_cache_keys_on_the_address_not_the_port() {
        assert_eq!(client_ip("203.0.113.7:50312"), "203.0.113.7");
        assert_eq!(client_ip("[2001:db8::1]:9"), "2001:db8::1");
        assert_eq!(client_ip("not an address"), "not an address");
    }
}
