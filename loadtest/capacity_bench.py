#!/usr/bin/env python3
"""The capacity benchmark: how many 600 kbit/s publishers one edge core relays, every frame delivered.

SRS published its edge figures this way (REFERENCE.md section 6): one core, 600 kbit/s
streams, 2,300 publishers for SRS 4 and 1,300 for nginx-rtmp. Here, on one 2-core machine,
in a network namespace of its own (`lhc`, loopback only):

  core 1   the relay under test: the longhaul edge (its runtime sees one core, so it runs
           one worker) or nginx-rtmp (one worker process), in turn, with the same load
  core 0   everything else: the longhaul origin the relay forwards to, and `longhaul-load`
           with N publishers at the relay and N players at the origin

For each N the relay's CPU (from /proc, sampled every second) and resident memory are
recorded and the generator's report says whether every frame arrived. The figures per
relay: the largest N with every frame delivered, the relay core's use at that N, memory per
stream ((peak RSS - idle RSS) / N) and CPU per Gbit/s relayed. Core 0 carries the origin and
the generator, twice the relay's work, so it can be the first to give out; the table shows
core 0's use too, and a step whose core 0 was saturated is marked as limited by the load
side rather than by the relay.

    sudo python3 loadtest/capacity_bench.py                    # steps 100..1600 (about 15 min)
    sudo python3 loadtest/capacity_bench.py --steps 200,400    # chosen steps

Prints its table, writes it into BENCHMARKS.md (between the capacity-bench markers) and the
raw figures to loadtest/results/capacity-bench.json. Needs root (a namespace, taskset).
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
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import longhaul_bench as lb  # noqa: E402  (shared process, namespace and nginx plumbing)

NS = "lhc"
RESULTS_JSON = lb.RESULTS / "capacity-bench.json"
BEGIN_MARK = "<!-- capacity-bench:begin -->"
END_MARK = "<!-- capacity-bench:end -->"
RELAY_CORE = "1"
LOAD_CORE = "0"
EDGE_RTMP = 2935
ORIGIN_RTMP = 1935
# 600 kbit/s in all, as SRS's benchmark: 536 kbit/s of video and 64 kbit/s of AAC.
VIDEO_BITRATE = "536k"
AUDIO_BITRATE = "64k"
STREAM_KBPS = 600
# A core counts as saturated above this share: the step is then limited by that core.
# A core counts as saturated above this share: /proc's accounting moves by a tick
# (10 ms) per sample, and a core this busy already queues work.
SATURATED = 0.95
# Connections a node accepts here: publishers and players of the largest step, twice over.
MAX_CONNECTIONS = 20_000
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def proc_rss_bytes(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def core_busy_seconds(core):
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            v = [int(x) for x in line.split()[1:]]
            idle = v[3] + v[4]
            return (sum(v[:8]) - idle) / CLK_TCK
    return 0.0


class Sampler:
    """Samples a process's CPU and RSS and core 0's use every second until stopped."""

    def __init__(self, pid):
        self.pid = pid
        self.samples = []  # (t, relay cpu s, rss, load core busy s)
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stop_flag.is_set():
            try:
                self.samples.append((time.monotonic(), proc_cpu_seconds(self.pid), proc_rss_bytes(self.pid),
                                     core_busy_seconds(LOAD_CORE)))
            except OSError:
                return
            self.stop_flag.wait(1.0)

    def stop(self):
        self.stop_flag.set()
        self.thread.join(timeout=5)

    def peak_share(self, col, window=3):
        """Highest use of a core over `window` consecutive seconds (column 1: relay, 3: core 0)."""
        best = 0.0
        s = self.samples
        for i in range(len(s) - window):
            dt = s[i + window][0] - s[i][0]
            if dt > 0:
                best = max(best, (s[i + window][col] - s[i][col]) / dt)
        return best


def nginx_conf(work):
    return lb.NGINX_CONF.format(work=work, port=EDGE_RTMP, hook=lb.HOOK_PORT)


# The longhaul edges the benchmark can run, by name, and what each adds to the edge's
# configuration: "longhaul" as deployed; "longhaul-lean" keeps only unacknowledged frames
# per stream (`relay.retain_gop_head = false`), trading a picture at once after a failover
# to another origin for memory.
EDGE_VARIANTS = {
    "longhaul": (),
    "longhaul-lean": ("[relay]", "retain_gop_head = false"),
}


def edge_conf(tls, relay):
    # Loopback: the path's RTT is well under a millisecond.
    return lb.edge_config(tls, "bbr", 1, transport=EDGE_VARIANTS[relay], rtmp_listen=f"127.0.0.1:{EDGE_RTMP}",
                          origin_addr="127.0.0.1", max_connections=MAX_CONNECTIONS)


def run_step(procs, work, tls, relay, n, duration_s, ramp):
    if relay in EDGE_VARIANTS:
        (work / "edge.toml").write_text(edge_conf(tls, relay))
        p = procs.start(f"edge-{n}", lb.in_ns(NS, ["taskset", "-c", RELAY_CORE, lb.RELEASE / "longhaul", "--log", "warn",
                                                  "edge", "-c", work / "edge.toml"]))
        try:
            lb.wait_http(NS, f"http://127.0.0.1:{lb.EDGE_HTTP}/healthz", 30)
        except RuntimeError:
            procs.stop(p)
            raise
        token_in = "app"
    else:
        (work / "nginx.conf").write_text(nginx_conf(work))
        p = procs.start(f"nginx-{n}", lb.in_ns(NS, ["taskset", "-c", RELAY_CORE, "nginx", "-c", work / "nginx.conf",
                                                   "-p", work]))
        time.sleep(1)
        token_in = "name"
    pid = relay_pid(p)
    time.sleep(1)
    idle_rss = proc_rss_bytes(pid)
    cpu0 = proc_cpu_seconds(pid)
    sampler = Sampler(pid)
    out = work / f"load-{relay}-{n}.json"
    cmd = lb.in_ns(NS, [
        "taskset", "-c", LOAD_CORE, lb.RELEASE / "longhaul-load",
        "--region", f"cap=rtmp://127.0.0.1:{EDGE_RTMP}/kLive",
        "--play", f"rtmp://127.0.0.1:{ORIGIN_RTMP}/kLive",
        "--api", f"http://127.0.0.1:{lb.ORIGIN_HTTP}", "--api-token", lb.API_TOKEN,
        "--publishers", n, "--bitrate", VIDEO_BITRATE, "--audio-bitrate", AUDIO_BITRATE,
        "--duration", f"{duration_s}s", "--ramp", f"{ramp}/s", "--drain", "5s",
        "--token-in", token_in, "--json", out, "--quiet",
    ])
    try:
        lb.run(cmd, timeout=n / ramp + duration_s + 180, quiet=True)
    finally:
        sampler.stop()
        cpu = proc_cpu_seconds(pid) - cpu0
        procs.stop(p)
    report = json.loads(out.read_text())
    t = report["total"]
    # The total's delivered_kbps is the sum over streams, each over its own duration.
    received_bits = (t.get("delivered_kbps") or 0) * 1000 * duration_s
    peak_rss = max((s[2] for s in sampler.samples), default=idle_rss)
    return {
        "relay": relay,
        "publishers": n,
        "total": t,
        "relay_core_peak": sampler.peak_share(1),
        "load_core_peak": sampler.peak_share(3),
        "relay_cpu_s": cpu,
        "idle_rss": idle_rss,
        "peak_rss": peak_rss,
        "cpu_per_gbps": cpu / (received_bits / 1e9) if received_bits else None,
    }


def relay_pid(popen):
    """The relay's own pid: `ip netns exec` and `taskset` exec into it, so it is the child's."""
    return popen.pid


def all_delivered(row):
    """Every publisher published, every frame arrived, and every one within 1 s: a relay
    that queues for seconds under load has not relayed the load."""
    t = row["total"]
    return (t.get("publishers_failed", 1) == 0 and t.get("frames_lost", 1) == 0
            and t.get("frames_sent", 0) > 0 and t.get("frames_received", 0) >= t.get("frames_sent", 0)
            and t.get("frames_within_1s", 0) >= t.get("frames_sent", 1))


def load_limited(row):
    return row["load_core_peak"] >= SATURATED


def table(rows):
    out = ("| relay | publishers | all frames delivered | relayed Mbit/s | relay core (peak) | core 0 (peak) "
           "| memory per stream | CPU per Gbit/s | lost | p99 ms |\n|---|---|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        t = r["total"]
        ok = "yes" if all_delivered(r) else "no"
        if load_limited(r):
            ok += " (core 0 saturated: load-limited)"
        per_stream = (r["peak_rss"] - r["idle_rss"]) / max(r["publishers"], 1) / 1024
        mbps = (t.get("delivered_kbps") or 0) / 1000
        cpg = f"{r['cpu_per_gbps']:.2f} cores" if r["cpu_per_gbps"] else "n/d"
        out += (f"| {r['relay']} | {r['publishers']} | {ok} | {mbps:,.0f} | {100 * r['relay_core_peak']:.0f} % "
                f"| {100 * r['load_core_peak']:.0f} % | {per_stream:,.0f} KiB | {cpg} | {t.get('frames_lost', 0)} "
                f"| {lb.fmt_ms((t.get('latency_ms') or {}).get('p99'))} |\n")
    return out


def summary(rows):
    lines = []
    for relay in dict.fromkeys(r["relay"] for r in rows):
        ok = [r for r in rows if r["relay"] == relay and all_delivered(r)]
        if not ok:
            lines.append(f"- {relay}: no step delivered every frame.")
            continue
        best = max(ok, key=lambda r: r["publishers"])
        share = best["relay_core_peak"]
        per_core = best["publishers"] / share if share > 0 else float("nan")
        failed = sorted((r for r in rows if r["relay"] == relay and not all_delivered(r)
                         and r["publishers"] > best["publishers"]), key=lambda r: r["publishers"])
        if not failed:
            why = "the largest step tried"
        else:
            first = failed[0]
            if first["relay_core_peak"] >= SATURATED:
                why = f"at {first['publishers']} the relay's core was saturated ({100 * first['relay_core_peak']:.0f} %)"
            elif load_limited(first):
                why = f"at {first['publishers']} core 0 (origin and generator) gave out first"
            else:
                why = f"at {first['publishers']} frames were late or lost"
        lines.append(
            f"- {relay}: {best['publishers']} publishers with every frame delivered within 1 s ({why}); the relay "
            f"core peaked at {100 * share:.0f} %, so one core would carry about {per_core:,.0f} at that cost per "
            f"stream (extrapolated, not measured at saturation"
            + ("; core 0 was saturated at that step, so this is a bound" if load_limited(best) else "") + ").")
    return "\n".join(lines) + "\n"


def write_benchmarks_md(results):
    meta = results["meta"]
    body = (f"{BEGIN_MARK}\nRun on {meta['date']} on {meta['host']} ({meta['cores']} cores), `{meta['command']}`: "
            f"{STREAM_KBPS} kbit/s streams ({VIDEO_BITRATE} video at 25 fps, {AUDIO_BITRATE} AAC), "
            f"{meta['duration_s']} s each, ramped at {meta['ramp']}/s; the relay on core {RELAY_CORE}, origin and "
            f"generator on core {LOAD_CORE}.\n\n" + table(results["rows"]) + "\n" + summary(results["rows"]) + END_MARK)
    lb.write_section("capacity-bench", "Capacity (loadtest/capacity_bench.py)", body)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="100,200,400,800,1200,1600", help="publisher counts to try, ascending")
    ap.add_argument("--relays", default="longhaul,nginx",
                    help="from longhaul, longhaul-lean (relay.retain_gop_head = false) and nginx")
    ap.add_argument("--duration", type=int, default=30, help="seconds each stream sends")
    ap.add_argument("--ramp", type=int, default=100, help="publishers started per second")
    ap.add_argument("--report-only", action="store_true", help="table from the saved results")
    ap.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    args = ap.parse_args()
    if args.report_only:
        results = json.loads(RESULTS_JSON.read_text())
        print(table(results["rows"]) + "\n" + summary(results["rows"]))
        write_benchmarks_md(results)
        return
    if os.geteuid() != 0:
        sys.exit("capacity_bench: needs root (a network namespace, taskset, sysctl)")
    # Thousands of sockets per process: raise the soft file limit to the hard one.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    steps = [int(x) for x in args.steps.split(",")]
    # Every stream of a step must be up at once for a while: the last starts at n/ramp.
    for n in steps:
        if n / args.ramp > args.duration - 10:
            sys.exit(f"capacity_bench: {n} publishers at {args.ramp}/s take {n / args.ramp:.0f} s to start, "
                     f"too close to --duration {args.duration}: raise --ramp or --duration")

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    relays = args.relays.split(",")
    unknown = [r for r in relays if r not in EDGE_VARIANTS and r != "nginx"]
    if unknown:
        sys.exit(f"capacity_bench: unknown relay {', '.join(unknown)}: --relays takes "
                 f"{', '.join(EDGE_VARIANTS)} and nginx")
    lb.ensure_tools(build=not args.no_build)
    lb.RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="longhaul-capacity-"))
    lb.log(f"work directory (logs, configs): {work}")
    procs = lb.Processes(work)
    tls = work / "tls"
    lb.run([lb.RELEASE / "longhaul", "pki", "--dir", tls, "--origin", f"nyc-1.{lb.TUNNEL_SUFFIX}", "--edge", f"sin-1.{lb.TUNNEL_SUFFIX}"],
           quiet=True)
    rows = []
    lb.run(["ip", "netns", "delete", NS], check=False, quiet=True)
    try:
        lb.run(["ip", "netns", "add", NS])
        lb.run(["ip", "-n", NS, "link", "set", "lo", "up"])
        # Thousands of sockets on loopback in one namespace.
        lb.run(lb.in_ns(NS, ["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=10000 60999"]))
        origin = lb.origin_config(work, tls, rtmp_listen=f"127.0.0.1:{ORIGIN_RTMP}", max_connections=MAX_CONNECTIONS)
        (work / "origin.toml").write_text(origin)
        procs.start("origin", lb.in_ns(NS, ["taskset", "-c", LOAD_CORE, lb.RELEASE / "longhaul", "--log", "warn",
                                            "origin", "-c", work / "origin.toml"]))
        lb.wait_http(NS, f"http://127.0.0.1:{lb.ORIGIN_HTTP}/healthz", 30)
        procs.start("push-hook", lb.in_ns(NS, ["taskset", "-c", LOAD_CORE, sys.executable, lb.__file__, "--hook",
                                               f"{lb.HOOK_PORT},rtmp://127.0.0.1:{ORIGIN_RTMP}/kLive"]))
        stopped = set()
        for n in steps:
            for relay in relays:
                if relay in stopped:
                    continue
                lb.log(f"{relay}: {n} publishers")
                try:
                    row = run_step(procs, work, tls, relay, n, args.duration, args.ramp)
                except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
                    lb.log(f"    {relay} at {n}: could not run the step: {e}")
                    stopped.add(relay)
                    continue
                rows.append(row)
                lb.log(f"    all delivered: {all_delivered(row)}, relay core {100 * row['relay_core_peak']:.0f} %, "
                       f"core 0 {100 * row['load_core_peak']:.0f} %, lost {row['total'].get('frames_lost')}")
                # Past the first step the relay itself failed, it is only slower: stop it
                # there. A step lost to the load side says nothing of the relay.
                if not all_delivered(row) and not load_limited(row):
                    stopped.add(relay)
    except KeyboardInterrupt:
        lb.log("interrupted: reporting what was measured")
    finally:
        procs.stop_all()
        lb.run(["ip", "netns", "delete", NS], check=False, quiet=True)
    if not rows:
        sys.exit("capacity_bench: nothing was measured")
    results = {
        "meta": {
            "date": datetime.date.today().isoformat(), "host": platform.node(), "cores": os.cpu_count(),
            "command": " ".join(["sudo python3 loadtest/capacity_bench.py"] + sys.argv[1:]),
            "duration_s": args.duration, "ramp": args.ramp,
        },
        "rows": rows,
    }
    RESULTS_JSON.write_text(json.dumps(results, indent=1))
    print(table(rows) + "\n" + summary(rows))
    write_benchmarks_md(results)


if __name__ == "__main__":
    main()
