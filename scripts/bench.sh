#!/usr/bin/env bash
# One load benchmark: a release gateway on loopback in a fresh directory, N agents imported,
# agentgw-load run against it with the arguments given; then the gateway's CPU seconds
# (utime+stime from /proc/PID/stat) and peak RSS (VmHWM) for the run, and its RSS at the end;
# the generator's own CPU time too.
#
#   scripts/bench.sh [agentgw-load args…]        e.g. scripts/bench.sh --rate 100 --duration 60
#
# Environment: STORE_URL (a store other than a fresh SQLite file: an empty PostgreSQL database,
# postgres://…; the PostgreSQL server's own CPU is then printed too), AGENTS (default 2000), STAY=1 (after_login = "stay"),
# TLS=1 (the calls over SIP over TLS, on PORT+1, with a certificate made for the run), SRTP=SUITE
# (the calls offer SRTP of that suite; with TLS=1), DIGEST=N (no trusted network: every call is
# challenged and answers as one of N phone accounts made for the run, in turn), HASH_MEMORY_KIB and
# HASH_ITERATIONS (argon2id), MEDIA_RT ([media] realtime_priority), MAX_CPS ([sip] max_calls_per_second), OVERLOAD=true ([sip] refuse_when_overloaded), PORT (default 5090), EXTRA (more TOML for the gateway), BENCH_LOG
# (where the gateway's log is copied at the end; default /tmp/agentgw-bench.log), BIN (a directory
# holding other agentgw and agentgw-load binaries, e.g. a copy of a previous build, for a
# before/after pair in one session; default: build target/release).
#
# NETNS=1 (root; needs ip and ethtool) runs the generator in its own network namespace, joined
# to the gateway by a veth pair with threaded NAPI, instead of over loopback: as with a phone
# on another machine, each side's kernel receive work then runs in that link end's own NAPI
# thread ("napi/gwPID…", "napi/phPID…"), not inside the other side's send() as on loopback,
# and the script prints both threads' CPU: the gateway's end is its share (a NIC's receive
# softirq), the other end is the phones'. One NETNS run at a time (fixed subnet 10.203.0.0/24).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  cargo build --release --bins -q
  bin=$PWD/target/release
fi
dir=$(mktemp -d)
ns=""
trap 'kill $gw 2>/dev/null || true; wait $gw 2>/dev/null || true; cp "$dir/gw.log" "${BENCH_LOG:-/tmp/agentgw-bench.log}" 2>/dev/null; rm -rf "$dir"; [ -z "$ns" ] || ip netns del "$ns"' EXIT
port=${PORT:-5090}
host=127.0.0.1
in_ns=()
if [ -n "${NETNS:-}" ]; then
  ns=agentgw-bench-$$ gwend=gw$$ phoneend=ph$$
  ip netns add "$ns"
  ip link add "$gwend" type veth peer name "$phoneend" netns "$ns"
  ip addr add 10.203.0.1/24 dev "$gwend"
  ip link set "$gwend" up
  ip -n "$ns" addr add 10.203.0.2/24 dev "$phoneend"
  ip -n "$ns" link set "$phoneend" up
  ip -n "$ns" link set lo up
  # GRO on puts veth in NAPI mode (TSO off: veth hands a packet to NAPI only if its sender
  # cannot segment), and threaded NAPI gives each end's receive work its own thread.
  ethtool -K "$gwend" gro on tso off >/dev/null
  ip netns exec "$ns" ethtool -K "$phoneend" gro on tso off >/dev/null
  echo 1 > "/sys/class/net/$gwend/threaded"
  ip netns exec "$ns" sh -c "echo 1 > /sys/class/net/$phoneend/threaded"
  host=10.203.0.1
  in_ns=(ip netns exec "$ns")
fi
agents=${AGENTS:-2000}
first=100000
last=$((first + agents - 1))
cat > "$dir/gw.toml" <<EOF
[sip]
listen = ["udp:$host:$port", "tcp:$host:$port"${TLS:+, \"tls:$host:$((port + 1))\"}]
${TLS:+tls_certificate = \"$dir/gw.pem\"}
${TLS:+tls_private_key = \"$dir/gw.key\"}
${DIGEST:+trusted_networks = []}
max_calls = 20000
max_calls_per_second = ${MAX_CPS:-0}
${OVERLOAD:+refuse_when_overloaded = $OVERLOAD}
max_call_secs = 3600
[media]
rtp_ports = "20000-60000"
realtime_priority = ${MEDIA_RT:-0}
[store]
url = "${STORE_URL:-sqlite://$dir/agentgw.db}"
${STORE_URL:+pepper_file = \"$dir/pepper\"}
hash_memory_kib = ${HASH_MEMORY_KIB:-4096}
hash_iterations = ${HASH_ITERATIONS:-1}
[admin]
listen = "127.0.0.1:0"
[login]
already_logged_on = "replace"
station_attempts_per_min = 1000
source_attempts_per_min = 10000000
after_login = "${STAY:+stay}${STAY:-hangup}"
${DIGEST:+same_station = \"replace\"}
[log]
filter = "warn"
${EXTRA:-}
EOF
sed -i 's/after_login = "stay1"/after_login = "stay"/' "$dir/gw.toml"
# A store of its own needs its own pepper file (made once, shared by the nodes).
[ -z "${STORE_URL:-}" ] || od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$dir/pepper"
"$bin/agentgw-load" x:1 --agents "$first-$last" --passcode 2468 --print-agents-csv > "$dir/agents.csv"
"$bin/agentgw" --config "$dir/gw.toml" agent import "$dir/agents.csv" >/dev/null 2>&1
load_args=()
target=$host:$port
if [ -n "${TLS:-}" ]; then
  scripts/test-certificate.sh "$dir" gw "$host"
  target=$host:$((port + 1))
  load_args+=(--transport tls --tls-ca "$dir/gw-ca.pem")
fi
[ -z "${SRTP:-}" ] || load_args+=(--srtp "$SRTP")
if [ -n "${DIGEST:-}" ]; then
  for i in $(seq 1 "$DIGEST"); do
    echo load-phone-password | "$bin/agentgw" --config "$dir/gw.toml" phone add "load$i" --password-stdin >/dev/null
  done
  load_args+=(--phone-accounts "load:$DIGEST")
fi
# Two descriptors per call in the generator (SIP and RTP), one in the gateway: say so when the
# limit cannot be raised (a container's hard limit), as calls past it fail in the generator.
ulimit -n 65536 2>/dev/null || echo "warning: open files stay at $(ulimit -n) (hard limit $(ulimit -Hn)): the generator fails calls past about $(( $(ulimit -n) / 2 )) at once" >&2
"$bin/agentgw" --config "$dir/gw.toml" serve > "$dir/gw.log" 2>&1 &
gw=$!
sleep 1
cpu() { awk '{print ($14 + $15) / '"$(getconf CLK_TCK)"'}' "/proc/$gw/stat"; }
# CPU seconds of the PostgreSQL server's processes (STORE_URL=postgres://… only).
pg_cpu() { for p in $(pgrep -x postgres); do cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null; done | awk -v hz="$(getconf CLK_TCK)" '{c += $1 + $2} END {print c / hz}'; }
rss() { awk "/^$1:/ {print \$2}" "/proc/$gw/status"; }
# CPU seconds by thread kind (the thread name without its number): tokio-rt-worker,
# agentgw-media, agentgw-hash, sqlx-sqlite-wor…
# Also their context switches (voluntary + involuntary: each sleep, wake-up or preemption).
threads() {
  for t in /proc/$gw/task/*; do
    echo "$(sed 's/-[0-9]*$//' "$t/comm" 2>/dev/null) $(cut -d' ' -f14,15 "$t/stat" 2>/dev/null) $(awk '/ctxt_switches/ {n += $2} END {print n}' "$t/status" 2>/dev/null)"
  done | awk -v hz="$(getconf CLK_TCK)" 'NF == 4 {c[$1] += ($2 + $3) / hz; x[$1] += $4} END {for (k in c) print k, c[k], x[k]}' | sort
}
# CPU seconds of the NAPI threads of both link ends (NETNS=1 only).
napi() {
  [ -n "$ns" ] || return 0
  for p in $(pgrep "^napi/(gw|ph)$$"); do
    echo "$(cut -c1-7 "/proc/$p/comm") $(cut -d' ' -f14,15 "/proc/$p/stat")"
  done | awk -v hz="$(getconf CLK_TCK)" '{print $1, ($2 + $3) / hz}' | sort
}
napi > "$dir/napi0"
cpu0=$(cpu)
pg0=$(pg_cpu)
threads > "$dir/threads0"
rss0=$(rss VmRSS)
echo "gateway pid $gw, RSS before: $rss0 KiB; agentgw-load $*" >&2
set +e
TIMEFORMAT="generator CPU: %U s user + %S s sys"
time "${in_ns[@]}" "$bin/agentgw-load" "$target" --agents "$first-$last" --passcode 2468 "${load_args[@]}" "$@"
status=$?
set -e
cpu1=$(cpu)
echo "gateway CPU: $(awk "BEGIN {print $cpu1 - $cpu0}") s; RSS before $rss0 KiB, peak $(rss VmHWM) KiB, after $(rss VmRSS) KiB"
case "${STORE_URL:-}" in postgres*) echo "PostgreSQL server CPU: $(awk "BEGIN {print $(pg_cpu) - $pg0}") s (all its processes, backends of this gateway and others)";; esac
threads > "$dir/threads1"
echo "gateway CPU by thread: $(join -a 2 "$dir/threads0" "$dir/threads1" | awk 'NF == 3 {$5 = $3; $4 = $2; $2 = 0; $3 = 0} {printf "%s %.2f s (%d switches), ", $1, $4 - $2, $5 - $3}' | sed 's/, $//')"
if [ -n "$ns" ]; then
  napi > "$dir/napi1"
  echo "kernel receive work (NAPI threads): $(join "$dir/napi0" "$dir/napi1" | awk '{printf "%s %.2f s, ", ($1 == "napi/gw" ? "gateway end" : "phones end"), $3 - $2}' | sed 's/, $//')"
fi
grep -E "WARN|ERROR" "$dir/gw.log" | sort | uniq -c | sort -rn | head -5 >&2 || true
exit $status
