#!/usr/bin/env python3
"""Players per core: how many 600 kbit/s players one core of an origin serves, beside nginx-rtmp.

SRS published its playback capacity this way (REFERENCE.md section 6): one core, 600 kbit/s
streams, players added until the core is full (4,000 players per core at 522 kbit/s,
about 15 KB per connection). Here the server under test runs alone on core 1 (taskset);
`longhaul-load` on core 0 publishes 10 streams to it and plays them with N players in
all: one measuring player per stream (every frame stamped and timed) and the rest
counting viewers (`--viewers`: they read every 100 ms and parse nothing, so one core of
generator drives thousands; loadtest/load/src/viewer.rs). Servers, in turn, at each step:

  longhaul-rtmp     a `longhaul origin`, its players over RTMP
  longhaul-flv      the same origin, its viewers over HTTP-FLV (`/live/{name}.flv`)
  nginx-rtmp        nginx-rtmp (Debian's libnginx-mod-rtmp), one worker, `live on`, over RTMP

(nginx-rtmp serves no HTTP-FLV: that needs a third-party module Debian does not ship.)

A step passes when every viewer attached and got at least 90 % of the bytes its stream's
publisher sent (nginx-rtmp has no GOP cache, so its viewers start at the next frame), and
every frame reached the measuring players within 1 s. For each step it reads the server
core's use (peak over 3 s and mean over the run's middle), core 0's, and the server's
memory per player (RSS at the peak over RSS before, per player). Players per core: the
players of the largest passing step over the server core's mean use there (a bound when
core 0 was saturated, as the table says).

    sudo python3 loadtest/players_bench.py                           # steps 500..4000 (about 10 min)
    sudo python3 loadtest/players_bench.py --steps 1000,2000 --servers longhaul-rtmp,nginx-rtmp

It needs root (a network namespace for its thousands of loopback sockets, taskset), builds
the release binaries, installs nginx's RTMP module when missing, writes
loadtest/results/players-bench.json and its table into BENCHMARKS.md (between the
players-bench markers), and stops everything it started however it ends. Every wait is
bounded.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import capacity_bench as cb  # noqa: E402  (CPU and memory sampling)
import longhaul_bench as lb  # noqa: E402  (process, namespace and nginx plumbing)

NS = "lhp"
RESULTS_JSON = lb.RESULTS / "players-bench.json"
BEGIN_MARK = "<!-- players-bench:begin -->"
END_MARK = "<!-- players-bench:end -->"
SERVER_CORE = "1"
LOAD_CORE = "0"
ORIGIN_RTMP = 1935
NGINX_RTMP = 1937
STREAMS = 10
VIDEO_BITRATE = "536k"
AUDIO_BITRATE = "64k"
STREAM_KBPS = 600
# A viewer that got less than this share of its stream's sent bytes fell behind.
MIN_SHARE = 0.9
SERVERS = ["longhaul-rtmp", "longhaul-flv", "nginx-rtmp"]
MAX_CONNECTIONS = 30_000

NGINX_PLAY_CONF = """
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
error_log {work}/nginx-error.log warn;
pid {work}/nginx.pid;
events {{ worker_connections 30000; }}
rtmp {{
  server {{
    listen 127.0.0.1:{port};
    chunk_size 4096;
    application kLive {{
      live on;
    }}
  }}
}}
"""


def origin_conf(work, tls):
    conf = lb.origin_config(work, tls, rtmp_listen=f"127.0.0.1:{ORIGIN_RTMP}", max_connections=MAX_CONNECTIONS)
    # Thousands of HTTP-FLV players from one address.
    return conf.replace("[http]\n", f"[http]\nmax_connections = {MAX_CONNECTIONS}\n", 1)


def start_server(procs, work, tls, server, step):
    if server.startswith("longhaul"):
        (work / "origin.toml").write_text(origin_conf(work, tls))
        p = procs.start(f"{server}-{step}", lb.in_ns(NS, ["taskset", "-c", SERVER_CORE, lb.RELEASE / "longhaul",
                                                         "--log", "warn", "origin", "-c", work / "origin.toml"]))
        try:
            lb.wait_http(NS, f"http://127.0.0.1:{lb.ORIGIN_HTTP}/healthz", 30)
        except RuntimeError:
            procs.stop(p)
            raise
        return p
    (work / "nginx.conf").write_text(NGINX_PLAY_CONF.format(work=work, port=NGINX_RTMP))
    p = procs.start(f"{server}-{step}", lb.in_ns(NS, ["taskset", "-c", SERVER_CORE, "nginx", "-c", work / "nginx.conf",
                                                     "-p", work]))
    time.sleep(1)
    return p


def load_args(work, server, players, duration_s):
    viewers = max(players // STREAMS - 1, 0)
    common = ["--publishers", STREAMS, "--bitrate", VIDEO_BITRATE, "--audio-bitrate", AUDIO_BITRATE,
              "--duration", f"{duration_s}s", "--ramp", "20/s", "--drain", "5s", "--viewers", viewers, "--quiet"]
    if server.startswith("longhaul"):
        base = f"rtmp://127.0.0.1:{ORIGIN_RTMP}/kLive"
        args = ["--region", f"p={base}", "--play", base, "--api", f"http://127.0.0.1:{lb.ORIGIN_HTTP}",
                "--api-token", lb.API_TOKEN]
        if server == "longhaul-flv":
            args += ["--viewers-at", f"http://127.0.0.1:{lb.ORIGIN_HTTP}/live"]
        return args + common
    # nginx checks no token: made-up entries, the token after the name (OBS style).
    entries = work / "entries.txt"
    entries.write_text("".join(f"p 1_bench{i:03d} token{i}\n" for i in range(STREAMS)))
    base = f"rtmp://127.0.0.1:{NGINX_RTMP}/kLive"
    return ["--region", f"p={base}", "--play", base, "--entries", entries, "--token-in", "name"] + common


def run_step(procs, work, tls, server, players, duration_s):
    p = start_server(procs, work, tls, server, players)
    pid = p.pid  # `ip netns exec` and `taskset` exec into the server
    time.sleep(1)
    idle_rss = cb.proc_rss_bytes(pid)
    cpu0 = cb.proc_cpu_seconds(pid)
    sampler = cb.Sampler(pid)
    out = work / f"load-{server}-{players}.json"
    cmd = lb.in_ns(NS, ["taskset", "-c", LOAD_CORE, lb.RELEASE / "longhaul-load",
                        *load_args(work, server, players, duration_s), "--json", out])
    started = time.monotonic()
    try:
        lb.run(cmd, timeout=duration_s + 240, quiet=True)
    finally:
        sampler.stop()
        cpu = cb.proc_cpu_seconds(pid) - cpu0
        elapsed = time.monotonic() - started
        procs.stop(p)
    report = json.loads(out.read_text())
    t = report["total"]
    # The mean over the middle of the run: every stream and viewer up, none ending.
    s = sampler.samples
    mid = [x for x in s if started + 8 <= x[0] <= started + duration_s - 2]
    mean = ((mid[-1][1] - mid[0][1]) / (mid[-1][0] - mid[0][0])) if len(mid) >= 2 else None
    load_mean = ((mid[-1][3] - mid[0][3]) / (mid[-1][0] - mid[0][0])) if len(mid) >= 2 else None
    peak_rss = max((x[2] for x in s), default=idle_rss)
    return {
        "server": server,
        "players": players,
        "total": t,
        "server_core_peak": sampler.peak_share(1),
        "server_core_mean": mean,
        "load_core_peak": sampler.peak_share(3),
        "load_core_mean": load_mean,
        "server_cpu_s": cpu,
        "elapsed_s": elapsed,
        "idle_rss": idle_rss,
        "peak_rss": peak_rss,
    }


def passed(row):
    t = row["total"]
    return (t.get("publishers_failed", 1) == 0 and t.get("viewers_failed", 1) == 0
            and t.get("viewers_min_share", 0) >= MIN_SHARE
            and t.get("frames_sent", 0) > 0 and t.get("frames_within_1s", 0) >= t.get("frames_sent", 1))


def load_limited(row):
    return (row["load_core_mean"] or 0) >= cb.SATURATED


def table(rows):
    out = ("| server | players | all kept up | delivered Mbit/s | server core (mean, peak) | core 0 (mean) "
           "| memory per player | players per core | least viewer share | p99 ms (measuring players) |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        t = r["total"]
        ok = "yes" if passed(r) else "no"
        if load_limited(r):
            ok += " (core 0 saturated)"
        mbps = ((t.get("viewer_kbps") or 0) + (t.get("delivered_kbps") or 0)) / 1000
        mem = (r["peak_rss"] - r["idle_rss"]) / max(r["players"], 1) / 1024
        mean = r["server_core_mean"]
        per_core = f"{r['players'] / mean:,.0f}" if mean else "n/d"
        out += (f"| {r['server']} | {r['players']:,} | {ok} | {mbps:,.0f} | {100 * (mean or 0):.0f} %, "
                f"{100 * r['server_core_peak']:.0f} % | {100 * (r['load_core_mean'] or 0):.0f} % | {mem:,.1f} KiB "
                f"| {per_core} | {t.get('viewers_min_share', 0):.3f} "
                f"| {lb.fmt_ms((t.get('latency_ms') or {}).get('p99'))} |\n")
    return out


def summary(rows):
    lines = []
    for server in SERVERS:
        ok = [r for r in rows if r["server"] == server and passed(r) and r["server_core_mean"]]
        if not ok:
            if any(r["server"] == server for r in rows):
                lines.append(f"- {server}: no step kept every player up.")
            continue
        best = max(ok, key=lambda r: r["players"])
        per_core = best["players"] / best["server_core_mean"]
        failed = [r for r in rows if r["server"] == server and not passed(r) and r["players"] > best["players"]]
        why = "the largest step tried" if not failed else f"at {min(r['players'] for r in failed):,} players some fell behind"
        lines.append(f"- {server}: {best['players']:,} players kept up ({why}), the server's core at "
                     f"{100 * best['server_core_mean']:.0f} % on average: about {per_core:,.0f} players per core "
                     f"at that cost per player" + (" (core 0 saturated: a bound)" if load_limited(best) else "") + ".")
    return "\n".join(lines) + "\n"


def write_benchmarks_md(results):
    meta = results["meta"]
    body = (f"{BEGIN_MARK}\nRun on {meta['date']} on {meta['host']} ({meta['cores']} cores), `{meta['command']}`: "
            f"{STREAMS} streams of {STREAM_KBPS} kbit/s ({VIDEO_BITRATE} video at 25 fps, {AUDIO_BITRATE} AAC), "
            f"{meta['duration_s']} s each; the server on core {SERVER_CORE}, the generator on core {LOAD_CORE}.\n\n"
            + table(results["rows"]) + "\n" + summary(results["rows"]) + END_MARK)
    lb.write_section("players-bench", "Players per core (loadtest/players_bench.py)", body)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="500,1000,2000,4000", help="players in all, ascending")
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--duration", type=int, default=30, help="seconds each stream sends")
    ap.add_argument("--report-only", action="store_true", help="table from the saved results")
    ap.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    args = ap.parse_args()
    if args.report_only:
        results = json.loads(RESULTS_JSON.read_text())
        print(table(results["rows"]) + "\n" + summary(results["rows"]))
        write_benchmarks_md(results)
        return
    if os.geteuid() != 0:
        sys.exit("players_bench: needs root (a network namespace, taskset)")
    servers = args.servers.split(",")
    if unknown := [s for s in servers if s not in SERVERS]:
        sys.exit(f"players_bench: unknown server {unknown}; known: {SERVERS}")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    steps = [int(x) for x in args.steps.split(",")]

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    lb.ensure_tools(build=not args.no_build)
    lb.RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="longhaul-players-"))
    lb.log(f"work directory (logs, configs): {work}")
    procs = lb.Processes(work)
    tls = work / "tls"
    lb.run([lb.RELEASE / "longhaul", "pki", "--dir", tls, "--origin", f"nyc-1.{lb.TUNNEL_SUFFIX}", "--edge",
            f"sin-1.{lb.TUNNEL_SUFFIX}"], quiet=True)
    rows = []
    lb.run(["ip", "netns", "delete", NS], check=False, quiet=True)
    try:
        lb.run(["ip", "netns", "add", NS])
        lb.run(["ip", "-n", NS, "link", "set", "lo", "up"])
        lb.run(lb.in_ns(NS, ["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=10000 60999"]))
        stopped = set()
        for n in steps:
            for server in servers:
                if server in stopped:
                    continue
                lb.log(f"{server}: {n} players")
                try:
                    row = run_step(procs, work, tls, server, n, args.duration)
                except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
                    lb.log(f"    {server} at {n}: could not run the step: {e}")
                    stopped.add(server)
                    continue
                rows.append(row)
                t = row["total"]
                lb.log(f"    kept up: {passed(row)}, server core {100 * (row['server_core_mean'] or 0):.0f} % "
                       f"(peak {100 * row['server_core_peak']:.0f} %), core 0 {100 * (row['load_core_mean'] or 0):.0f} %, "
                       f"viewers failed {t.get('viewers_failed')}, least share {t.get('viewers_min_share', 0):.3f}")
                if not passed(row) and not load_limited(row):
                    stopped.add(server)
    except KeyboardInterrupt:
        lb.log("interrupted: reporting what was measured")
    finally:
        procs.stop_all()
        lb.run(["ip", "netns", "delete", NS], check=False, quiet=True)
    if not rows:
        sys.exit("players_bench: nothing was measured")
    results = {
        "meta": {
            "date": datetime.date.today().isoformat(), "host": platform.node(), "cores": os.cpu_count(),
            "command": " ".join(["sudo python3 loadtest/players_bench.py"] + sys.argv[1:]),
            "duration_s": args.duration,
        },
        "rows": rows,
    }
    RESULTS_JSON.write_text(json.dumps(results, indent=1))
    print(table(rows) + "\n" + summary(rows))
    write_benchmarks_md(results)


if __name__ == "__main__":
    main()
