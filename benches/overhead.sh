#!/usr/bin/env bash
# Overhead of fovea's receivers on the packet path, measured on this machine.
#
# Two "pods" (network namespaces) are joined to the host by veth pairs, the way a CNI builds
# them, and the host routes between them: every packet crosses two host veths, so with fovea
# running it passes fovea's TC programs on both (the node-local pod-to-pod path). iperf3 runs
# from pod A to pod B:
#   * TCP throughput (iperf3 -c, one stream; client pinned to CPU 0, server to CPU 1 with -A 0,1),
#   * small-packet UDP packets/s (iperf3 -u -l 64 -b 0, received packets per second),
# first without fovea, then with `fovea run` on each profile, interleaved round by round (none,
# profile 1, profile 2, ..., none, ...), so every profile meets the same machine noise. Profiles:
#   default  the embedded default config: packetforward on every interface, dropreason,
#            tcpretrans, linuxutil, prometheus + debug exporters
#   flows    default + the flows receiver on the pods' interfaces, its records written by the
#            flowlog exporter (Parquet) into a temp dir
# (packetforward and flows are kept to the bench's own veths: the machine may be shared.)
#   flowsdns flows + the dns receiver on the same interfaces (the DNS feature of the same
#            programs: what it costs on traffic that is not DNS)
#   nodrop   default without dropreason (what dropreason costs)
#   flowslean  flows, with the pods' interface totals counted by the flows programs
#            (forward_metrics: pods, packetforward's exclude_pod_interfaces) instead of
#            packetforward's second program on the same hooks: what the shipped configs do
#   flowsnolat flowslean without the TCP latency hooks (latency: false)
#   parseonly the dns receiver alone on the bench's veths: the same datapath programs, which then
#            parse every packet and compare its ports (no flow table); with WORKLOADS=udp its stats
#            phase gives the parse-only floor to hold the flows program's figures against
#   <file>   any config file (it must have a `prometheus` exporter; its endpoint is moved)
#   <profile>@<binary>  that profile run by another fovea binary (e.g. a build before a change)
# It prints medians, the ratio to "none" and each profile's spread (min..max over rounds). Then,
# in a separate phase with kernel.bpf_stats_enabled=1 (which itself costs ~20-70 ns per invocation,
# ~70 ns on this VM, and adds ~55-60 ns to every figure it records: benches/flows_kernel.rs
# measures both with a program that does nothing,
# so it is kept out of the throughput rounds) on the last profile, the kernel ns per invocation of
# every fovea program, the agent's CPU time per million packets it counted, and its RSS at idle.
#
# Needs root, iperf3, python3, curl and a release build (cargo build --release). Not run by cargo test.
# Usage: benches/overhead.sh            ROUNDS=5 SECONDS_PER_RUN=10 PROFILES=flows by default
#   PROFILES="default flows nodrop" ROUNDS=9 benches/overhead.sh
#   WORKLOADS="udp" benches/overhead.sh        only some workloads (default "tcp udp")
# The iperf3 server is started with a pid file and only that process is stopped at exit (never by
# name: `ip netns exec` does not isolate processes, other iperf3 on the machine are not ours).
set -euo pipefail

ROUNDS=${ROUNDS:-5}
SECS=${SECONDS_PER_RUN:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FOVEA=${FOVEA:-$ROOT/target/release/fovea}
WORK=$(mktemp -d /tmp/fovea-bench.XXXXXX)
NA=fvbench-a NB=fvbench-b
HA=fvbench-ha HB=fvbench-hb
A4=198.19.254.2 HA4=198.19.254.1 B4=198.19.254.6 HB4=198.19.254.5
PROM_PORT=${PROM_PORT:-19093} OWN_PORT=${OWN_PORT:-18888}
WORKLOADS=${WORKLOADS:-tcp udp}
PROFILES=${PROFILES:-flows}

[[ $(id -u) == 0 ]] || { echo "needs root" >&2; exit 1; }
for t in iperf3 python3 ip curl; do command -v $t >/dev/null || { echo "needs $t" >&2; exit 1; }; done
[[ -x $FOVEA ]] || { echo "build first: cargo build --release ($FOVEA missing)" >&2; exit 1; }

FORWARD_WAS=$(sysctl -n net.ipv4.ip_forward)
STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled)
FOVEA_PID=
IPERF_PIDFILE=$WORK/iperf3-server.pid
cleanup() {
    [[ -n $FOVEA_PID ]] && kill "$FOVEA_PID" 2>/dev/null && wait "$FOVEA_PID" 2>/dev/null || true
    # our server only (see the header)
    [[ -s $IPERF_PIDFILE ]] && kill "$(cat "$IPERF_PIDFILE")" 2>/dev/null || true
    ip link del $HA 2>/dev/null || true
    ip link del $HB 2>/dev/null || true
    ip netns del $NA 2>/dev/null || true
    ip netns del $NB 2>/dev/null || true
    sysctl -qw net.ipv4.ip_forward="$FORWARD_WAS" kernel.bpf_stats_enabled="$STATS_WAS"
    rm -rf "$WORK"
}
trap cleanup EXIT

pod() { # name host-if pod-addr host-addr
    ip netns add "$1"
    ip link add "$2" type veth peer name eth0 netns "$1"
    ip addr add "$4/30" dev "$2"
    ip link set "$2" up
    ip -n "$1" addr add "$3/30" dev eth0
    ip -n "$1" link set lo up
    ip -n "$1" link set eth0 up
    ip -n "$1" route add default via "$4"
}
pod $NA $HA $A4 $HA4
pod $NB $HB $B4 $HB4
sysctl -qw net.ipv4.ip_forward=1 kernel.bpf_stats_enabled=0
ip netns exec $NB iperf3 -s -D -I "$IPERF_PIDFILE" --logfile "$WORK/iperf3-server.log"
sleep 0.5

# Profiles: the default config, default + flows, default without dropreason. Every profile keeps
# the TC programs on the bench's own veths (the machine may be shared: other people's interfaces
# are not ours to attach to).
DEFAULT_CONFIG=$ROOT/config/default.yaml
cat >"$WORK/bench.yaml" <<EOF
receivers:
  packetforward: {interfaces: ['fvbench-h*']}
EOF
cat >"$WORK/flows.yaml" <<EOF
receivers:
  flows:
    collection_interval: 10s
    interfaces: ['fvbench-h*']
    include_uplink: false
exporters:
  flowlog:
    directory: $WORK/flowlog
service:
  pipelines:
    metrics/flows: {receivers: [flows], exporters: [prometheus]}
    flows: {receivers: [flows], exporters: [flowlog]}
EOF
cat >"$WORK/dns.yaml" <<EOF
receivers:
  dns:
    interfaces: ['fvbench-h*']
    include_uplink: false
service:
  pipelines:
    metrics/dns: {receivers: [dns], exporters: [prometheus]}
EOF
# flowslean: the pods' interface totals from the flows programs (forward_metrics: pods) instead
# of a second program per hook (packetforward's exclude_pod_interfaces, as config/*-context.yaml
# and the Helm chart with flows on); flowsnolat: also without the RTT/handshake hooks.
cat >"$WORK/lean.yaml" <<EOF
receivers:
  packetforward: {exclude_pod_interfaces: ['fvbench-h*']}
  flows: {forward_metrics: pods}
EOF
cat >"$WORK/nolat.yaml" <<EOF
receivers:
  flows: {latency: false}
EOF
cat >"$WORK/parseonly.yaml" <<EOF
receivers:
  dns: {interfaces: ['fvbench-h*'], include_uplink: false}
exporters:
  prometheus: {}
service:
  pipelines:
    metrics/dns: {receivers: [dns], exporters: [prometheus]}
EOF
cat >"$WORK/nodrop.yaml" <<'EOF'
service:
  pipelines:
    metrics: {receivers: [packetforward, tcpretrans, linuxutil]}
EOF
profile_args() { # profile -> fovea config arguments
    case $1 in
        default) echo "--config $DEFAULT_CONFIG --config $WORK/bench.yaml" ;;
        flows) echo "--config $DEFAULT_CONFIG --config $WORK/bench.yaml --config $WORK/flows.yaml" ;;
        flowsdns) echo "--config $DEFAULT_CONFIG --config $WORK/bench.yaml --config $WORK/flows.yaml --config $WORK/dns.yaml" ;;
        nodrop) echo "--config $DEFAULT_CONFIG --config $WORK/bench.yaml --config $WORK/nodrop.yaml" ;;
        flowslean) echo "--config $DEFAULT_CONFIG --config $WORK/bench.yaml --config $WORK/flows.yaml --config $WORK/lean.yaml" ;;
        parseonly) echo "--config $WORK/parseonly.yaml" ;;
        flowsnolat) echo "--config $DEFAULT_CONFIG --config $WORK/bench.yaml --config $WORK/flows.yaml --config $WORK/lean.yaml --config $WORK/nolat.yaml" ;;
        *) echo "--config $1" ;;
    esac
}

start_fovea() { # profile[@binary]
    local profile=${1%%@*} binary=$FOVEA
    [[ $1 == *@* ]] && binary=${1#*@}
    # shellcheck disable=SC2046 # the config arguments are meant to split into words
    "$binary" run $(profile_args "$profile") --set exporters.prometheus.endpoint=127.0.0.1:$PROM_PORT \
        --set service.telemetry.metrics.address=127.0.0.1:$OWN_PORT >"$WORK/fovea.out" 2>"$WORK/fovea.err" &
    FOVEA_PID=$!
    for _ in $(seq 100); do
        curl -fs "127.0.0.1:$OWN_PORT/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "fovea did not start:" >&2; cat "$WORK/fovea.err" >&2; exit 1
}
stop_fovea() { kill "$FOVEA_PID"; wait "$FOVEA_PID" || true; FOVEA_PID=; }

tcp() { # -> bits per second received
    ip netns exec $NA iperf3 -c $B4 -A 0,1 -t "$SECS" -J >"$WORK/tcp.json"
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"])' "$WORK/tcp.json"
}
udp() { # -> packets per second received
    ip netns exec $NA iperf3 -c $B4 -A 0,1 -u -l 64 -b 0 -t "$SECS" -J >"$WORK/udp.json"
    python3 - "$WORK/udp.json" "$SECS" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))["end"]["sum"]
print((s["packets"] - s["lost_packets"]) / s["seconds"])
EOF
}

echo "fovea overhead: $ROUNDS rounds x ${SECS}s per run, profiles: $PROFILES, kernel $(uname -r), $(nproc) CPUs" >&2
: >"$WORK/results"
for r in $(seq "$ROUNDS"); do
    echo "round $r/$ROUNDS" >&2
    for w in $WORKLOADS; do echo "none $w $($w)" >>"$WORK/results"; done
    for p in $PROFILES; do
        start_fovea "$p"
        sleep 1
        for w in $WORKLOADS; do echo "$(basename "${p%%@*}")${p#"${p%%@*}"} $w $($w)" >>"$WORK/results"; done
        stop_fovea
    done
done

# Kernel cost per program, agent CPU per packet: one more run of the last profile with BPF
# statistics on.
LAST=${PROFILES##* }
start_fovea "$LAST"
sleep 1
own() { curl -fs "127.0.0.1:$OWN_PORT/metrics"; }
prom() { curl -fs "127.0.0.1:$PROM_PORT/metrics"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$FOVEA_PID/stat"; }
sleep 15 # idle, after the first collections
RSS_KB=$(awk '/^VmRSS/ {print $2}' "/proc/$FOVEA_PID/status")
sysctl -qw kernel.bpf_stats_enabled=1
own >"$WORK/own0"
prom >"$WORK/prom0"
T0=$(cpu_ticks)
W0=$(date +%s.%N)
for w in $WORKLOADS; do $w >/dev/null; done
sleep 11 # one more collection so the counters include the whole flood
T1=$(cpu_ticks)
W1=$(date +%s.%N)
own >"$WORK/own1"
prom >"$WORK/prom1"
sysctl -qw kernel.bpf_stats_enabled=0
stop_fovea

python3 - "$WORK" "$RSS_KB" "$T0" "$T1" "$(getconf CLK_TCK)" "$W0" "$W1" "$LAST" <<'EOF'
import re, statistics, sys
work, rss_kb, t0, t1, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
wall = float(sys.argv[7]) - float(sys.argv[6])
runs = {}
for line in open(f"{work}/results"):
    who, kind, v = line.split()
    runs.setdefault((who, kind), []).append(float(v))

def series(path, name):
    out = {}
    for line in open(path):
        m = re.match(r'(\w+)\{(.*)\} (\S+)$', line.strip())
        if m and m.group(1) == name:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            out[(labels.get("receiver"), labels.get("program"))] = float(m.group(3))
    return out

print()
print("| workload | profile | without fovea (median) | with fovea (median) | ratio | spread without | spread with | rounds |")
print("|---|---|---|---|---|---|---|---|")
profiles = list(dict.fromkeys(who for (who, _) in runs if who != "none"))
for kind, unit, scale in (("tcp", "Gbit/s", 1e9), ("udp", "kpps (64 B)", 1e3)):
    if ("none", kind) not in runs:
        continue
    base = runs[("none", kind)]
    a = statistics.median(base)
    spread = lambda v: f"{min(v)/scale:.2f}..{max(v)/scale:.2f}"
    for who in profiles:
        if (who, kind) not in runs:
            continue
        with_ = runs[(who, kind)]
        b = statistics.median(with_)
        print(f"| {kind.upper()} {unit} | {who} | {a/scale:.2f} | {b/scale:.2f} | {b/a:.3f} | {spread(base)} | {spread(with_)} | {len(with_)} |")
for (who, kind), values in sorted(runs.items()):
    scale, unit = (1e9, "Gbit/s") if kind == "tcp" else (1e3, "kpps")
    print(f"  raw {who} {kind}: {[round(x / scale, 2) for x in values]} {unit}", file=sys.stderr)

t0s, t1s = series(f"{work}/own0", "fovea_ebpf_program_run_time_nanoseconds_total"), series(f"{work}/own1", "fovea_ebpf_program_run_time_nanoseconds_total")
c0s, c1s = series(f"{work}/own0", "fovea_ebpf_program_run_count_total"), series(f"{work}/own1", "fovea_ebpf_program_run_count_total")
print()
print("| program | invocations (flood phase) | kernel ns per invocation |")
print("|---|---|---|")
for key in sorted(c1s):
    runs_ = c1s[key] - c0s.get(key, 0)
    ns = (t1s[key] - t0s.get(key, 0)) / runs_ if runs_ else float("nan")
    print(f"| {key[0]}/{key[1]} | {int(runs_)} | {ns:.1f} |")

def fwd(path):
    total = 0.0
    for line in open(path):
        if line.startswith("network_forward_packets_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total
packets = fwd(f"{work}/prom1") - fwd(f"{work}/prom0")
cpu_s = (t1 - t0) / hz
print()
print("| agent | value |")
print("|---|---|")
print(f"| packets counted during the flood phase | {int(packets)} |")
print(f"| agent CPU (user+sys) during the flood phase | {cpu_s:.2f} s in {wall:.0f} s ({100 * cpu_s / wall:.2f} % of one core) |")
print(f"| agent CPU per million packets counted | {cpu_s / (packets / 1e6) * 1e3:.3f} ms |" if packets else "| agent CPU per million packets | n/a |")
print(f"| agent RSS at idle ({sys.argv[8]} profile) | {rss_kb / 1024:.1f} MiB |")
EOF
