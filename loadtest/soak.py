#!/usr/bin/env python3
"""The soak: a local cluster under churn for a long time, its memory and bounds watched.

Starts a real cluster on loopback, a `longhaul origin` (nyc) and a `longhaul edge` (fra)
tunnelled to it, each its own process, and runs `longhaul-load soak` against it:
publishers coming and going through the edge with their players at the origin, players
joining and leaving streams, hostile clients at the edge (chunk-stream-id sprays, floods
of empty messages, half-open handshakes, wrong tokens), and every 10 s each node's RSS
and bound counters. See `longhaul-load soak --help` and loadtest/README.md.

    python3 loadtest/soak.py                       # 30 minutes, 300 publishers
    python3 loadtest/soak.py --length 1m --publishers 20
    python3 loadtest/soak.py -- --lurkers 50 --slowloris 200   # more longhaul-load soak options
    python3 loadtest/soak.py --report-only         # BENCHMARKS.md again from the saved results

Prints the generator's timeline and summary, writes the raw report to
loadtest/results/soak.json and the summary into BENCHMARKS.md (between the soak
markers). Needs no root: everything is on 127.0.0.1 (the hostile clients on 127.0.0.2-5).
Builds the release binaries first; stops the nodes however it ends.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import longhaul_bench as lb  # noqa: E402  (process plumbing, paths)

RESULTS_JSON = lb.RESULTS / "soak.json"
BEGIN_MARK = "<!-- soak:begin -->"
END_MARK = "<!-- soak:end -->"
SUFFIX = "tunnel.soak"
ORIGIN_ID = "nyc-soak"
EDGE_ID = "fra-soak"
# What each publisher sends: a modest rendition, so that a few hundred of them, their
# players, both nodes and the hostile clients fit on 2 shared cores with room to spare
# (the capacity benchmark saturated a core at about 800 streams of 600 kbit/s).
# BENCHMARKS.md shows the RSS timeline at this step (the JSON has every sample).
TIMELINE_STEP_S = 300
STREAM = ["--bitrate", "500k", "--audio-bitrate", "64k", "--fps", "25", "--gop", "2s"]


def pki_file(name, ext):
    """`longhaul pki` names files after the DNS name, other characters than letters, digits and - as _."""
    return "".join(c if c.isalnum() or c == "-" else "_" for c in name) + ext


def wait_ready(log_path, role, proc, timeout=30.0):
    """The JSON `{role} ready` line of a node's log (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{role} exited ({proc.returncode}); its log: {log_path}")
        for line in log_path.read_text(errors="replace").splitlines():
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if v.get("message") == f"{role} ready":
                return v
        time.sleep(0.1)
    raise RuntimeError(f"{role} not ready within {timeout:.0f} s; its log: {log_path}")


def origin_config(work, tls):
    return f"""
[node]
id = "{ORIGIN_ID}"
region = "nyc"
[ingest]
# Every honest client here comes from 127.0.0.1 (hostile ones from 127.0.0.2-5): the
# per-address cap (64 by default, tested in tests/proxy_protocol.rs) would refuse most
# of the soak's publishers and players, so it is raised out of the way.
max_connections_per_address = 5000
[rtmp]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[registry]
path = "{work / 'registry.db'}"
[tunnel]
listen = "127.0.0.1:0"
edge_name_suffix = "{SUFFIX}"
[tunnel.tls]
ca = "{tls / 'ca.pem'}"
cert = "{tls / pki_file(f'{ORIGIN_ID}.{SUFFIX}', '.pem')}"
key = "{tls / pki_file(f'{ORIGIN_ID}.{SUFFIX}', '.key')}"
"""


def edge_config(tls, tunnel_addr):
    return f"""
[node]
id = "{EDGE_ID}"
region = "fra"
[ingest]
# Every honest client here comes from 127.0.0.1 (hostile ones from 127.0.0.2-5): the
# per-address cap (64 by default, tested in tests/proxy_protocol.rs) would refuse most
# of the soak's publishers and players, so it is raised out of the way.
max_connections_per_address = 5000
[rtmp]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[tunnel]
primary = "{ORIGIN_ID}"
bind = "127.0.0.1:0"
origins = [{{ id = "{ORIGIN_ID}", region = "nyc", addr = "{tunnel_addr}", server_name = "{ORIGIN_ID}.{SUFFIX}" }}]
[tunnel.tls]
ca = "{tls / 'ca.pem'}"
cert = "{tls / pki_file(f'{EDGE_ID}.{SUFFIX}', '.pem')}"
key = "{tls / pki_file(f'{EDGE_ID}.{SUFFIX}', '.key')}"
"""


def start_node(procs, work, role, config_text):
    config = work / f"{role}.toml"
    config.write_text(config_text)
    proc = procs.start(role, [lb.RELEASE / "longhaul", "--log-format", "json", "--log", "info",
                              role, "-c", config])
    return proc, wait_ready(work / f"{role}.log", role, proc)


def kib_mb(kib):
    return "-" if kib is None else f"{kib / 1024:.1f} MB"


def markdown(report, meta):
    s = report["sessions"]
    st = report["settings"]
    lines = [
        f"Run on {meta['date']} on {meta['host']} ({meta['cores']} cores, shared with other work: the "
        f"machine was busy with builds and tests of other sessions throughout), `{meta['command']}`: "
        f"{st['load']['publishers_per_region']} publishers through the edge in sessions of "
        f"{st['load']['duration']:g} s of media ({st['load']['video_bps'] // 1000} kbit/s video + "
        f"{st['load']['audio_bps'] // 1000} kbit/s AAC) about {st['gap']:g} s apart, each with its player at "
        f"the origin; {st['lurkers']} lurking players; hostile: {st['hostile']['sprayers']} sprayers, "
        f"{st['hostile']['flooders']} flooders, {st['hostile']['slowloris']} slowloris, "
        f"{st['hostile']['bad_tokens']} bad tokens; {report['load_secs'] / 60:.1f} min of load, then "
        f"{st['settle']:g} s settling.",
        "",
        "| node | RSS before | peak (sampled every "
        f"{st['sample']:g} s) | peak (VmHWM) | when the load stopped | after settling |",
        "|---|---|---|---|---|---|",
    ]
    for n in report["nodes"]:
        lines.append(f"| {n['name']} | {kib_mb(n['rss_start_kib'])} | {kib_mb(n['rss_peak_kib'])} | "
                     f"{kib_mb(n['hwm_end_kib'])} | {kib_mb(n['rss_load_stop_kib'])} | {kib_mb(n['rss_end_kib'])} |")
    lines += [
        "",
        f"Sessions: {s['sessions']:,} ({s['failed']:,} failed, {s['failed_before_media']:,} of them before their "
        f"media); in the sessions whose media started, frames offered {s['frames_offered']:,}, received "
        f"{s['frames_received']:,}, lost {s['frames_lost']:,}, duplicated {s['frames_duplicated']}, held back "
        f"unsent {s['frames_unsent']}, later than 1 s {s['frames_late']:,}, stalls {s['stalls']}.",
        "",
        "| hostile | attempts | stopped by the node | held back | not stopped | failed | longest to stop |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, t in report["hostile"].items():
        lines.append(f"| {kind} | {t['attempts']:,} | {t['stopped']:,} | {t['held']:,} | {t['not_stopped']:,} | "
                     f"{t['failed']:,} | {t['longest_ms']:,} ms |")
    lines += ["", "Bounds hit (growth of each counter over the soak):", ""]
    for n in report["nodes"]:
        for series, grew in n["bounds"].items():
            lines.append(f"- {n['name']}: `{series}` +{grew:g}")
        if n.get("unchanged"):
            lines.append(f"- {n['name']}: did not grow: " + ", ".join(f"`{f}`" for f in n["unchanged"]))
        for series, v in n["open_at_end"].items():
            lines.append(f"- {n['name']}: still open at the end: `{series}` {v:g}")
    lines += ["", "RSS over time (every sample is in loadtest/results/soak.json):", "",
              "| t | " + " | ".join(n["name"] for n in report["nodes"]) + " | sessions done | frames lost |",
              "|---|" + "---|" * (len(report["nodes"]) + 2)]
    shown = -1e9
    for tick in report["timeline"]:
        if tick["t"] - shown >= TIMELINE_STEP_S or tick["phase"] in ("stop", "end"):
            shown = tick["t"]
            rss = " | ".join(kib_mb(k) for k in tick["rss_kib"])
            lines.append(f"| {tick['t']:.0f} s {tick['phase']} | {rss} | {tick['sessions_done']:,} | "
                         f"{tick['frames_lost']:,} |")
    return "\n".join(lines)


def write_benchmarks_md(report, meta):
    body = f"{BEGIN_MARK}\n{markdown(report, meta)}\n{END_MARK}"
    text = lb.BENCHMARKS_MD.read_text()
    if BEGIN_MARK in text and END_MARK in text:
        text = text.split(BEGIN_MARK)[0] + body + text.split(END_MARK, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Soak (loadtest/soak.py)\n\n" + body + "\n"
    lb.BENCHMARKS_MD.write_text(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--length", default="30m", help="how long the load runs (longhaul-load's units: 30m, 90s)")
    ap.add_argument("--publishers", type=int, default=300, help="publishers at any time")
    ap.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    ap.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md and loadtest/results alone")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite BENCHMARKS.md's soak section from loadtest/results/soak.json, run nothing")
    ap.add_argument("extra", nargs="*", help="more `longhaul-load soak` options, after --")
    args = ap.parse_args()
    if args.report_only:
        saved = json.loads(RESULTS_JSON.read_text())
        write_benchmarks_md(saved["report"], saved["meta"])
        return
    if not args.no_build:
        lb.run(["cargo", "build", "--release", "--locked", "-p", "longhaul", "-p", "longhaul-load"],
               timeout=3600, cwd=lb.ROOT)
    # Hundreds of sockets per node and twice that in the generator: lift the soft limit
    # for this script and its children.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = Path(tempfile.mkdtemp(prefix="longhaul-soak-"))
    lb.log(f"work directory (configs, node logs): {work}")
    procs = lb.Processes(work)
    tls = work / "tls"
    lb.run([lb.RELEASE / "longhaul", "pki", "--dir", tls, "--origin", f"{ORIGIN_ID}.{SUFFIX}", "--edge", f"{EDGE_ID}.{SUFFIX}"], quiet=True)
    json_path = work / "soak.json"
    try:
        origin, o = start_node(procs, work, "origin", origin_config(work, tls))
        edge, e = start_node(procs, work, "edge", edge_config(tls, o["tunnel"]))
        cmd = [
            lb.RELEASE / "longhaul-load", "soak",
            "--region", f"fra=rtmp://{e['rtmp']}/kLive",
            "--play", f"rtmp://{o['rtmp']}/kLive",
            "--api", f"http://{o['http']}",
            "--node", f"origin={origin.pid},http://{o['http']}",
            "--node", f"edge={edge.pid},http://{e['http']}",
            "--publishers", str(args.publishers),
            "--length", args.length,
            "--ramp", "20/s",
            *STREAM,
            "--json", json_path,
            "--quiet",
            *args.extra,
        ]
        lb.log("+", " ".join(str(c) for c in cmd))
        lb.run(cmd, timeout=24 * 3600, quiet=False)
    finally:
        procs.stop_all()
    report = json.loads(json_path.read_text())
    meta = {
        "date": datetime.date.today().isoformat(), "host": platform.node(), "cores": os.cpu_count(),
        "command": " ".join(["python3 loadtest/soak.py"] + sys.argv[1:]),
    }
    if not args.no_write:
        lb.RESULTS.mkdir(parents=True, exist_ok=True)
        RESULTS_JSON.write_text(json.dumps({"meta": meta, "report": report}, indent=1))
        write_benchmarks_md(report, meta)
        lb.log(f"wrote {RESULTS_JSON} and the soak section of {lb.BENCHMARKS_MD}")


if __name__ == "__main__":
    main()
