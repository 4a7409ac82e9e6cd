#!/usr/bin/env bash
# wan-check.sh: checks longhaul-wan against a real kernel path.
#
# Creates two network namespaces (lhwan-a-PID, lhwan-b-PID), runs the emulator between
# them with a few settings, and for each measures the ping RTT (against 2 x delay), a bulk
# TCP transfer with iperf3 (against the rate cap; TCP in new namespaces is BBR on the
# project's test kernel) and the loss the emulator counted (against the setting). Prints
# a table "setting | metric | expected | measured | verdict" and exits 1 if a measurement
# is outside its tolerance.
#
# Needs root. Installs iperf3, iputils-ping and jq with apt-get if missing. Takes about
# 150 s. Everything it starts (namespaces, processes, files) is removed on exit.
#
# Usage: sudo loadtest/wan-check.sh        (CARGO_TARGET_DIR is honoured)
set -euo pipefail

if [[ $EUID -ne 0 ]]; then
    echo "wan-check.sh: needs root (network namespaces and TUN devices)" >&2
    exit 1
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
NS_A=lhwan-a-$$
NS_B=lhwan-b-$$
ADDR_A=10.77.250.1
ADDR_B=10.77.250.2
WORK=$(mktemp -d /tmp/lhwan-check.XXXXXX)
EMU_PID=""
IPERF_PID=""

cleanup() {
    set +e
    for pid in $EMU_PID $IPERF_PID; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    ip netns del "$NS_A" 2>/dev/null
    ip netns del "$NS_B" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need() { # need COMMAND PACKAGE
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "installing $2" >&2
        DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q "$2" >/dev/null \
            || { timeout 120 apt-get update -q >/dev/null \
                && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q "$2" >/dev/null; }
    fi
}
need iperf3 iperf3
need ping iputils-ping
need jq jq

echo "building longhaul-wan (release)" >&2
(cd "$ROOT" && cargo build --release -q -p longhaul-wan)
BIN=$TARGET/release/longhaul-wan

ip netns add "$NS_A"
ip netns add "$NS_B"
ip -n "$NS_A" link set lo up
ip -n "$NS_B" link set lo up

ROWS=()
FAILED=0
CASE=0
row() { # row SETTING METRIC EXPECTED MEASURED OK(0/1)
    local verdict=ok
    if [[ $5 -ne 1 ]]; then verdict=OUT; FAILED=$((FAILED + 1)); fi
    ROWS+=("$(printf '%-26s | %-22s | %-24s | %-34s | %s' "$1" "$2" "$3" "$4" "$verdict")")
}
calc() { awk "BEGIN { print $* }"; }
within() { awk -v x="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(x >= lo && x <= hi) }' && echo 1 || echo 0; }

# check NAME SPEC DELAY_MS JITTER_MS RATE_MBIT LOSS_PCT GE_BURST
#   RATE_MBIT 0: uncapped; GE_BURST 0: no Gilbert-Elliott (else the mean burst, 1/r).
check() {
    local name=$1 spec=$2 delay=$3 jitter=$4 rate=$5 loss=$6 burst=$7
    CASE=$((CASE + 1))
    local out=$WORK/case$CASE.out stats=$WORK/case$CASE.json iperf=$WORK/case$CASE.iperf.json udp=$WORK/case$CASE.udp.json
    echo "== $name: $spec" >&2

    "$BIN" --a-netns "$NS_A" --a-dev lhwan-a --a-addr $ADDR_A \
        --b-netns "$NS_B" --b-dev lhwan-b --b-addr $ADDR_B \
        --both "$spec" --seed 1 --duration 60s --stats-json "$stats" >"$out" 2>"$out.err" &
    EMU_PID=$!
    for _ in $(seq 100); do
        grep -q '^ready$' "$out" && break
        kill -0 "$EMU_PID" 2>/dev/null || { cat "$out.err" >&2; exit 1; }
        sleep 0.1
    done
    grep -q '^ready$' "$out" || { echo "emulator not ready after 10 s" >&2; exit 1; }
    local started=$SECONDS

    # Idle RTT: 20 pings, 200 ms apart.
    local ping_out rtt loss_ping
    ping_out=$(timeout 20 ip netns exec "$NS_A" ping -q -n -c 20 -i 0.2 -W 2 $ADDR_B || true)
    rtt=$(sed -n 's/^rtt min\/avg\/max\/mdev = \([0-9.]*\)\/\([0-9.]*\)\/\([0-9.]*\)\/.*/\1 \2 \3/p' <<<"$ping_out")
    loss_ping=$(sed -n 's/.* \([0-9.]*\)% packet loss.*/\1/p' <<<"$ping_out")
    read -r rtt_min rtt_avg rtt_max <<<"${rtt:-0 0 0}"
    local rtt_lo rtt_hi
    rtt_lo=$(calc "2 * ($delay - $jitter) - 0.1")
    # Above: the jitter, and each hop's wake-up latency (about 0.15 ms measured here).
    # Judged on min and avg; the max is shown (a VM's scheduler adds rare millisecond
    # outliers).
    rtt_hi=$(calc "2 * ($delay + $jitter) + 1")
    row "$name" "ping RTT min/avg/max" "$(calc "2 * $delay") ms (+-$(calc "2 * $jitter"))" \
        "$rtt_min/$rtt_avg/$rtt_max ms, ${loss_ping:-?}% lost" \
        "$(( $(within "$rtt_min" "$rtt_lo" "$rtt_hi") & $(within "$rtt_avg" "$rtt_lo" "$rtt_hi") ))"

    # The cap itself: UDP offered at 1.25 x the rate, 1400-byte datagrams (1428 bytes on
    # the wire). Loss is applied before the queue, which stays full, so the goodput is
    # rate x 1400 / 1428 whatever the loss.
    if [[ $rate != 0 ]]; then
        ip netns exec "$NS_B" timeout 30 iperf3 -s -1 -J -B $ADDR_B >/dev/null 2>&1 &
        IPERF_PID=$!
        sleep 0.5
        timeout 25 ip netns exec "$NS_A" iperf3 -c $ADDR_B -u -l 1400 -b "$(calc "$rate * 1.25")M" \
            -t 6 -J --get-server-output >"$udp" || true
        wait "$IPERF_PID" 2>/dev/null || true
        IPERF_PID=""
        local udp_mbit udp_full
        # The receiver's per-second figures without the first and last second: the
        # run's totals would count the datagrams still in the queue and in propagation
        # at the end (delay + queue, 3.6% of 6 s at 115 ms + 100 ms) as lost.
        udp_mbit=$(jq -r '[.server_output_json.intervals[1:-1][].sum.bits_per_second]
            | if length > 0 then add / length / 1e6 else 0 end' "$udp")
        udp_full=$(calc "$rate * 1400 / 1428")
        row "$name" "UDP goodput at 1.25x" "$(printf '%.2f' "$udp_full") Mbit/s (+-3%)" \
            "$(printf '%.2f' "$udp_mbit") Mbit/s" \
            "$(within "$udp_mbit" "$(calc "$udp_full * 0.97")" "$(calc "$udp_full * 1.03")")"
    fi

    # Bulk TCP, A to B: 20 s, the first 5 s (BBR's start-up at long RTTs) left out.
    ip netns exec "$NS_B" timeout 45 iperf3 -s -1 -B $ADDR_B >/dev/null 2>&1 &
    IPERF_PID=$!
    sleep 0.5
    timeout 40 ip netns exec "$NS_A" iperf3 -c $ADDR_B -t 20 -O 5 -J >"$iperf" || true
    wait "$IPERF_PID" 2>/dev/null || true
    IPERF_PID=""
    local sent_bps retrans
    sent_bps=$(jq -r '.end.sum_received.bits_per_second // 0' "$iperf")
    retrans=$(jq -r '.end.sum_sent.retransmits // "?"' "$iperf")
    local mbit
    mbit=$(calc "$sent_bps / 1e6")
    if [[ $rate == 0 ]]; then
        row "$name" "TCP goodput (iperf3)" "uncapped" "$(printf '%.1f' "$mbit") Mbit/s, $retrans retr" \
            "$(within "$mbit" 50 100000)"
    else
        # Goodput at full use: 1448 payload bytes per 1500-byte packet (TCP timestamps).
        # Never above it; below it by TCP's own dynamics (BBR's PROBE_RTT every 10 s,
        # recovery from loss), so the floor is 80% without loss, 50% with.
        local full floor
        full=$(calc "$rate * 1448 / 1500")
        floor=$(calc "$full * ($loss > 0 ? 0.5 : 0.8)")
        row "$name" "TCP goodput (iperf3)" "$(printf '%.1f..%.1f' "$floor" "$full") Mbit/s" \
            "$(printf '%.1f' "$mbit") Mbit/s, $retrans retr" \
            "$(within "$mbit" "$floor" "$(calc "$full * 1.01")")"
    fi

    # Stop the emulator, read what it counted.
    local ticks elapsed
    ticks=$(awk '{ print $14 + $15 }' "/proc/$EMU_PID/stat")
    elapsed=$((SECONDS - started))
    kill -INT "$EMU_PID"
    wait "$EMU_PID"
    EMU_PID=""
    local n_ab lost_ab loss_ab bursts_ab burst_lost_ab drops_ab loss_ba cpu
    n_ab=$(jq -r '.a_to_b.packets_in' "$stats")
    lost_ab=$(jq -r '.a_to_b.lost_random + .a_to_b.lost_burst' "$stats")
    burst_lost_ab=$(jq -r '.a_to_b.lost_burst' "$stats")
    bursts_ab=$(jq -r '.a_to_b.loss_bursts' "$stats")
    drops_ab=$(jq -r '.a_to_b.dropped_queue_full' "$stats")
    loss_ab=$(jq -r '.a_to_b.loss_fraction * 100' "$stats")
    loss_ba=$(jq -r '.b_to_a.loss_fraction * 100' "$stats")
    cpu=$(calc "100 * $ticks / $(getconf CLK_TCK) / ($elapsed > 0 ? $elapsed : 1)")

    local p tol
    p=$(calc "$loss / 100")
    if [[ $burst == 0 ]]; then
        # Binomial: four standard deviations, plus 0.05 points of slack.
        tol=$(calc "100 * 4 * sqrt($p * (1 - $p) / ($n_ab > 0 ? $n_ab : 1)) + 0.05")
    else
        # Bursts make the estimate coarser: 35% of the mean.
        tol=$(calc "$loss * 0.35 + 0.05")
    fi
    row "$name" "loss A->B (counted)" "$loss% +-$(printf '%.2f' "$tol")" \
        "$(printf '%.3f' "$loss_ab")% ($lost_ab/$n_ab)" \
        "$(within "$loss_ab" "$(calc "$loss - $tol")" "$(calc "$loss + $tol")")"
    row "$name" "loss B->A (counted)" "$loss%" "$(printf '%.3f' "$loss_ba")%" \
        "$(within "$loss_ba" "$(calc "$loss - $tol * 3")" "$(calc "$loss + $tol * 3")")"
    if [[ $burst != 0 ]]; then
        local mean_burst
        mean_burst=$(calc "$burst_lost_ab / ($bursts_ab > 0 ? $bursts_ab : 1)")
        row "$name" "mean loss burst A->B" "$burst packets" \
            "$(printf '%.2f' "$mean_burst") ($bursts_ab bursts)" \
            "$(within "$mean_burst" "$(calc "$burst * 0.7")" "$(calc "$burst * 1.3")")"
    fi
    if [[ $rate != 0 ]]; then
        row "$name" "queue drops A->B" "tail drop when full" "$drops_ab packets" 1
    fi
    row "$name" "emulator CPU" "cheap" "$(printf '%.1f' "$cpu")% of one core" \
        "$(within "$cpu" 0 50)"
}

#      name                   spec                                                        delay jitter rate loss burst
check "40ms"                 "delay=40ms"                                                   40   0     0    0    0
check "115ms+1%+50mbit"      "delay=115ms,jitter=2ms,loss=1%,rate=50mbit,queue=100ms"      115   2    50    1    0
check "GE 0.5%/25%+20mbit"   "delay=40ms,ge=0.5%/25%,rate=20mbit,queue=50ms"                40   0    20    1.96 4
check "10mbit+queue 15kb"    "delay=20ms,rate=10mbit,queue=15kb"                            20   0    10    0    0

echo
printf '%-26s | %-22s | %-24s | %-34s | %s\n' setting metric expected measured verdict
printf '%s\n' "$(printf -- '-%.0s' $(seq 124))"
printf '%s\n' "${ROWS[@]}"
echo
if [[ $FAILED -gt 0 ]]; then
    echo "$FAILED measurement(s) outside tolerance"
    exit 1
fi
echo "all measurements within tolerance"
