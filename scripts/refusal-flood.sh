#!/usr/bin/env bash
# What refused calls cost: a release gateway on loopback with max_calls = 100 (MAX_CALLS=N), flooded with
# new INVITEs over UDP from one address that never ACKs (a forged source), RATE a second for
# SECS seconds; the first 100 are answered, the rest refused with 503. Prints the gateway's
# RSS and CPU seconds (/proc) at the start, at the end of the flood and 35 s later (past the
# 32 s a SIP stack keeps a finished transaction), and what the forged address received.
#
#   scripts/refusal-flood.sh [RATE [SECS]]     default 4000 a second for 10 s
#
# METHOD=OPTIONS floods with OPTIONS (keepalives, each answered 200) instead; SOURCES=N sends
# from N loopback addresses in turn (127.0.0.2, …) instead of one. IN_DIALOG=1 places one call
# and floods its dialog with re-INVITEs that are never ACKed instead (METHOD=INFO: INFOs).
# EARLY=1 places RATE calls that are never ACKed (max_calls = RATE) and sends SECS INFOs in
# each before the ACK, which wait for it (scripts/early-requests.py). BURST=1 sends RATE new
# INVITEs at once and counts those answered without a retransmission (scripts/invite-burst.py;
# max_calls = RATE); UDP_RCVBUF=KIB sets [sip] udp_receive_buffer_kib.
# BIN: a directory holding another agentgw build (default: build target/release).
# PORT: default 5095. Needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  cargo build --release --bins -q
  bin=$PWD/target/release
fi
rate=${1:-4000} secs=${2:-10} port=${PORT:-5095}
if [ -n "${EARLY:-}${BURST:-}" ]; then MAX_CALLS=$rate; fi
d=$(mktemp -d)
trap 'kill $gw 2>/dev/null || true; wait $gw 2>/dev/null || true; rm -rf "$d"' EXIT
cat > "$d/gw.toml" <<T
[sip]
listen = ["udp:127.0.0.1:$port"]
max_calls = ${MAX_CALLS:-100}
${UDP_RCVBUF:+udp_receive_buffer_kib = $UDP_RCVBUF}
[media]
rtp_ports = "30000-40000"
[store]
url = "sqlite://$d/agentgw.db"
[admin]
listen = "127.0.0.1:0"
[log]
filter = "${LOG:-error}"
T
"$bin/agentgw" --config "$d/gw.toml" serve > "${GWLOG:-$d/gw.log}" 2>&1 &
gw=$!
sleep 1.5
state() {
  awk -v cpu="$(awk '{print ($14+$15)/100}' /proc/$gw/stat)" \
    '/VmRSS/{r=$2/1024} /VmHWM/{h=$2/1024} END{printf "RSS %.0f MB, peak %.0f MB, CPU %.2f s\n", r, h, cpu}' /proc/$gw/status
}
echo "start:            $(state)"
if [ -n "${BURST:-}" ]; then
  python3 scripts/invite-burst.py 127.0.0.1 "$port" "$rate" 2
  echo "after:            $(state)"
  exit 0
elif [ -n "${EARLY:-}" ]; then
  FLOOD_DONE=$d/done python3 scripts/early-requests.py 127.0.0.1 "$port" "$rate" "$secs" 35 &
  flood=$!
  while [ ! -e "$d/done" ] && kill -0 $flood 2>/dev/null; do sleep 0.2; done
else
  python3 "scripts/$([ -n "${IN_DIALOG:-}" ] && echo reinvite || echo invite)-flood.py" 127.0.0.1 "$port" "$rate" "$secs" 35 &
  flood=$!
  sleep "$secs"
fi
echo "end of the flood: $(state)"
wait $flood
echo "35 s later:       $(state)"
