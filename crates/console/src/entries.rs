//! The entries pages: the list (search, create), an entry's page (its endpoints as the
//! product description lists them, the FMLE export, token regeneration and deletion
//! behind confirmations, its live renditions), and the confirmations.
//!
//! Tokens are masked wherever a page shows them; the entry page shows them only when
//! asked (`?reveal=1`, logged by the node), and the copy buttons fetch the endpoints
//! with their tokens (`endpoints.json`) when clicked, so no token sits in a page that
//! was not asked to show one.

use crate::layout::{bitrate, date, notice, page, Frame, Section};
use longhaul_endpoint::{Endpoints, LegUrls, RtspRendition};
use maud::{html, Markup};

/// What stands for a token on a page that does not show it.
pub const MASK: &str = "••••••••";

/// One row of the entries list.
#[derive(Debug, Clone)]
pub struct EntryRow {
    pub id: String,
    pub name: String,
    pub created_at: u64,
    /// Renditions of the entry live at this origin now.
    pub live_renditions: usize,
}

/// The entries list: the rows shown, and how many matched.
#[derive(Debug, Clone)]
pub struct EntryList {
    pub rows: Vec<EntryRow>,
    /// Entries matching the search (more than `rows` when the list is cut).
    pub matched: usize,
    /// Entries in all.
    pub total: usize,
    /// The search, as typed.
    pub query: String,
}

/// Entries shown at most on the list page: more is a search away.
pub const MAX_LISTED: usize = 200;

/// An entry as its page shows it.
#[derive(Debug, Clone)]
pub struct EntryView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub created_at: u64,
    pub token: &'a str,
    pub token_generation: u32,
    pub endpoints: &'a Endpoints,
    pub live: &'a Live,
}

/// What of an entry is live: its renditions here, and where else the cluster says
/// its streams are live.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub here: Vec<LiveRendition>,
    pub elsewhere: Vec<LiveElsewhere>,
}

/// A stream of the entry live at other origins (from the registry's presence rows).
#[derive(Debug, Clone)]
pub struct LiveElsewhere {
    /// `{entryId}_{n}`.
    pub stream: String,
    /// `pao-1 (pao)`, one per origin.
    pub origins: Vec<String>,
}

/// A rendition of the entry live at this origin.
#[derive(Debug, Clone)]
pub struct LiveRendition {
    /// `{entryId}_{n}`.
    pub name: String,
    /// The leg on air (`primary` or `backup`), if one has reached a keyframe.
    pub on_air: Option<&'static str>,
    /// Players of the rendition's on-air stream.
    pub players: usize,
    pub legs: Vec<LiveLeg>,
    /// The last switch between legs: `primary → backup (leg gone)` and when.
    pub last_switch: Option<(String, u64)>,
}

/// One leg of a live rendition.
#[derive(Debug, Clone)]
pub struct LiveLeg {
    /// `primary` or `backup`.
    pub leg: &'static str,
    pub bitrate_bps: f64,
    pub frame_rate: f64,
    /// Seconds between keyframes.
    pub gop_seconds: Option<f64>,
    /// Players of this leg by its own name (`{entryId}_{n}.p`).
    pub players: usize,
    /// `h264 / aac`.
    pub codecs: String,
    /// Where it comes from: the encoder's address, and the edge it came through.
    pub from: String,
}

/// The entries page: search, the list, and the form that creates one.
pub fn list_page(frame: &Frame, list: &EntryList, csrf: &str, note: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Entries" }
        (notice(note))
        form method="get" action="/console/entries" role="search" class="actions" {
            label for="q" { "Search by id or name" }
            input type="search" id="q" name="q" value=(list.query);
            button type="submit" { "Search" }
        }
        @if list.rows.is_empty() {
            p { @if list.total == 0 { "No entries yet: create one below." } @else { "No entry matches \u{201c}" (list.query) "\u{201d}." } }
        } @else {
            table role="table" {
                caption class="muted" {
                    @if list.rows.len() < list.matched {
                        "The first " (list.rows.len()) " of " (list.matched) " matching entries; search to narrow."
                    } @else {
                        (list.matched) " of " (list.total) " entries"
                    }
                }
                thead role="rowgroup" { tr role="row" { th scope="col" role="columnheader" { "Entry" } th scope="col" role="columnheader" { "Name" } th scope="col" role="columnheader" { "Created" } th scope="col" role="columnheader" { "Live here" } } }
                tbody role="rowgroup" {
                    @for row in &list.rows {
                        tr role="row" {
                            td role="cell" data-label="Entry" { a href={ "/console/entries/" (row.id) } { code { (row.id) } } }
                            td role="cell" data-label="Name" { (row.name) }
                            td role="cell" data-label="Created" { (date(row.created_at)) }
                            td role="cell" data-label="Live here" {
                                @if row.live_renditions > 0 { span class="on-air" { (row.live_renditions) " on air" } } @else { span class="muted" { "no" } }
                            }
                        }
                    }
                }
            }
        }
        h2 id="create" { "Create an entry" }
        form method="post" action="/console/entries" class="actions" {
            input type="hidden" name="csrf" value=(csrf);
            label for="name" { "Name" }
            input type="text" id="name" name="name" maxlength="256" placeholder="Sunday service";
            button type="submit" { "Create" }
        }
    };
    page(frame, Section::Entries, "Entries", body)
}

/// An entry's page.
pub fn entry_page(frame: &Frame, entry: &EntryView, reveal: bool, note: Option<&str>) -> Markup {
    // Tokens are `[a-z2-7]` (the registry's), so a URL holds one as it is, never
    // percent-encoded: replacing its text masks it.
    let shown = |url: &str| -> String {
        if reveal {
            url.to_owned()
        } else {
            url.replace(entry.token, MASK)
        }
    };
    let source = format!("/console/entries/{}/endpoints.json", entry.id);
    let e = entry.endpoints;
    let body = html! {
        h1 { (entry.name) " " span class="muted" { code { (entry.id) } } }
        (notice(note))
        p class="muted" { "Created " (date(entry.created_at)) ". Token generation " (entry.token_generation) "." }
        section aria-labelledby="endpoints" {
            h2 id="endpoints" { "RTMP endpoints" }
            p {
                "Give your encoder the primary URL and, for redundancy, the backup URL, with one stream name per bitrate. "
                @if reveal {
                    "Tokens are shown. " a href={ "/console/entries/" (entry.id) } { "Hide them" }
                } @else {
                    "Tokens are hidden (" (MASK) "); the copy buttons copy the whole URL. "
                    a href={ "/console/entries/" (entry.id) "?reveal=1" } { "Show tokens" }
                }
            }
            (leg_urls(&e.origins, "", &source, &shown))
            dl class="endpoints" {
                @for (n, name) in e.stream_names.iter().enumerate() {
                    dt { "Stream name " (n + 1) }
                    dd { code class="url" { (name) } (copy_text(name, &format!("stream name {}", n + 1))) }
                }
            }
            div class="actions" {
                a class="button" href={ "/console/entries/" (entry.id) "/fmle.xml" } download={ (entry.id) ".xml" } { "Export XML for FMLE" }
                a class="button" href={ "/console/entries/" (entry.id) "/regenerate" } { "Regenerate token" }
                a class="button" href={ "/console/entries/" (entry.id) "/delete" } { "Delete entry" }
            }
        }
        section aria-labelledby="live-heading" {
            h2 id="live-heading" { "Live at this origin" }
            div id="live" data-refresh={ "/console/entries/" (entry.id) "/live" } {
                (live_fragment(entry.live))
            }
        }
        @if !e.regions.is_empty() {
            section aria-labelledby="regions" {
                h2 id="regions" { "Regional endpoints" }
                p { "Encoders outside the US publish to the nearest region; its edges keep persistent tunnels to both data centres. Test which is best with the speed tests." }
                @for (i, region) in e.regions.iter().enumerate() {
                    details {
                        summary { h3 { (region.name) " " span class="muted" { "(" (region.region) ")" } } }
                        (leg_urls(&region.urls, &format!("regions.{i}."), &source, &shown))
                        @if !region.rtsp.is_empty() {
                            (rtsp_urls(&region.rtsp, &format!("regions.{i}.rtsp."), &source, &shown))
                        }
                        @if let Some(url) = &region.speed_test {
                            p { "Speed test: " a href=(url) { (url) } }
                        }
                    }
                }
            }
        }
        @if !e.rtsp.is_empty() {
            section aria-labelledby="rtsp" {
                h2 id="rtsp" { "RTSP endpoints" }
                p { "For devices that do not speak RTMP: each rendition has its own URL." }
                (rtsp_urls(&e.rtsp, "rtsp.", &source, &shown))
            }
        }
        @if !e.speed_tests.is_empty() {
            section aria-labelledby="speed" {
                h2 id="speed" { "Speed tests" }
                ul { @for t in &e.speed_tests { li { (t.name) ": " a href=(t.url) { (t.url) } } } }
            }
        }
    };
    page(frame, Section::Entries, entry.name, body)
}

/// The four URLs of `urls`, each with its copy button (`path` prefixes the JSON keys).
fn leg_urls(urls: &LegUrls, path: &str, source: &str, shown: &dyn Fn(&str) -> String) -> Markup {
    let rows = [
        ("Primary RTMP URL", "primary_rtmp", &urls.primary_rtmp),
        ("Backup RTMP URL", "backup_rtmp", &urls.backup_rtmp),
        ("Primary RTMPS URL", "primary_rtmps", &urls.primary_rtmps),
        ("Backup RTMPS URL", "backup_rtmps", &urls.backup_rtmps),
    ];
    html! {
        dl class="endpoints" {
            @for (label, key, url) in rows {
                dt { (label) }
                dd {
                    code class="url" data-url=(key) { (shown(url)) }
                    (copy_path(source, &format!("{path}{key}"), label))
                }
            }
        }
    }
}

/// Each rendition's RTSP URLs with copy buttons.
fn rtsp_urls(
    renditions: &[RtspRendition],
    path: &str,
    source: &str,
    shown: &dyn Fn(&str) -> String,
) -> Markup {
    html! {
        dl class="endpoints" {
            @for (i, r) in renditions.iter().enumerate() {
                @for (label, key, url) in [
                    ("Primary RTSP URL", "primary_rtsp", Some(&r.primary_rtsp)),
                    ("Backup RTSP URL", "backup_rtsp", Some(&r.backup_rtsp)),
                    ("Primary RTSPS URL", "primary_rtsps", r.primary_rtsps.as_ref()),
                    ("Backup RTSPS URL", "backup_rtsps", r.backup_rtsps.as_ref()),
                ] {
                    @if let Some(url) = url {
                        dt { (label) " " span class="muted" { (r.stream_name) } }
                        dd {
                            code class="url" { (shown(url)) }
                            (copy_path(source, &format!("{path}{i}.{key}"), &format!("{label} of {}", r.stream_name)))
                        }
                    }
                }
            }
        }
    }
}

/// A copy button for a value with a token: the script fetches it when clicked.
fn copy_path(source: &str, path: &str, what: &str) -> Markup {
    html! {
        button type="button" hidden data-copy-source=(source) data-copy-path=(path) aria-label={ "Copy " (what) } { "Copy" }
    }
}

/// A copy button for a value shown as it is.
fn copy_text(text: &str, what: &str) -> Markup {
    html! {
        button type="button" hidden data-copy-text=(text) aria-label={ "Copy " (what) } { "Copy" }
    }
}

/// The live renditions' table (the part of the entry page the script refreshes).
pub fn live_fragment(all: &Live) -> Markup {
    let live = &all.here;
    html! {
        @if live.is_empty() {
            p class="muted" { "Nothing is live for this entry here now." }
        } @else {
            table role="table" {
                thead role="rowgroup" { tr role="row" {
                    th scope="col" role="columnheader" { "Rendition" } th scope="col" role="columnheader" { "Leg" } th scope="col" role="columnheader" { "Bitrate" }
                    th scope="col" role="columnheader" { "fps" } th scope="col" role="columnheader" { "GOP" } th scope="col" role="columnheader" { "Viewers" }
                    th scope="col" role="columnheader" { "Codecs" } th scope="col" role="columnheader" { "From" }
                } }
                tbody role="rowgroup" {
                    @for r in live {
                        @for leg in &r.legs {
                            @let on_air = r.on_air == Some(leg.leg);
                            tr role="row" data-rendition=(r.name) data-leg=(leg.leg) data-on-air=(on_air) {
                                td role="cell" data-label="Rendition" { code { (r.name) } }
                                td role="cell" data-label="Leg" {
                                    (leg.leg)
                                    @if on_air { " " span class="on-air" { "on air" } }
                                }
                                td role="cell" data-label="Bitrate" { (bitrate(leg.bitrate_bps)) }
                                td role="cell" data-label="fps" { (format!("{:.1}", leg.frame_rate)) }
                                td role="cell" data-label="GOP" { @match leg.gop_seconds { Some(s) => (format!("{s:.1} s")), None => "-" } }
                                td role="cell" data-label="Viewers" { @if on_air { (r.players + leg.players) } @else { (leg.players) } }
                                td role="cell" data-label="Codecs" { (leg.codecs) }
                                td role="cell" data-label="From" { (leg.from) }
                            }
                        }
                    }
                }
            }
            @for r in live {
                @if let Some((switch, at)) = &r.last_switch {
                    p class="muted" { (r.name) ": last switch " (switch) ", " (date(*at)) "." }
                }
            }
        }
        @if !all.elsewhere.is_empty() {
            h3 { "Live at other origins" }
            ul {
                @for e in &all.elsewhere {
                    li data-elsewhere=(e.stream) { code { (e.stream) } " at " (e.origins.join(", ")) }
                }
            }
        }
    }
}

/// "Regenerate token": what it does to a live encoder, and the button that does it.
pub fn regenerate_page(
    frame: &Frame,
    id: &str,
    name: &str,
    generation: u32,
    live: usize,
    csrf: &str,
) -> Markup {
    let body = html! {
        h1 { "Regenerate the token of " (name) }
        div class="warning" role="alert" {
            p { strong { "Encoders using the current token will be refused from now on." } }
            p {
                @if live > 0 {
                    (live) " rendition(s) of this entry are live now: they will be cut at once, here, at the other data centre and at every edge. "
                } @else {
                    "Nothing of this entry is live here now; anything live elsewhere is cut too. "
                }
                "Update every encoder with the new URL before it publishes again."
            }
        }
        form method="post" action={ "/console/entries/" (id) "/regenerate" } class="actions" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="generation" value=(generation);
            button type="submit" class="danger" { "Regenerate token" }
            a class="button" href={ "/console/entries/" (id) } { "Cancel" }
        }
    };
    page(frame, Section::Entries, "Regenerate token", body)
}

/// "Delete entry": what it does, and the button that does it.
pub fn delete_page(frame: &Frame, id: &str, name: &str, live: usize, csrf: &str) -> Markup {
    let body = html! {
        h1 { "Delete " (name) }
        div class="warning" role="alert" {
            p { strong { "The entry and its token are deleted for good; its URLs stop working." } }
            @if live > 0 {
                p { (live) " rendition(s) of this entry are live now: they will be cut at once." }
            }
        }
        form method="post" action={ "/console/entries/" (id) "/delete" } class="actions" {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" class="danger" { "Delete entry" }
            a class="button" href={ "/console/entries/" (id) } { "Cancel" }
        }
    };
    page(frame, Section::Entries, "Delete entry", body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use longhaul_endpoint::{entry_endpoints, EndpointHosts, IngestAddress, LegHosts};

    fn frame() -> Frame<'static> {
        Frame {
            node: "nyc-1",
            region: "nyc",
            csrf: Some("csrf-1"),
            can_sign_out: true,
        }
    }

    fn endpoints(token: &str) -> Endpoints {
        let address = IngestAddress {
            host: "kpublish.example.com".into(),
            rtmp_port: 1935,
            rtmps_port: 443,
            rtsp_port: Some(554),
            rtsps_port: None,
        };
        let hosts = EndpointHosts::single("kLive", LegHosts::shared(address));
        entry_endpoints("1_gdrt137u", token, &hosts, 2)
    }

    #[test]
    fn the_entry_page_masks_tokens_unless_asked() {
        let endpoints = endpoints("b9106yth4tokenxx");
        let entry = EntryView {
            id: "1_gdrt137u",
            name: "Sunday <service>",
            created_at: 1_796_507_403,
            token: "b9106yth4tokenxx",
            token_generation: 2,
            endpoints: &endpoints,
            live: &Live::default(),
        };
        let masked = entry_page(&frame(), &entry, false, None).into_string();
        assert!(!masked.contains("b9106yth4tokenxx"), "{masked}");
        assert!(masked.contains(&format!("/kLive/?t={MASK}")));
        assert!(masked.contains("1_gdrt137u_1") && masked.contains("1_gdrt137u_2"));
        assert!(masked.contains("Export XML for FMLE"));
        assert!(masked.contains("Sunday &lt;service&gt;"));
        assert!(masked.contains("data-copy-path=\"primary_rtmp\""));
        let revealed = entry_page(&frame(), &entry, true, None).into_string();
        assert!(revealed.contains("/kLive/?t=b9106yth4tokenxx"));
    }

    #[test]
    fn confirmations_carry_the_csrf_token_and_say_what_happens() {
        let page = regenerate_page(&frame(), "1_gdrt137u", "x", 3, 1, "csrf-1").into_string();
        assert!(page.contains("name=\"csrf\" value=\"csrf-1\""));
        assert!(page.contains("name=\"generation\" value=\"3\""));
        assert!(page.contains("will be cut at once"));
        let page = delete_page(&frame(), "1_gdrt137u", "x", 0, "csrf-1").into_string();
        assert!(page.contains("name=\"csrf\" value=\"csrf-1\""));
    }

    #[test]
    fn the_live_table_names_the_leg_on_air() {
        let here = vec![LiveRendition {
            name: "1_gdrt137u_1".into(),
            on_air: Some("backup"),
            players: 3,
            legs: vec![LiveLeg {
                leg: "backup",
                bitrate_bps: 2_000_000.0,
                frame_rate: 30.0,
                gop_seconds: Some(2.0),
                players: 1,
                codecs: "h264 / aac".into(),
                from: "203.0.113.9 via fra-b".into(),
            }],
            last_switch: Some(("primary → backup (leg gone)".into(), 1_796_507_403)),
        }];
        let live = Live {
            here,
            elsewhere: vec![LiveElsewhere {
                stream: "1_gdrt137u_1".into(),
                origins: vec!["pao-1 (pao)".into()],
            }],
        };
        let html = live_fragment(&live).into_string();
        assert!(html.contains("data-on-air=\"true\""));
        assert!(html.contains("2.00 Mbit/s") && html.contains("30.0") && html.contains("2.0 s"));
        assert!(html.contains("<td role=\"cell\" data-label=\"Viewers\">4</td>"));
        assert!(html.contains("last switch primary → backup (leg gone)"));
        assert!(html.contains("<code>1_gdrt137u_1</code> at pao-1 (pao)"));
    }
}
