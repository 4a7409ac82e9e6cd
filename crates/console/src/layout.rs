//! The frame every page shares (header, navigation, sign-out), the error page, and the
//! console's own stylesheet and script, compiled into the binary and served from the
//! node itself: a node may have no internet, so nothing comes from a CDN.

use maud::{html, Markup, DOCTYPE};
use std::time::{Duration, SystemTime};

/// The stylesheet (`/console/assets/console.css`): system fonts, readable on a phone
/// (one column under 40em), visible keyboard focus.
pub const STYLESHEET: &str = include_str!("console.css");

/// The script (`/console/assets/console.js`): copy buttons, revealing a token, and the
/// live refresh of the sections marked `data-refresh`. The pages read without it.
pub const SCRIPT: &str = include_str!("console.js");

/// The icon (`/console/assets/icon.svg`): a browser asks for one, and a 404 in its
/// console would hide real errors.
pub const ICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
    <rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#1f6feb\"/>\
    <path d=\"M3 11h10M3 8h7M3 5h4\" stroke=\"#fff\" stroke-width=\"1.5\"/></svg>";

/// The `Content-Security-Policy` of every console page: nothing but this node's own
/// stylesheet and script, no inline script, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// Which part of the console a page belongs to, for the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Entries,
    Cluster,
    SignIn,
    /// An error page: the navigation, with no page of it current.
    Error,
}

/// What the header shows: the node, and the signed-in session's sign-out form.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    pub node: &'a str,
    pub region: &'a str,
    /// The session's CSRF token, for the sign-out form; `None` when not signed in.
    pub csrf: Option<&'a str>,
    /// Whether signing out means anything (a session made by signing in with the key;
    /// a loopback session needs none).
    pub can_sign_out: bool,
}

/// A whole page: `title`, in the frame, around `body`.
pub fn page(frame: &Frame, section: Section, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · longhaul " (frame.node) }
                link rel="stylesheet" href="/console/assets/console.css";
                link rel="icon" href="/console/assets/icon.svg" type="image/svg+xml";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    p class="brand" { "longhaul" span class="node" { (frame.node) " · " (frame.region) } }
                    @if section != Section::SignIn {
                        nav aria-label="Console" {
                            ul {
                                li { a href="/console/entries" aria-current=[(section == Section::Entries).then_some("page")] { "Entries" } }
                                li { a href="/console/cluster" aria-current=[(section == Section::Cluster).then_some("page")] { "Cluster" } }
                            }
                        }
                        @if let (true, Some(csrf)) = (frame.can_sign_out, frame.csrf) {
                            form method="post" action="/console/sign-out" class="sign-out" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" { (body) }
                p id="console-status" class="visually-hidden" role="status" {}
            }
        }
    }
}

/// A notice at the top of a page (after a change), announced to screen readers.
pub fn notice(text: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = text {
            p class="notice" role="status" { (text) }
        }
    }
}

/// The page of a refused or failed request: what happened and what to do.
pub fn error_page(frame: &Frame, status: u16, title: &str, message: &str) -> Markup {
    page(
        frame,
        Section::Error,
        title,
        html! {
            h1 { (title) }
            p class="error" role="alert" { (message) }
            p class="muted" { "HTTP " (status) }
            p {
                @if status == 401 {
                    a href="/console/sign-in" { "Sign in" }
                } @else {
                    a href="/console/entries" { "Back to the entries" }
                }
            }
        },
    )
}

/// `t` as an HTTP date (`Sat, 05 Dec 2026 21:50:03 GMT`), or `-` at 0.
pub fn date(unix_seconds: u64) -> String {
    if unix_seconds == 0 {
        return "-".into();
    }
    httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(unix_seconds))
}

/// A bit rate for people: `2.41 Mbit/s`, `640 kbit/s`.
pub fn bitrate(bps: f64) -> String {
    if bps >= 1e6 {
        format!("{:.2} Mbit/s", bps / 1e6)
    } else {
        format!("{:.0} kbit/s", bps / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(bitrate(2_410_000.0), "2.41 Mbit/s");
        assert_eq!(bitrate(640_400.0), "640 kbit/s");
        assert_eq!(date(0), "-");
        assert_eq!(date(1_796_507_403), "Sat, 05 Dec 2026 21:50:03 GMT");
    }

    #[test]
    fn text_is_escaped() {
        let frame = Frame {
            node: "<nyc>",
            region: "nyc",
            csrf: None,
            can_sign_out: false,
        };
        let html = page(
            &frame,
            Section::Entries,
            "a & b",
            html! { p { "<script>" } },
        )
        .into_string();
        assert!(html.contains("&lt;nyc&gt;"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("<script>"));
    }
}
