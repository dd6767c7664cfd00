#!/usr/bin/env bash
# The flows receiver with 50 000 active flows: agent CPU per drain and RSS, measured on the whole
# agent (release build) running inside a node namespace.
#
# A pod sends one UDP datagram to each of FLOWS destination ports of the node, over and over, so
# every collection interval drains FLOWS flows at the pod's interface. Two profiles:
#   drain    flows on a metrics pipeline only: the kernel tables are drained and summed, no records
#   records  flows -> flowlog (Parquet, zstd) and -> prometheus: every flow becomes a record and a row
# For each it prints the agent's CPU (user + system, from /proc/<pid>/stat) per drain, the
# drains counted, and the RSS (VmRSS) and peak RSS (VmHWM) at the end.
#
# Needs root, python3 and a release build (cargo build --release). Not run by cargo test.
# Usage: benches/flows_scale.sh      FLOWS=50000 INTERVAL=5 DRAINS=6 PROFILES="drain records"
set -euo pipefail

FLOWS=${FLOWS:-50000}
INTERVAL=${INTERVAL:-5}
DRAINS=${DRAINS:-6}
PROFILES=${PROFILES:-drain records}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FOVEA=${FOVEA:-$ROOT/target/release/fovea}
WORK=$(mktemp -d /tmp/fovea-scale.XXXXXX)
NODE=fvscale-node POD=fvscale-pod
NODE4=198.19.253.1 POD4=198.19.253.2
OWN_PORT=${OWN_PORT:-18889}

[[ $(id -u) == 0 ]] || { echo "needs root" >&2; exit 1; }
[[ -x $FOVEA ]] || { echo "build first: cargo build --release ($FOVEA missing)" >&2; exit 1; }

FOVEA_PID= GEN_PID=
cleanup() {
    [[ -n $GEN_PID ]] && kill "$GEN_PID" 2>/dev/null || true
    [[ -n $FOVEA_PID ]] && kill "$FOVEA_PID" 2>/dev/null && wait "$FOVEA_PID" 2>/dev/null || true
    ip netns del $POD 2>/dev/null || true
    ip netns del $NODE 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add $NODE
ip netns add $POD
ip -n $NODE link add veth0 type veth peer name eth0 netns $POD
ip -n $NODE addr add $NODE4/30 dev veth0
ip -n $POD addr add $POD4/30 dev eth0
ip -n $NODE link set lo up
ip -n $NODE link set veth0 up
ip -n $POD link set eth0 up
# the node drops the datagrams without answering (no ICMP port unreachable back into the pod)
ip netns exec $NODE nft -f - <<EOF
table inet scale {
    chain input {
        type filter hook input priority 0;
        udp dport 1000-65000 drop
    }
}
EOF

cat >"$WORK/gen.py" <<EOF
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("$POD4", 0))
while True:
    t = time.time()
    for port in range(1000, 1000 + $FLOWS):
        s.sendto(b"x" * 16, ("$NODE4", port))
    time.sleep(max(0.0, 1.0 - (time.time() - t)))
EOF
ip netns exec $POD python3 "$WORK/gen.py" &
GEN_PID=$!

config() { # profile
    local pipelines
    case $1 in
        drain) pipelines="metrics: {receivers: [flows], exporters: [prometheus]}" ;;
        records) pipelines="metrics: {receivers: [flows], exporters: [prometheus]}
    flows: {receivers: [flows], exporters: [flowlog]}" ;;
    esac
    cat <<EOF
receivers:
  flows:
    collection_interval: ${INTERVAL}s
    interfaces: [veth0]
    include_uplink: false
    ports: {collapse: false}
exporters:
  prometheus: {endpoint: 127.0.0.1:19094}
  flowlog: {directory: $WORK/flowlog, rotation: {max_age: 30s}}
service:
  pipelines:
    $pipelines
  telemetry: {metrics: {address: 127.0.0.1:$OWN_PORT}}
EOF
}

own() { ip netns exec $NODE curl -fs "127.0.0.1:$OWN_PORT/metrics"; }
drained() { own | awk '/^fovea_flows_drained_total/ {print $2}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$FOVEA_PID/stat"; }

echo "flows scale: $FLOWS flows, ${INTERVAL}s collections, $DRAINS drains per profile, $(nproc) CPUs, kernel $(uname -r)" >&2
echo
echo "| profile | flows per drain | agent CPU per drain | CPU share of one core | RSS | of which anonymous | peak RSS |"
echo "|---|---|---|---|---|---|---|"
for p in $PROFILES; do
    config "$p" >"$WORK/$p.yaml"
    ip netns exec $NODE "$FOVEA" run --config "$WORK/$p.yaml" >"$WORK/$p.out" 2>"$WORK/$p.err" &
    FOVEA_PID=$!
    for _ in $(seq 100); do own >/dev/null 2>&1 && break; sleep 0.1; done
    sleep $((INTERVAL * 2 + 1)) # warm up: two full drains
    D0=$(drained); T0=$(cpu_ticks)
    sleep $((INTERVAL * DRAINS))
    D1=$(drained); T1=$(cpu_ticks)
    RSS=$(awk '/^VmRSS/ {print $2}' "/proc/$FOVEA_PID/status")
    HWM=$(awk '/^VmHWM/ {print $2}' "/proc/$FOVEA_PID/status")
    ANON=$(awk '/^RssAnon/ {print $2}' "/proc/$FOVEA_PID/status")
    kill "$FOVEA_PID"; wait "$FOVEA_PID" || true; FOVEA_PID=
    python3 - "$p" "$D0" "$D1" "$T0" "$T1" "$(getconf CLK_TCK)" "$DRAINS" "$INTERVAL" "$RSS" "$HWM" "$ANON" <<'EOF'
import sys
p, d0, d1, t0, t1, hz, drains, interval, rss, hwm, anon = sys.argv[1:]
flows = (float(d1) - float(d0)) / int(drains)
cpu = (int(t1) - int(t0)) / int(hz) / int(drains)
print(f"| {p} | {flows:.0f} | {cpu * 1000:.0f} ms | {100 * cpu / int(interval):.1f} % | {int(rss) / 1024:.1f} MiB | {int(anon) / 1024:.1f} MiB | {int(hwm) / 1024:.1f} MiB |")
EOF
done
