//! The entries API client: one `POST /api/v1/entries` per publisher before the run, with
//! the optional bearer token; the answer's `id` and `token` are all a publisher needs.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// One request gives up after this: the API answers in milliseconds (a SQLite insert on
/// the origin's blocking pool), so 10 s means it is unreachable or stuck.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read: an entry with its endpoints is about 1 KB.
const MAX_ANSWER: usize = 64 * 1024;

/// An entry to publish to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EntriesError {
    #[error("cannot reach the entries API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the entries API at {url} did not answer within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("the entries API at {url} refused: {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("the entries API at {url} answered something that is not an entry: {reason}")]
    BadAnswer { url: String, reason: String },
}

/// A client for one or more origins' APIs.
#[derive(Clone)]
pub struct EntriesClient {
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    token: Option<String>,
}

impl EntriesClient {
    pub fn new(token: Option<String>) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            token,
        }
    }

    /// Creates an entry named `name` at the API `api` (`http://host:port`).
    pub async fn create(&self, api: &str, name: &str) -> Result<Entry, EntriesError> {
        let url = format!("{api}/api/v1/entries");
        match tokio::time::timeout(REQUEST_TIMEOUT, self.create_inner(&url, name)).await {
            Ok(r) => r,
            Err(_) => Err(EntriesError::Timeout { url }),
        }
    }

    async fn create_inner(&self, url: &str, name: &str) -> Result<Entry, EntriesError> {
        let unreachable = |reason: String| EntriesError::Unreachable {
            url: url.to_string(),
            reason,
        };
        let body = serde_json::json!({ "name": name }).to_string();
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header("content-type", "application/json");
        if let Some(token) = &self.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| unreachable(format!("bad URL: {e}")))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?
            .to_bytes();
        let value: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        if !status.is_success() {
            let message = value
                .as_ref()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            return Err(EntriesError::Refused {
                url: url.to_string(),
                status: status.as_u16(),
                message,
            });
        }
        let bad = |reason: &str| EntriesError::BadAnswer {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let value = value.ok_or_else(|| bad("not JSON"))?;
        let field = |key: &str| value[key].as_str().map(str::to_string);
        Ok(Entry {
            id: field("id").ok_or_else(|| bad("no \"id\" string"))?,
            token: field("token").ok_or_else(|| bad("no \"token\" string"))?,
        })
    }
}

/// An error and its sources, `a: b: c` (hyper's top-level message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
