//! The operator's web console, served by every origin at `/console/`.
//!
//! The product description is written around a console page: the operator copies the
//! primary and backup RTMP URLs and stream names from the entry page, exports an FMLE
//! profile, and regenerates the token through a confirmation that warns the encoder
//! must be updated. This crate renders those pages, and a cluster page an operator on
//! call reads without opening Grafana:
//!
//! | page | module |
//! |---|---|
//! | entries: list, search, create | [`entries::list_page`] |
//! | an entry: endpoints with copy buttons, FMLE export, regenerate, delete, live renditions | [`entries::entry_page`], [`entries::live_fragment`] |
//! | confirmations of regenerate and delete | [`entries::regenerate_page`], [`entries::delete_page`] |
//! | cluster: this origin, edges' and peers' tunnels, failovers, refusals | [`cluster::cluster_page`] |
//! | sign-in, errors | [`sign_in_page`], [`layout::error_page`] |
//!
//! Pages are rendered on the server with `maud` (templates compiled into the binary),
//! are plain semantic HTML that reads without JavaScript, and use only this node's own
//! stylesheet and script ([`layout::STYLESHEET`], [`layout::SCRIPT`]): nodes may have
//! no internet. The script adds copy buttons and refreshes the live sections.
//!
//! Who may use it, and the sessions and CSRF tokens, are [`session`]'s. This crate
//! knows nothing of the node: the origin (`longhaul_origin::console`) fills the views
//! from its registry, hub and tunnels, and serves them.

pub mod cluster;
pub mod entries;
pub mod layout;
pub mod session;

pub use layout::{Frame, Section};
pub use maud::Markup;

use maud::html;

/// The sign-in page: the API's bearer key, exchanged for a session cookie.
pub fn sign_in_page(frame: &Frame, error: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Sign in" }
        @if let Some(error) = error {
            p class="error" role="alert" { (error) }
        }
        p { "The console acts with the entries API's authority: sign in with its key (" code { "http.api_token" } " in the origin's config)." }
        form method="post" action="/console/sign-in" class="actions" {
            label for="key" { "API key" }
            input type="password" id="key" name="key" autocomplete="current-password" required autofocus;
            button type="submit" { "Sign in" }
        }
    };
    layout::page(frame, Section::SignIn, "Sign in", body)
}
