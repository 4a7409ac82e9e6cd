#!/usr/bin/env python3
"""The long-haul benchmark: one encoder far from its origin, three ways to get its stream there.

Three network namespaces stand for three hosts: an encoder (`lhb-enc`), an edge near it
(`lhb-edge`) and an origin far away (`lhb-origin`). `longhaul-wan` links them through TUN
devices: encoder-edge is short (2 ms each way), edge-origin and encoder-origin are long
(half the RTT each way, the same random loss in both directions, a rate cap with a
bounded queue). An unimpaired veth pair joins encoder and origin for what is not being
measured: the players, which sit "at the origin", and the entries API.

For every (RTT, loss) setting the same 6 Mbit/s stream from `longhaul-load` takes each path
in turn, in one run:

  direct-cubic      the encoder publishes straight to the origin over RTMP/TCP, CUBIC (what
                    encoders in the field run: Windows, macOS and Linux default to it)
  direct-bbr        the same with BBR: a best case for TCP
  nginx-bbr         nginx-rtmp as the edge (Debian's libnginx-mod-rtmp), pushing to the
                    origin over TCP with BBR, which an operator running a long-haul relay picks
  longhaul-{cc}     the longhaul edge over its QUIC tunnel, with each congestion controller
  longhaul-bbr-unheld  the same with quinn's BBR as it is: its window is not kept through
                    ProbeRTT (crates/tunnel/src/probe_rtt_hold.rs)

and the generator's figures are kept: share of the offered bitrate delivered, frames within
1 s and 3 s, latency p50/p99, publish setup time, stalls. At the end the script prints the
table, writes it into BENCHMARKS.md (between the longhaul-bench markers), and writes the raw
results (loadtest/results/longhaul-bench.json) and the plot (loadtest/results/longhaul-bench.png).

    sudo python3 loadtest/longhaul_bench.py               # the whole matrix (about 40 min)
    sudo python3 loadtest/longhaul_bench.py --quick       # 230 ms only, 1 % and 2 % loss
    sudo python3 loadtest/longhaul_bench.py --goal        # the goal cell (230 ms, 1 %), 3 runs of 60 s
    python3 loadtest/longhaul_bench.py --plot-only        # table and plot from saved results

It needs root (namespaces, TUN devices, sysctl), builds the release binaries, installs
nginx's RTMP module and matplotlib (in a venv under target/) when missing, and removes its
namespaces and processes when it ends, however it ends. Every wait is bounded.
"""

import argparse
import contextlib
import datetime
import http.server
import json
import os
import platform
import shutil
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
RESULTS = ROOT / "loadtest" / "results"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
# A run's tag names its results (loadtest/results/{tag}.json, .png) and its section of
# BENCHMARKS.md (between <!-- {tag}:begin --> and <!-- {tag}:end -->): the matrix is
# "longhaul-bench", the goal check (--goal) "longhaul-goal".
MATRIX_TAG = "longhaul-bench"
GOAL_TAG = "longhaul-goal"

ENC, EDGE, ORIGIN = "lhb-enc", "lhb-edge", "lhb-origin"
# Addresses: 10.77.{link}.{1,2} on the emulated point-to-point links, 10.99.0.0/24 on the
# veth pair that carries what is not measured (players, API).
ENC_EDGE = ("10.77.1.1", "10.77.1.2")
EDGE_ORIGIN = ("10.77.2.1", "10.77.2.2")
ENC_ORIGIN = ("10.77.3.1", "10.77.3.2")
MEASURE = ("10.99.0.1", "10.99.0.2")

RTMP_PORT = 1935
NGINX_PORT = 1937
ORIGIN_HTTP = 8081
EDGE_HTTP = 8083
TUNNEL_PORT = 4433
HOOK_PORT = 18090
TUNNEL_SUFFIX = "tunnel.bench"
# The API serves only loopback clients without a token; the generator reaches it over the veth.
API_TOKEN = "longhaul-bench-api-token"

# The short link: an encoder in the same metro as its edge (1-5 ms asked; 4 ms RTT).
SHORT_LINK = "delay=2ms,jitter=0.5ms,rate=200mbit,queue=50ms"
# The long links' cap: a 6 Mbit/s stream uses an eighth of it, so the cap bounds bursts
# (BBR's probing, TCP slow start) without making the stream itself congest the path. The
# queue holds 50 ms at the cap (about 300 KB), a common router buffer for such a link.
LONG_RATE = "50mbit"
LONG_QUEUE = "50ms"
# A little jitter on the long links, as real paths have; the emulator never reorders.
LONG_JITTER = "1ms"

STREAM = {"bitrate": "6000k", "fps": 25, "gop": "2s", "audio_bitrate": "128k"}

PATHS = [
    {"name": "direct-cubic", "kind": "direct", "tcp": "cubic"},
    {"name": "direct-bbr", "kind": "direct", "tcp": "bbr"},
    {"name": "nginx-bbr", "kind": "nginx", "tcp": "bbr"},
    {"name": "longhaul-bbr", "kind": "longhaul", "quic": "bbr"},
    # quinn's BBR as it is, without the window kept through ProbeRTT
    # (crates/tunnel/src/probe_rtt_hold.rs): the goal check runs both, alternately.
    {"name": "longhaul-bbr-unheld", "kind": "longhaul", "quic": "bbr",
     "transport": ["hold_window_in_probe_rtt = false"]},
    {"name": "longhaul-cubic", "kind": "longhaul", "quic": "cubic"},
    {"name": "longhaul-newreno", "kind": "longhaul", "quic": "newreno"},
]

# The goal the tunnel is held to (the long-haul issue): at 230 ms RTT and 1 % loss, at
# least 99.9 % of frames within 1 s and p99 latency within 2 x RTT.
GOAL_WITHIN_1S = 0.999
GOAL_P99_RTTS = 2.0


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def run(cmd, check=True, quiet=False, timeout=60, **kw):
    """Runs a command to completion (bounded), returning its CompletedProcess."""
    if not quiet:
        log("+", " ".join(str(c) for c in cmd))
    return subprocess.run(
        [str(c) for c in cmd], check=check, timeout=timeout, text=True,
        stdout=subprocess.PIPE if quiet else None, stderr=subprocess.PIPE if quiet else None, **kw
    )


def in_ns(ns, cmd):
    return ["ip", "netns", "exec", ns] + [str(c) for c in cmd]


# --------------------------------------------------------------------------------------
# Processes and namespaces


class Processes:
    """Every process the benchmark starts, stopped (TERM, then KILL) however it ends."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.procs = []

    def start(self, name, cmd, stdout=None):
        log_file = open(self.logs / f"{name}.log", "ab")
        p = subprocess.Popen(
            [str(c) for c in cmd],
            stdout=stdout if stdout is not None else log_file,
            stderr=log_file,
            start_new_session=True,
        )
        self.procs.append((name, p))
        return p

    def stop(self, proc, grace=5.0):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.procs = [(n, p) for (n, p) in self.procs if p is not proc]

    def stop_all(self):
        for _, p in list(reversed(self.procs)):
            self.stop(p)


def make_namespaces():
    delete_namespaces()
    for ns in (ENC, EDGE, ORIGIN):
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "link", "add", "lhb-m0", "type", "veth", "peer", "name", "lhb-m1"])
    run(["ip", "link", "set", "lhb-m0", "netns", ENC])
    run(["ip", "link", "set", "lhb-m1", "netns", ORIGIN])
    run(["ip", "-n", ENC, "addr", "add", f"{MEASURE[0]}/24", "dev", "lhb-m0"])
    run(["ip", "-n", ORIGIN, "addr", "add", f"{MEASURE[1]}/24", "dev", "lhb-m1"])
    run(["ip", "-n", ENC, "link", "set", "lhb-m0", "up"])
    run(["ip", "-n", ORIGIN, "link", "set", "lhb-m1", "up"])


def delete_namespaces():
    for ns in (ENC, EDGE, ORIGIN):
        run(["ip", "netns", "delete", ns], check=False, quiet=True)


def set_tcp(ns, cc):
    run(in_ns(ns, ["sysctl", "-q", "-w", f"net.ipv4.tcp_congestion_control={cc}"]))


def allow_cubic():
    """CUBIC must be allowed in the root namespace before a namespace may pick it."""
    allowed = Path("/proc/sys/net/ipv4/tcp_allowed_congestion_control").read_text().split()
    if "cubic" not in allowed:
        run(["sysctl", "-q", "-w", "net.ipv4.tcp_allowed_congestion_control=" + " ".join(allowed + ["cubic"])])


def wait_line(proc, want, timeout):
    """Waits (bounded) for a line containing `want` on proc's stdout."""
    found = threading.Event()

    def reader():
        for line in proc.stdout:
            if want in line.decode(errors="replace"):
                found.set()
                break

    threading.Thread(target=reader, daemon=True).start()
    if not found.wait(timeout):
        raise RuntimeError(f"no {want!r} from pid {proc.pid} within {timeout} s")


def start_link(procs, name, a, b, spec):
    """One emulated link between a=(ns, dev, addr) and b, impaired by `spec` both ways."""
    cmd = [
        RELEASE / "longhaul-wan",
        "--a-netns", a[0], "--a-dev", a[1], "--a-addr", a[2],
        "--b-netns", b[0], "--b-dev", b[1], "--b-addr", b[2],
        "--both", spec, "--stats-json", procs.logs / f"{name}.stats.json",
    ]
    p = procs.start(name, cmd, stdout=subprocess.PIPE)
    wait_line(p, "ready", 20)
    return p


def long_spec(rtt_ms, loss_pct):
    spec = f"delay={rtt_ms / 2:g}ms,jitter={LONG_JITTER},rate={LONG_RATE},queue={LONG_QUEUE}"
    if loss_pct > 0:
        spec += f",loss={loss_pct:g}%"
    return spec


# --------------------------------------------------------------------------------------
# Nodes


def origin_config(work: Path, tls: Path, rtmp_listen=f"0.0.0.0:{RTMP_PORT}", max_connections=10_000):
    return f"""
[node]
id = "nyc-1"
region = "nyc"
[rtmp]
listen = "{rtmp_listen}"
[ingest]
max_connections = {max_connections}
# Every simulated encoder comes from the one address of its namespace.
max_connections_per_address = {max_connections}
[http]
listen = "0.0.0.0:{ORIGIN_HTTP}"
api_token = "{API_TOKEN}"
[registry]
path = "{work / 'registry.db'}"
[tunnel]
listen = "0.0.0.0:{TUNNEL_PORT}"
edge_name_suffix = "{TUNNEL_SUFFIX}"
[tunnel.tls]
ca = "{tls / 'ca.pem'}"
cert = "{tls / 'nyc-1_tunnel_bench.pem'}"
key = "{tls / 'nyc-1_tunnel_bench.key'}"
"""


def edge_config(tls: Path, cc: str, rtt_ms: int, transport=(), rtmp_listen=f"0.0.0.0:{RTMP_PORT}",
                origin_addr=EDGE_ORIGIN[1], max_connections=10_000):
    return f"""
[node]
id = "sin-1"
region = "sin"
[rtmp]
listen = "{rtmp_listen}"
[ingest]
max_connections = {max_connections}
# Every simulated encoder comes from the one address of its namespace.
max_connections_per_address = {max_connections}
[http]
listen = "0.0.0.0:{EDGE_HTTP}"
[tunnel]
primary = "nyc-1"
bind = "0.0.0.0:0"
origins = [{{ id = "nyc-1", region = "nyc", addr = "{origin_addr}:{TUNNEL_PORT}", server_name = "nyc-1.{TUNNEL_SUFFIX}" }}]
[tunnel.tls]
ca = "{tls / 'ca.pem'}"
cert = "{tls / 'sin-1_tunnel_bench.pem'}"
key = "{tls / 'sin-1_tunnel_bench.key'}"
[tunnel.transport]
congestion = "{cc}"
# As a site file sets it: the path's RTT.
initial_rtt_ms = {rtt_ms}
""" + "".join(f"{kv}\n" for kv in transport)


NGINX_CONF = """
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
master_process off;
worker_processes 1;
error_log {work}/nginx-error.log warn;
pid {work}/nginx.pid;
events {{ worker_connections 8192; }}
rtmp {{
  server {{
    listen 0.0.0.0:{port};
    application kLive {{
      live on;
      # The token travels in the stream name (OBS style); the hook answers with a redirect
      # to the origin that keeps it, and nginx-rtmp pushes there.
      on_publish http://127.0.0.1:{hook}/publish;
    }}
  }}
}}
"""


class PushHook(http.server.BaseHTTPRequestHandler):
    """nginx-rtmp's on_publish callback: 302 to the origin with the same name and token."""

    origin = ""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
        q = urllib.parse.parse_qs(body)
        name = q.get("name", [""])[0]
        token = q.get("t", [""])[0]
        self.send_response(302)
        self.send_header("Location", f"{self.origin}/{name}?t={token}")
        self.end_headers()

    def log_message(self, *args):
        pass


def serve_hook(port, origin):
    PushHook.origin = origin
    http.server.HTTPServer(("127.0.0.1", port), PushHook).serve_forever()


def wait_http(ns, url, timeout, want_status=200):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = run(in_ns(ns, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "2", url]),
                check=False, quiet=True)
        if r.stdout.strip() == str(want_status):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{url} in {ns} did not answer {want_status} within {timeout} s")


# --------------------------------------------------------------------------------------
# One measurement


def load_cmd(path, out: Path, duration_s, seed, extra=()):
    if path["kind"] == "direct":
        target = f"rtmp://{ENC_ORIGIN[1]}:{RTMP_PORT}/kLive"
    elif path["kind"] == "nginx":
        target = f"rtmp://{ENC_EDGE[1]}:{NGINX_PORT}/kLive"
    else:
        target = f"rtmp://{ENC_EDGE[1]}:{RTMP_PORT}/kLive"
    cmd = [
        RELEASE / "longhaul-load",
        "--region", f"sin={target}",
        "--play", f"rtmp://{MEASURE[1]}:{RTMP_PORT}/kLive",
        "--api", f"http://{MEASURE[1]}:{ORIGIN_HTTP}", "--api-token", API_TOKEN,
        "--publishers", "1",
        "--bitrate", STREAM["bitrate"], "--fps", STREAM["fps"], "--gop", STREAM["gop"],
        "--audio-bitrate", STREAM["audio_bitrate"],
        "--duration", f"{duration_s}s", "--drain", "5s",
        "--seed", seed, "--json", out, "--quiet",
    ]
    if path["kind"] == "nginx":
        cmd += ["--token-in", "name"]
    # An experiment's options replace the defaults of the same name (clap takes each once).
    extra = list(extra)
    given = {a.split("=", 1)[0] for a in extra if a.startswith("--")}
    kept, skip = [], False
    for a in cmd:
        if skip:
            skip = False
            continue
        if isinstance(a, str) and a in given:
            skip = a not in ("--quiet",)
            continue
        kept.append(a)
    return kept + extra


def measure(procs, work, tls, path, rtt, loss, duration_s, seed, transport=(), load_args=()):
    edge = None
    # The encoder runs CUBIC, as in the field, unless the direct path's variant says
    # otherwise; nginx's namespace runs the TCP its path names.
    set_tcp(ENC, path["tcp"] if path["kind"] == "direct" else "cubic")
    set_tcp(EDGE, path.get("tcp", "bbr"))
    if path["kind"] == "longhaul":
        conf = work / f"edge-{path['quic']}.toml"
        conf.write_text(edge_config(tls, path["quic"], rtt, list(path.get("transport", [])) + list(transport)))
        edge = procs.start(f"edge-{path['name']}", in_ns(EDGE, [RELEASE / "longhaul", "edge", "-c", conf]))
        try:
            wait_http(EDGE, f"http://127.0.0.1:{EDGE_HTTP}/healthz", 30)
        except RuntimeError:
            # Never leave it holding the ports for the next path's edge.
            procs.stop(edge)
            raise
    out = work / f"load-{rtt}-{loss:g}-{path['name']}.json"
    try:
        r = run(in_ns(ENC, load_cmd(path, out, duration_s, seed, load_args)), timeout=duration_s + 120, quiet=True,
                check=False)
        if r.returncode != 0:
            # A cell that could not run is reported as such; the matrix goes on.
            msg = (r.stderr.strip().splitlines() or ["no output"])[-1]
            log(f"    {path['name']}: longhaul-load failed: {msg}")
            return {"total": {}, "error": msg}
        return json.loads(out.read_text())
    finally:
        if edge is not None:
            procs.stop(edge)


# --------------------------------------------------------------------------------------
# Report


def fmt_ms(v):
    if v is None:
        return "n/d"
    return f"{v:,.0f}"


def goal_met(row):
    """The goal, on every frame the encoder produced: a stream that failed, or frames lost
    (p99 "n/d"), miss it."""
    t = row["total"]
    p99 = (t.get("latency_ms") or {}).get("p99")
    return (not row.get("error") and t.get("publishers_failed", 1) == 0
            and (t.get("within_1s_share") or 0) >= GOAL_WITHIN_1S
            and p99 is not None and p99 <= GOAL_P99_RTTS * row["rtt_ms"])


def table(rows):
    head = ("| RTT | loss | path | run | delivered | ≤1 s | ≤3 s | p50 ms | p99 ms | video p99 ms "
            "| to Publish.Start ms | stalls (s) | 2×RTT goal |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        t = r["total"]
        lat = t.get("latency_ms") or {}
        setup = (t.get("publish_setup_ms") or {}).get("p50")
        failed = t.get("publishers_failed", 0)
        path = r["path"] + (" (stream failed)" if failed or r.get("error") else "")
        video_p99 = (t.get("video_latency_ms") or {}).get("p99")
        lines.append(
            f"| {r['rtt_ms']} ms | {r['loss_pct']:g} % | {path} | {r.get('run', 1)} | {100 * (t.get('delivered_share') or 0):.1f} % "
            f"| {100 * (t.get('within_1s_share') or 0):.2f} % | {100 * (t.get('within_3s_share') or 0):.2f} % "
            f"| {fmt_ms(lat.get('p50'))} | {fmt_ms(lat.get('p99'))} | {fmt_ms(video_p99)} | {fmt_ms(setup)} "
            f"| {t.get('stalls', 0)} ({(t.get('stall_ms') or 0) / 1000:.1f}) | {'met' if goal_met(r) else 'missed'} |"
        )
    return head + "\n".join(lines) + "\n"


def write_benchmarks_md(results):
    meta = results["meta"]
    tag = meta["tag"]
    begin, end = f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"
    picture = (f"\n![delivered share and p99 latency against loss](loadtest/results/{tag}.png)\n"
               if has_plot(results) else "")
    body = (
        f"{begin}\n"
        f"Run on {meta['date']} on {meta['host']} ({meta['cores']} cores), `{meta['command']}`, "
        f"{meta['duration_s']} s of stream per cell. Stream: {STREAM['bitrate']}bit/s video at "
        f"{STREAM['fps']} fps, a keyframe every {STREAM['gop']}, {STREAM['audio_bitrate']}bit/s AAC. "
        f"Long links: half the RTT each way, {LONG_JITTER} jitter, the loss in both directions, "
        f"{LONG_RATE}/s cap with a {LONG_QUEUE} queue. Short link: `{SHORT_LINK}`. "
        f"Goal: ≥ {100 * GOAL_WITHIN_1S:g} % of frames within 1 s and p99 ≤ {GOAL_P99_RTTS:g} × RTT, "
        f"over every frame the encoder produced (a lost frame is infinitely late: p99 \"n/d\").\n\n"
        + table(results["rows"]) + picture + end
    )
    write_section(tag, f"{tag} (loadtest/longhaul_bench.py)", body)


def write_section(tag, heading, body):
    """Puts `body` (which starts with `<!-- {tag}:begin -->` and ends with its end marker)
    in BENCHMARKS.md in place of the section between those markers, or at the end under
    `## {heading}` the first time. Every benchmark script writes its table this way."""
    begin, end = f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"
    text = BENCHMARKS_MD.read_text()
    if begin in text and end in text:
        text = text.split(begin)[0] + body + text.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n" + body + "\n"
    BENCHMARKS_MD.write_text(text)


def has_plot(results):
    """A plot against loss needs more than one loss setting."""
    return len({r["loss_pct"] for r in results["rows"]}) > 1


def plot(results, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    rows = results["rows"]
    rtts = sorted({r["rtt_ms"] for r in rows})
    paths = [p["name"] for p in PATHS if any(r["path"] == p["name"] for r in rows)]
    # A p99 that was never delivered (over 1 % of frames lost) is drawn at the top, as x.
    ceiling_ms = 30_000
    fig, axes = plt.subplots(2, len(rtts), figsize=(4 * len(rtts), 7.5), squeeze=False, sharex=True)
    for col, rtt in enumerate(rtts):
        for k, path in enumerate(paths):
            cells = sorted((r for r in rows if r["rtt_ms"] == rtt and r["path"] == path and r.get("run", 1) == 1),
                           key=lambda r: r["loss_pct"])
            if not cells:
                continue
            color = f"C{k}"
            style = "-o" if path.startswith("longhaul") else "--s"
            x = [r["loss_pct"] for r in cells]
            share = [100 * (r["total"].get("delivered_share") or 0) for r in cells]
            p99 = [(r["total"].get("latency_ms") or {}).get("p99") for r in cells]
            axes[0][col].plot(x, share, style, color=color, label=path, markersize=4)
            axes[1][col].plot(x, [v if v is not None else float("nan") for v in p99], style, color=color,
                              markersize=4)
            lost = [(xi, ceiling_ms) for xi, v in zip(x, p99) if v is None]
            if lost:
                axes[1][col].plot(*zip(*lost), "x", color=color, markersize=9, mew=2)
        axes[0][col].set_title(f"RTT {rtt} ms")
        axes[0][col].set_ylim(0, 105)
        ax = axes[1][col]
        ax.set_yscale("log")
        ax.set_ylim(50, ceiling_ms * 1.5)
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.axhline(2 * rtt, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xlabel("random loss each way (%)")
    axes[0][0].set_ylabel("offered bitrate delivered (%)")
    axes[1][0].set_ylabel("p99 latency, ms (dotted: 2 x RTT; x: not delivered)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    meta = results["meta"]
    fig.suptitle(f"One 6 Mbit/s stream from an encoder to a far origin: direct TCP, nginx-rtmp edge, "
                 f"longhaul edge ({meta['date']})")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(out, dpi=110)


def venv_python():
    venv = ROOT / "target" / "bench-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        run([sys.executable, "-m", "venv", venv], timeout=120)
    if run([py, "-c", "import matplotlib"], check=False, quiet=True).returncode != 0:
        run([py, "-m", "pip", "install", "-q", "matplotlib"], timeout=600)
    return py


def report(results):
    tag = results["meta"]["tag"]
    print(table(results["rows"]))
    write_benchmarks_md(results)
    if has_plot(results):
        py = venv_python()
        run([py, __file__, "--plot-to", RESULTS / f"{tag}.png", "--results", RESULTS / f"{tag}.json"], timeout=300)
    log(f"wrote loadtest/results/{tag}.* and the table in {BENCHMARKS_MD}")


# --------------------------------------------------------------------------------------
# Main


def ensure_tools(build=True):
    missing = [p for p in ("/usr/lib/nginx/modules/ngx_rtmp_module.so",) if not Path(p).exists()]
    if missing or not shutil.which("nginx") or not shutil.which("curl"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "install", "-y", "-q", "libnginx-mod-rtmp", "curl"], timeout=600, env=env)
    if build:
        run(["cargo", "build", "--release", "--locked", "-p", "longhaul", "-p", "longhaul-wan", "-p", "longhaul-load"],
            timeout=1800, cwd=ROOT)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rtts", default="80,160,230,300", help="RTTs of the long links, ms")
    ap.add_argument("--losses", default="0,0.5,1,2", help="random loss on the long links, %% each way")
    ap.add_argument("--paths", default=",".join(p["name"] for p in PATHS), help="paths to measure")
    ap.add_argument("--duration", type=int, default=20, help="seconds of stream per cell")
    ap.add_argument("--quick", action="store_true", help="230 ms at 1 and 2 %% loss only")
    ap.add_argument("--goal", action="store_true",
                    help="the goal check: 230 ms, 1 %% loss, longhaul-bbr beside the direct and nginx paths, "
                         "3 runs of 60 s each (its own section of BENCHMARKS.md)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per path and cell")
    ap.add_argument("--transport", action="append", default=[], metavar="KEY=VALUE",
                    help="a [tunnel.transport] setting for the edge, for tuning runs (repeatable)")
    ap.add_argument("--load-args", default="", metavar="ARGS",
                    help="extra longhaul-load options for experiments, e.g. \"--publishers 2 --ramp 0.2/s\"")
    ap.add_argument("--scratch", action="store_true",
                    help="print the table only; leave BENCHMARKS.md and loadtest/results alone (tuning runs)")
    ap.add_argument("--plot-only", action="store_true", help="table and plot from the saved results")
    ap.add_argument("--plot-to", help=argparse.SUPPRESS)
    ap.add_argument("--results", help=argparse.SUPPRESS)
    ap.add_argument("--hook", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.hook:  # internal: nginx's on_publish hook, run inside the edge namespace
        port, origin = args.hook.split(",", 1)
        serve_hook(int(port), origin)
        return
    if args.plot_to:  # internal: the plot, run with the venv's Python
        plot(json.loads(Path(args.results).read_text()), Path(args.plot_to))
        return
    tag = GOAL_TAG if args.goal else MATRIX_TAG
    full_matrix = (args.rtts, args.losses, args.paths) == (ap.get_default("rtts"), ap.get_default("losses"),
                                                           ap.get_default("paths"))
    if not args.goal and not args.plot_only and (args.quick or not full_matrix or args.transport or args.load_args):
        # Only the whole matrix, as shipped, replaces its section and results.
        args.scratch = True
    if args.plot_only:
        report(json.loads((RESULTS / f"{tag}.json").read_text()))
        return
    if os.geteuid() != 0:
        sys.exit("longhaul_bench: needs root (network namespaces, TUN devices, sysctl)")

    rtts = [int(x) for x in args.rtts.split(",")]
    losses = [float(x) for x in args.losses.split(",")]
    if args.quick:
        rtts, losses = [230], [1.0, 2.0]
    wanted = args.paths.split(",")
    if args.goal:
        rtts, losses = [230], [1.0]
        if args.paths == ap.get_default("paths"):
            wanted = ["direct-cubic", "direct-bbr", "nginx-bbr", "longhaul-bbr", "longhaul-bbr-unheld"]
        args.repeat, args.duration = 3, 60
    paths = [p for p in PATHS if p["name"] in wanted]
    if len(paths) != len(wanted):
        sys.exit(f"longhaul_bench: unknown path in {wanted}; known: {[p['name'] for p in PATHS]}")

    ensure_tools()
    allow_cubic()
    if not args.scratch:
        RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="longhaul-bench-"))
    log(f"work directory (logs, configs): {work}")
    procs = Processes(work)
    tls = work / "tls"
    run([RELEASE / "longhaul", "pki", "--dir", tls, "--origin", f"nyc-1.{TUNNEL_SUFFIX}", "--edge", f"sin-1.{TUNNEL_SUFFIX}"], quiet=True)
    started = time.monotonic()
    rows = []
    command = " ".join(["sudo python3 loadtest/longhaul_bench.py"] + sys.argv[1:])

    def results():
        return {
            "meta": {
                "tag": tag,
                "date": datetime.date.today().isoformat(),
                "host": platform.node(),
                "cores": os.cpu_count(),
                "command": command,
                "duration_s": args.duration,
                "elapsed_s": round(time.monotonic() - started),
                "stream": STREAM,
                "short_link": SHORT_LINK,
                "long_link": long_spec(0, 0),
                "transport": args.transport,
                "load_args": args.load_args,
            },
            "rows": rows,
        }

    # Written as a partial file while the run goes on; renamed when it completes.
    out = (work if args.scratch else RESULTS) / f"{tag}.partial.json"

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        make_namespaces()
        (work / "origin.toml").write_text(origin_config(work, tls))
        procs.start("origin", in_ns(ORIGIN, [RELEASE / "longhaul", "origin", "-c", work / "origin.toml"]))
        wait_http(ENC, f"http://{MEASURE[1]}:{ORIGIN_HTTP}/healthz", 30)
        (work / "nginx.conf").write_text(NGINX_CONF.format(work=work, port=NGINX_PORT, hook=HOOK_PORT))
        procs.start("push-hook", in_ns(EDGE, [sys.executable, __file__, "--hook",
                                               f"{HOOK_PORT},rtmp://{EDGE_ORIGIN[1]}:{RTMP_PORT}/kLive"]))
        procs.start("nginx", in_ns(EDGE, ["nginx", "-c", work / "nginx.conf", "-p", work]))
        cells = [(rtt, loss) for rtt in rtts for loss in losses]
        for i, (rtt, loss) in enumerate(cells):
            log(f"[{i + 1}/{len(cells)}] RTT {rtt} ms, loss {loss:g} % ({time.monotonic() - started:.0f} s in)")
            spec = long_spec(rtt, loss)
            links = [
                start_link(procs, f"wan-enc-edge-{rtt}-{loss:g}", (ENC, "lhb-ee", ENC_EDGE[0]), (EDGE, "lhb-ee", ENC_EDGE[1]), SHORT_LINK),
                start_link(procs, f"wan-edge-origin-{rtt}-{loss:g}", (EDGE, "lhb-eo", EDGE_ORIGIN[0]), (ORIGIN, "lhb-eo", EDGE_ORIGIN[1]), spec),
                start_link(procs, f"wan-enc-origin-{rtt}-{loss:g}", (ENC, "lhb-no", ENC_ORIGIN[0]), (ORIGIN, "lhb-no", ENC_ORIGIN[1]), spec),
            ]
            try:
                # Runs alternate between paths, so a slow minute of a shared machine does
                # not land on one path's runs only.
                for n in range(1, args.repeat + 1):
                    for path in paths:
                        try:
                            report_json = measure(procs, work, tls, path, rtt, loss, args.duration,
                                                  100 * (i + 1) + n, args.transport,
                                                  shlex.split(args.load_args))
                        except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
                            # One cell that could not run is a row saying so; the matrix goes on.
                            log(f"    {path['name']}: {e}")
                            report_json = {"total": {}, "error": str(e)}
                        row = {"rtt_ms": rtt, "loss_pct": loss, "path": path["name"], "run": n,
                               "total": report_json["total"], "streams": report_json.get("streams", []),
                               "error": report_json.get("error")}
                        rows.append(row)
                        # Written after every cell: an interrupted run keeps what it measured.
                        out.write_text(json.dumps(results(), indent=1))
                        t = row["total"]
                        log(f"    {path['name']:<17} run {n} delivered {100 * (t.get('delivered_share') or 0):5.1f} %  "
                            f"<=1s {100 * (t.get('within_1s_share') or 0):6.2f} %  "
                            f"p99 {fmt_ms((t.get('latency_ms') or {}).get('p99'))} ms")
            finally:
                for link in links:
                    procs.stop(link)
    except KeyboardInterrupt:
        log("interrupted: what was measured stays in the JSON; BENCHMARKS.md is left alone")
        args.scratch = True
    finally:
        procs.stop_all()
        delete_namespaces()
    if not rows:
        sys.exit("longhaul_bench: nothing was measured")
    out.write_text(json.dumps(results(), indent=1))
    if args.scratch:
        print(table(rows))
        log(f"scratch or interrupted run: results in {out}")
        return
    out.rename(RESULTS / f"{tag}.json")
    report(results())


if __name__ == "__main__":
    main()
