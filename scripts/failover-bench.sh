#!/usr/bin/env bash
# Failover under load: two release gateway nodes on one PostgreSQL database, Debian's Kamailio
# with the shipped deploy/kamailio/kamailio.cfg in front (probing every PING_INTERVAL s,
# failover after FR_TIMER ms), and agentgw-load through Kamailio with the arguments given.
# KILL_AT=SECS kills node 2 (SIGKILL) that far into the run; DRAIN_AT=SECS stops it with
# SIGTERM instead (it drains). The load tool's summary then lists the seconds in which a call
# failed or took over 1 s to be answered.
#
#   STORE_URL=postgres://agentgw:agentgw@127.0.0.1:5432/EMPTY_DB KILL_AT=15 \
#     scripts/failover-bench.sh --rate 50 --duration 40 --type-ahead --no-audio --call-timeout 10
#
# Environment: STORE_URL (required: an empty PostgreSQL database), AGENTS (default 2000),
# PORT (Kamailio's, default 5090; the nodes take the next two), PING_INTERVAL (default 5, as
# shipped), FR_TIMER (ms, default 2000, as shipped), BIN (a directory holding agentgw and
# agentgw-load; default: build target/release).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${STORE_URL:?STORE_URL=postgres://… of an empty database}"
if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  cargo build --release --bins -q
  bin=$PWD/target/release
fi
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
port=${PORT:-5090}
agents=${AGENTS:-2000}
first=100000
last=$((first + agents - 1))
od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$dir/pepper"
for n in 1 2; do
  cat > "$dir/gw$n.toml" <<EOF
[sip]
listen = ["udp:127.0.0.1:$((port + n))"]
max_calls = 20000
[media]
rtp_ports = "$((20000 + (n - 1) * 20000))-$((39999 + (n - 1) * 20000))"
[store]
url = "$STORE_URL"
pepper_file = "$dir/pepper"
hash_memory_kib = 4096
hash_iterations = 1
[admin]
listen = "127.0.0.1:0"
[gateway]
node_id = "gw$n"
drain_secs = 10
[login]
already_logged_on = "replace"
station_attempts_per_min = 1000
source_attempts_per_min = 10000000
[log]
filter = "warn"
EOF
  echo "1 sip:127.0.0.1:$((port + n))" >> "$dir/dispatcher.list"
done
"$bin/agentgw-load" x:1 --agents "$first-$last" --passcode 2468 --print-agents-csv > "$dir/agents.csv"
"$bin/agentgw" --config "$dir/gw1.toml" agent import "$dir/agents.csv" >/dev/null 2>&1
ulimit -n 65536 2>/dev/null || true
for n in 1 2; do
  STATE_DIRECTORY="$dir" "$bin/agentgw" --config "$dir/gw$n.toml" serve > "$dir/gw$n.log" 2>&1 &
  pids+=($!)
done
node2=${pids[1]}
/usr/sbin/kamailio -f deploy/kamailio/kamailio.cfg -DD -E -Y "$dir" -P "$dir/kamailio.pid" \
  -A "LISTEN=udp:127.0.0.1:$port" -A "DISPATCHER_LIST=\"$dir/dispatcher.list\"" \
  -A "PING_INTERVAL=${PING_INTERVAL:-5}" -A "FR_TIMER=${FR_TIMER:-2000}" \
  -A "CTL_SOCKET=\"unix:$dir/ctl\"" -A "RPC_FIFO=\"$dir/rpc.fifo\"" 2> "$dir/kamailio.log" &
pids+=($!)
sleep 2
if [ -n "${KILL_AT:-}" ]; then
  (sleep "$KILL_AT"; kill -KILL "$node2"; echo "node gw2 killed (SIGKILL) at ${KILL_AT} s" >&2) &
elif [ -n "${DRAIN_AT:-}" ]; then
  (sleep "$DRAIN_AT"; kill -TERM "$node2"; echo "node gw2 stopped (SIGTERM, draining) at ${DRAIN_AT} s" >&2) &
fi
set +e
"$bin/agentgw-load" "127.0.0.1:$port" --agents "$first-$last" --passcode 2468 "$@"
status=$?
set -e
grep -E "agentgw node|no agentgw node" "$dir/kamailio.log" | sed 's/^.*\(agentgw node\)/\1/' | sort | uniq -c >&2 || true
exit $status
