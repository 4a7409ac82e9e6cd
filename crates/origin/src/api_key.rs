//! The check of the origin's API key (`http.api_token`), shared by the entries API's
//! bearer token and the web console's sign-in, so both take guesses alike: an address
//! the node's abuse guard has banned is refused first (the right key included), keys
//! are compared as SHA-256 digests, and a wrong key is a credential failure of its
//! address, as a wrong publish token is.

use longhaul_node::abuse_gate::TooManyFailures;
use longhaul_node::AbuseGate;
use std::net::IpAddr;

/// Why a presented key was not taken.
#[derive(Debug)]
pub enum KeyRefused {
    /// The address failed too often: it is refused for a while, whatever it presents.
    Banned(TooManyFailures),
    /// Not the configured key.
    Wrong,
}

/// Takes `presented` if it is `key` and `client` is not banned; a wrong key counts
/// against `client`. The guard may first slow a client that has been failing.
pub async fn check(
    abuse: &AbuseGate,
    client: IpAddr,
    presented: &str,
    key: &str,
) -> Result<(), KeyRefused> {
    abuse.admit(client).await.map_err(KeyRefused::Banned)?;
    if longhaul_console::session::key_matches(presented, key) {
        return Ok(());
    }
    abuse.failed(client, "wrong_token");
    Err(KeyRefused::Wrong)
}
