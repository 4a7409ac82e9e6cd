#!/usr/bin/env python3
"""Relay cost: what the edge spends per relayed megabyte, measured on the edge process alone.

Why: the capacity benchmark (capacity_bench.py) reads the relay's share of a core at each
step, and from 800 publishers on the load side (origin and generator on core 0) saturates
first, so its figures for the edge are bounds taken under bursty feeding. This tool asks a
narrower question that the load side cannot spoil as long as it keeps up: for a steady
load well below saturation, how much CPU (and, where the machine can count them,
instructions and cycles), how many context switches and how many socket system calls does
the edge spend per megabyte it relays? Those are the figures an optimisation of the edge's
per-message and per-packet path has to move, and they are comparable between commits.

What it does, with no root (everything on 127.0.0.1, no namespaces):

  1. builds the release binaries (`--no-build` to skip);
  2. starts a `longhaul origin` and a `longhaul edge` tunnelled to it, each its own process
     (the soak's configurations, loadtest/soak.py); the edge is pinned to `--edge-core`
     (its runtime then runs one worker), the origin and the generator to `--load-core`;
  3. runs `longhaul-load` with `--publishers` at the edge (600 kbit/s each: 536k video at
     25 fps + 64k AAC, as capacity_bench.py) and their players at the origin, for the ramp,
     a warm-up, the measured `--seconds` and a margin;
  4. over the measured window only (every stream up, past the warm-up), reads:
     - the edge's CPU seconds (utime + stime, /proc/PID/stat) and its context switches
       (voluntary + involuntary, summed over its threads, /proc/PID/task/*/status);
     - `perf stat -p EDGE` for the window: task-clock, context switches, instructions and
       cycles (printed as "n/s" where the machine does not support hardware counters, as
       in most VMs), and the syscall tracepoints of the socket path (sendmsg, sendmmsg,
       recvmsg, read, write, epoll_wait, futex...), so datagrams per send call can be read;
     - the edge's /metrics: RTMP bytes received (`longhaul_bytes_received_total`), tunnel
       UDP bytes and packets sent (`longhaul_tunnel_sent_{bytes,packets}_total`);
     - the CPU of the generator and of the origin over the same window, printed beside the
       edge's so a reader sees whether the load side limited the run (a load core near
       100 % means the edge was fed late and in bursts: the figures are then not clean).
  5. prints, per relayed MB (10^6 bytes of RTMP received by the edge): edge CPU-ms,
     instructions, cycles, context switches, syscalls; per run and the median of `--runs`.

Instruction counts on a machine without hardware counters: `--callgrind` runs the edge under
`valgrind --tool=callgrind` (about 50x slower: 10 publishers took 63 % of its core) with
instrumentation switched on for the measured window only (`callgrind_control -i on/off`), and
reports instructions (Ir, user space only) per relayed MB from its output, which repeats
well on a noisy machine. `--perf-record FILE` samples the edge's stacks (`perf record -g`) over the window,
for a flame graph (`perf script -i FILE | inferno-collapse-perf | inferno-flamegraph`).

    python3 loadtest/relay_cost.py                              # 200 publishers, 20 s window, 1 run
    python3 loadtest/relay_cost.py --runs 3 --json cost.json
    python3 loadtest/relay_cost.py --perf-record edge.data      # and a profile of the window
    python3 loadtest/relay_cost.py --publishers 10 --ramp 10 --seconds 10 --callgrind cg.out
    python3 loadtest/relay_cost.py --edge-setting '[relay]' --edge-setting 'retain_gop_head = false'
    python3 loadtest/relay_cost.py --heaptrack edge-heap       # where the edge's memory per stream goes
    python3 loadtest/relay_cost.py --edge-core 0,1 --load-core 0,1                 # an edge on two shards
    python3 loadtest/relay_cost.py --edge-core 0,1 --load-core 0,1 --split-edges   # two one-core edges

Each run also reads the edge's resident memory before the load and at the window's end:
`edge_rss_kib_per_stream` is the difference per publisher.

Every run is bounded: the generator by its own duration plus a timeout, the nodes stopped
(TERM, then KILL) however the run ends.
"""

import argparse
import json
import math
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import longhaul_bench as lb  # noqa: E402  (process plumbing, paths)
import soak  # noqa: E402  (loopback origin/edge configurations, readiness)

CLK_TCK = os.sysconf("SC_CLK_TCK")
VIDEO_BITRATE = "536k"
AUDIO_BITRATE = "64k"
# Seconds between the last publisher starting and the window opening: publish set-up,
# sequence headers, the players attaching.
WARMUP_S = 4
# Seconds of media after the window closes, so no stream ends inside it.
TAIL_S = 3
PERF_EVENTS = ["task-clock", "context-switches", "cpu-migrations", "page-faults", "instructions", "cycles"]
SYSCALLS = ["sendmsg", "sendmmsg", "sendto", "recvmsg", "recvmmsg", "recvfrom", "read", "write", "writev",
            "epoll_wait", "futex"]


def proc_cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def proc_rss_bytes(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def proc_ctx_switches(pid):
    """Voluntary + involuntary context switches, summed over the process's threads."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    total += int(line.split()[1])
        except OSError:
            continue  # a thread that ended meanwhile
    return total


def metric_sum(text, name):
    """The sum of every sample of one series (all label sets)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            total += float(line.rsplit(None, 1)[1])
    return total


def scrape(http):
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        "rtmp_bytes_in": metric_sum(text, "longhaul_bytes_received_total"),
        "tunnel_bytes_out": metric_sum(text, "longhaul_tunnel_sent_bytes_total"),
        "tunnel_packets_out": metric_sum(text, "longhaul_tunnel_sent_packets_total"),
    }


def scrape_all(https):
    """[`scrape`] summed over the edges."""
    each = [scrape(h) for h in https]
    return {k: sum(m[k] for m in each) for k in each[0]}


def cpu_seconds(edge_pids, origin, load):
    """CPU seconds so far: the edges' together, the origin's, the generator's."""
    return {"edge": sum(proc_cpu_seconds(p) for p in edge_pids), "origin": proc_cpu_seconds(origin.pid),
            "load": proc_cpu_seconds(load.pid)}


def perf_binary():
    for name in ("perf",) + tuple(sorted(p.name for p in Path("/usr/bin").glob("perf_*"))):
        path = shutil.which(name)
        if path and subprocess.run([path, "--version"], capture_output=True).returncode == 0:
            return path
    return None


def perf_events_supported(perf):
    """The events `perf stat` accepts here (hardware counters are absent in most VMs)."""
    events = list(PERF_EVENTS) + [f"syscalls:sys_enter_{s}" for s in SYSCALLS]
    r = subprocess.run([perf, "stat", "-x,", "-e", ",".join(events), "true"], capture_output=True, text=True)
    ok = []
    for line in r.stderr.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[2] in events and not parts[0].startswith("<not"):
            ok.append(parts[2])
    return ok


def parse_perf_stat(path):
    values = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split(",")
        if len(parts) > 2 and not line.startswith("#"):
            try:
                values[parts[2]] = float(parts[0])
            except ValueError:
                values[parts[2]] = None  # <not counted> / <not supported>
    return values


def start_nodes(procs, work, edge_cores, load_core, wrap_edge=(), edge_extra=""):
    """The origin, and one edge per entry of `edge_cores` (a taskset core list each):
    one edge on "1" or "0,1", or, for --split-edges, separate one-core edges ["0", "1"]
    with node ids of their own."""
    tls = work / "tls"
    ids = [soak.EDGE_ID] + [f"{soak.EDGE_ID}-{i + 1}" for i in range(1, len(edge_cores))]
    names = [a for i in ids for a in ("--edge", f"{i}.{soak.SUFFIX}")]
    lb.run([lb.RELEASE / "longhaul", "pki", "--dir", tls, "--origin", f"{soak.ORIGIN_ID}.{soak.SUFFIX}", *names],
           quiet=True)
    (work / "origin.toml").write_text(soak.origin_config(work, tls))
    origin = procs.start("origin", ["taskset", "-c", load_core, lb.RELEASE / "longhaul", "--log-format", "json",
                                    "--log", "info", "origin", "-c", work / "origin.toml"])
    o = soak.wait_ready(work / "origin.log", "origin", origin)
    edges = []
    for node_id, cores in zip(ids, edge_cores):
        name = "edge" if node_id == soak.EDGE_ID else node_id
        config = soak.edge_config(tls, o["tunnel"]).replace(soak.EDGE_ID, node_id)
        (work / f"{name}.toml").write_text(config + edge_extra)
        edge = procs.start(name, ["taskset", "-c", cores, *wrap_edge, lb.RELEASE / "longhaul", "--log-format",
                                  "json", "--log", "info", "edge", "-c", work / f"{name}.toml"])
        e = soak.wait_ready(work / f"{name}.log", "edge", edge, timeout=120 if wrap_edge else 30)
        edges.append((edge, e))
    return origin, o, edges


def one_run(args, work, index, perf, events):
    procs = lb.Processes(work)
    callgrind_out = None
    wrap = ()
    if args.callgrind:
        callgrind_out = Path(f"{args.callgrind}.{index}").resolve()
        wrap = ("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={callgrind_out}")
    if args.heaptrack:
        wrap = ("heaptrack", "-o", str(Path(f"{args.heaptrack}.{index}").resolve()))
    try:
        edge_cores = args.edge_core.split(",") if args.split_edges else [args.edge_core]
        origin, o, edges = start_nodes(procs, work, edge_cores, args.load_core, wrap,
                                       "".join(f"{line}\n" for line in args.edge_setting))
        # taskset and valgrind exec into the node: each child's pid is its edge's.
        edge_pids = [edge.pid for edge, _ in edges]
        time.sleep(1)
        rss_idle = sum(proc_rss_bytes(p) for p in edge_pids)
        ramp_s = args.publishers / args.ramp
        duration = math.ceil(ramp_s + WARMUP_S + args.seconds + TAIL_S)
        out = work / f"load-{index}.json"
        cmd = [
            "taskset", "-c", args.load_core, lb.RELEASE / "longhaul-load",
            *[a for i, (_, e) in enumerate(edges)
              for a in ("--region", f"edge{i if len(edges) > 1 else ''}=rtmp://{e['rtmp']}/kLive")],
            "--play", f"rtmp://{o['rtmp']}/kLive",
            "--api", f"http://{o['http']}",
            # Per region: the edges share the publishers.
            "--publishers", args.publishers // len(edges),
            "--bitrate", VIDEO_BITRATE, "--audio-bitrate", AUDIO_BITRATE,
            "--duration", f"{duration}s", "--ramp", f"{args.ramp}/s", "--drain", "3s",
            "--json", out, "--quiet",
        ]
        lb.log("+", " ".join(str(c) for c in cmd))
        started = time.monotonic()
        load = procs.start(f"load-{index}", cmd)
        time.sleep(ramp_s + WARMUP_S)
        if load.poll() is not None:
            raise RuntimeError(f"longhaul-load exited early ({load.returncode}); see {work}/load-{index}.log")
        # The window.
        perf_out = work / f"perf-stat-{index}.csv"
        pid_list = ",".join(str(p) for p in edge_pids)
        stat = None
        if perf and events:
            stat = subprocess.Popen([perf, "stat", "-x,", "-o", perf_out, "-e", ",".join(events), "-p", pid_list],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        record = None
        if perf and args.perf_record:
            record = subprocess.Popen([perf, "record", "-e", "cpu-clock", "-F", str(args.perf_freq), "--call-graph",
                                       args.call_graph, "-o", args.perf_record, "-p", pid_list],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if callgrind_out:
            for pid in edge_pids:
                lb.run(["callgrind_control", "-i", "on", str(pid)], quiet=True, timeout=30)
        time.sleep(0.2)  # perf attached
        m0 = scrape_all([e["http"] for _, e in edges])
        t0 = time.monotonic()
        cpu0 = cpu_seconds(edge_pids, origin, load)
        cs0 = sum(proc_ctx_switches(p) for p in edge_pids)
        time.sleep(args.seconds)
        cpu1 = cpu_seconds(edge_pids, origin, load)
        cs1 = sum(proc_ctx_switches(p) for p in edge_pids)
        rss_loaded = sum(proc_rss_bytes(p) for p in edge_pids)
        t1 = time.monotonic()
        m1 = scrape_all([e["http"] for _, e in edges])
        if callgrind_out:
            for pid in edge_pids:
                lb.run(["callgrind_control", "-i", "off", str(pid)], quiet=True, timeout=60)
        for p in (stat, record):
            if p:
                os.killpg(p.pid, signal.SIGINT)
                p.wait(timeout=60)
        load.wait(timeout=max(duration - (time.monotonic() - started), 0) + 60)
    finally:
        procs.stop_all()  # the edge writes its callgrind output on exit
    report = json.loads(out.read_text())["total"]
    window = t1 - t0
    relayed = m1["rtmp_bytes_in"] - m0["rtmp_bytes_in"]
    row = {
        "run": index,
        "edges": len(edge_pids),
        "publishers": args.publishers // len(edge_pids) * len(edge_pids),
        "window_s": window,
        "rtmp_bytes_in": relayed,
        "tunnel_bytes_out": m1["tunnel_bytes_out"] - m0["tunnel_bytes_out"],
        "tunnel_packets_out": m1["tunnel_packets_out"] - m0["tunnel_packets_out"],
        "edge_cpu_s": cpu1["edge"] - cpu0["edge"],
        "origin_cpu_s": cpu1["origin"] - cpu0["origin"],
        "load_cpu_s": cpu1["load"] - cpu0["load"],
        "edge_ctx_switches": cs1 - cs0,
        "edge_rss_idle": rss_idle,
        "edge_rss_loaded": rss_loaded,
        "perf": parse_perf_stat(perf_out) if stat else {},
        "load_total": {k: report.get(k) for k in ("publishers", "publishers_failed", "frames_sent", "frames_received",
                                                  "frames_lost", "within_1s_share", "latency_ms")},
    }
    if callgrind_out and callgrind_out.exists():
        row["callgrind_file"] = str(callgrind_out)
        row["callgrind_ir"] = callgrind_ir(callgrind_out)
    return row


def callgrind_ir(path):
    """Total instructions (Ir) of a callgrind output: the larger of its `summary:` and
    `totals:` lines (with instrumentation switched on late, `summary:` can read 0)."""
    found = [int(m.group(2)) for line in path.read_text(errors="replace").splitlines()
             if (m := re.match(r"(summary|totals):\s+(\d+)", line))]
    return max(found) if found else None


def per_mb(row):
    mb = row["rtmp_bytes_in"] / 1e6
    if mb <= 0:
        return {}
    p = row["perf"]
    out = {
        "relayed_mbit_s": row["rtmp_bytes_in"] * 8 / 1e6 / row["window_s"],
        "edge_cpu_ms_per_mb": 1000 * row["edge_cpu_s"] / mb,
        "edge_core_share": row["edge_cpu_s"] / row["window_s"],
        "load_core_share": (row["load_cpu_s"] + row["origin_cpu_s"]) / row["window_s"],
        "generator_cpu_ms_per_mb": 1000 * row["load_cpu_s"] / mb,
        "origin_cpu_ms_per_mb": 1000 * row["origin_cpu_s"] / mb,
        "ctx_switches_per_mb": row["edge_ctx_switches"] / mb,
        "tunnel_packets_per_mb": row["tunnel_packets_out"] / mb,
        "tunnel_overhead": row["tunnel_bytes_out"] / row["rtmp_bytes_in"],
        "cpu_cores_per_gbit_s": row["edge_cpu_s"] / (row["rtmp_bytes_in"] * 8 / 1e9),
        # Resident memory the load added, per publisher (as capacity_bench.py, at the
        # window's end rather than the peak).
        "edge_rss_kib_per_stream": (row.get("edge_rss_loaded", 0) - row.get("edge_rss_idle", 0))
        / 1024 / max(row["publishers"], 1),
    }
    if p.get("task-clock") is not None:
        out["perf_task_clock_ms_per_mb"] = p["task-clock"] / mb
    for ev in ("instructions", "cycles"):
        out[f"{ev}_per_mb"] = p[ev] / mb if p.get(ev) is not None else None
    for s in SYSCALLS:
        v = p.get(f"syscalls:sys_enter_{s}")
        if v is not None:
            out[f"{s}_per_mb"] = v / mb
    sends = sum(p.get(f"syscalls:sys_enter_{s}") or 0 for s in ("sendmsg", "sendmmsg", "sendto"))
    if sends:
        out["tunnel_packets_per_send_call"] = row["tunnel_packets_out"] / sends
    if row.get("callgrind_ir"):
        out["callgrind_instructions_per_mb"] = row["callgrind_ir"] / mb
    return out


def fmt(v, digits=1):
    if v is None:
        return "n/s"
    if abs(v) >= 1e6:
        return f"{v / 1e6:,.1f} M"
    return f"{v:,.{digits}f}"


def print_table(rows):
    keys = []
    for r in rows:
        for k in r["per_mb"]:
            if k not in keys:
                keys.append(k)
    head = ["figure"] + [f"run {r['run']}" for r in rows] + (["median"] if len(rows) > 1 else [])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for k in keys:
        vals = [r["per_mb"].get(k) for r in rows]
        cells = [fmt(v, 3 if abs(v or 0) < 10 else 1) for v in vals]
        if len(rows) > 1:
            known = [v for v in vals if v is not None]
            cells.append(fmt(statistics.median(known), 3) if known else "n/s")
        print(f"| {k} | " + " | ".join(cells) + " |")
    for r in rows:
        t = r["load_total"]
        print(f"run {r['run']}: {r['publishers']} publishers ({t['publishers_failed']} failed), window "
              f"{r['window_s']:.1f} s, {r['rtmp_bytes_in'] / 1e6:,.1f} MB relayed, edge CPU {r['edge_cpu_s']:.2f} s, "
              f"origin {r['origin_cpu_s']:.2f} s, generator {r['load_cpu_s']:.2f} s; frames sent "
              f"{t['frames_sent']}, lost {t['frames_lost']}, within 1 s {100 * (t['within_1s_share'] or 0):.2f} %")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--publishers", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=20, help="length of the measured window")
    ap.add_argument("--ramp", type=int, default=50, help="publishers started per second")
    ap.add_argument("--runs", type=int, default=1, help="runs (fresh nodes each); the table adds their median")
    ap.add_argument("--edge-core", default="1",
                    help="cores of the edge (taskset list; an edge on more than one runs a shard per core)")
    ap.add_argument("--split-edges", action="store_true",
                    help="a separate one-core edge process per core of --edge-core, each with its share of "
                         "the publishers (the control for a sharded edge: nothing shared between them); "
                         "the edge figures are their sums")
    ap.add_argument("--load-core", default="0", help="core of the origin and the generator")
    ap.add_argument("--no-build", action="store_true", help="use the release binaries as they are")
    ap.add_argument("--no-perf", action="store_true", help="/proc and /metrics only")
    ap.add_argument("--perf-record", metavar="FILE", help="also `perf record` the edge's stacks over the window")
    ap.add_argument("--perf-freq", type=int, default=499, help="samples per second for --perf-record")
    ap.add_argument("--call-graph", default="dwarf,16384", help="perf's --call-graph for --perf-record")
    ap.add_argument("--callgrind", metavar="PREFIX", help="run the edge under callgrind (PREFIX.RUN written)")
    ap.add_argument("--edge-setting", action="append", default=[], metavar="LINE",
                    help="a line added to the edge's configuration, in order (repeat it): "
                         "--edge-setting '[relay]' --edge-setting 'retain_gop_head = false'")
    ap.add_argument("--heaptrack", metavar="PREFIX",
                    help="run the edge under heaptrack (PREFIX.RUN.zst written; its CPU figures are then "
                         "heaptrack's process, not the edge's); heaptrack_print shows the peak by allocation site")
    ap.add_argument("--json", metavar="FILE", help="write every figure here")
    args = ap.parse_args()
    if args.runs < 1 or args.publishers < 1 or args.seconds <= 0:
        sys.exit("relay_cost: --runs, --publishers and --seconds must be positive")
    if not args.no_build:
        lb.run(["cargo", "build", "--release", "--locked", "-p", "longhaul", "-p", "longhaul-load"],
               timeout=3600, cwd=lb.ROOT)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    perf = None if args.no_perf else perf_binary()
    events = perf_events_supported(perf) if perf else []
    if perf:
        missing = [e for e in PERF_EVENTS if e not in events]
        lb.log(f"perf: {perf}; events counted: {', '.join(events)}"
               + (f"; not supported here: {', '.join(missing)}" if missing else ""))
    else:
        lb.log("perf: not used; CPU and context switches from /proc only")
    rows = []
    for i in range(1, args.runs + 1):
        work = Path(tempfile.mkdtemp(prefix="longhaul-relay-cost-"))
        lb.log(f"run {i}/{args.runs}: work directory {work}")
        row = one_run(args, work, i, perf, events)
        row["per_mb"] = per_mb(row)
        rows.append(row)
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"argv": sys.argv[1:], "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
