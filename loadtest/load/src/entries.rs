//! The entries API client: one `POST /api/v1/entries` per publisher before the run, with
//! the optional bearer token; the answer's `id` and `token` are all a publisher needs.
//! Or, with `--entries FILE`, entries made beforehand: see [`parse_entries_file`].

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

/// Entries listed in a file, one per line: `REGION ID TOKEN` separated by blanks; empty
/// lines and lines starting with `#` are skipped. Returns, per region of `regions` in
/// order, its first `per_region` entries; a region with fewer is an error. Lines of
/// other regions are skipped, so one file serves runs over a subset of its regions.
pub fn parse_entries_file(
    text: &str,
    regions: &[&str],
    per_region: usize,
) -> Result<Vec<Vec<Entry>>, String> {
    let mut out: Vec<Vec<Entry>> = vec![Vec::new(); regions.len()];
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let [region, id, token] = words[..] else {
            return Err(format!(
                "line {}: expected REGION ID TOKEN, got {line:?}",
                n + 1
            ));
        };
        let Some(i) = regions.iter().position(|r| *r == region) else {
            continue;
        };
        if out[i].len() < per_region {
            out[i].push(Entry {
                id: id.to_string(),
                token: token.to_string(),
            });
        }
    }
    for (entries, region) in out.iter().zip(regions) {
        if entries.len() < per_region {
            return Err(format!(
                "region {region} has {} entries, --publishers asks for {per_region}",
                entries.len()
            ));
        }
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_files() {
        let text = "# made by hand\nsin 1_a ta\n\nfra 1_b tb\nsin 1_c tc\nsin 1_d td\n";
        let e = parse_entries_file(text, &["sin", "fra"], 1).unwrap();
        assert_eq!(
            e[0],
            vec![Entry {
                id: "1_a".into(),
                token: "ta".into()
            }]
        );
        assert_eq!(e[1][0].id, "1_b");
        assert_eq!(parse_entries_file(text, &["sin"], 3).unwrap()[0].len(), 3);
        let err = parse_entries_file(text, &["sin", "fra"], 2).unwrap_err();
        assert!(err.contains("region fra has 1 entries"), "{err}");
        let err = parse_entries_file("gru 1_x t\n", &["sin"], 1).unwrap_err();
        assert!(err.contains("region sin has 0 entries"), "{err}");
        let err = parse_entries_file("sin 1_x t\nsin 1_x\n", &["sin"], 1).unwrap_err();
        assert!(err.contains("line 2: expected REGION ID TOKEN"), "{err}");
    }
}
