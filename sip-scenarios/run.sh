#!/usr/bin/env bash
# Runs every SIPp scenario of this directory against a gateway and fails if any fails.
#   usage: sip-scenarios/run.sh HOST:PORT
# The gateway needs the demo agents, agents 1001-1003 not logged on, and answer_after_ms >= 500
# (see gateway.toml). Needs sipp (apt-get install -y sip-tester) and python3 for the pcaps.
set -euo pipefail
target=${1:?usage: run.sh HOST:PORT}
here=$(cd "$(dirname "$0")" && pwd)
command -v sipp >/dev/null || { echo "run.sh: sipp is missing: apt-get install -y sip-tester" >&2; exit 2; }

# The DTMF pcaps are generated (and committed); regenerate them if the generator changed.
for spec in "login_1001.pcap 1001#1234#" "wrong_passcode.pcap 1001#0000#1001#0000#1001#0000#" \
            "inband_1003.pcap 1003#3456# --inband"; do
  set -- $spec
  [ "$here/$1" -nt "$here/make_dtmf_pcap.py" ] || python3 "$here/make_dtmf_pcap.py" "$2" "$here/$1" "${@:3}"
done

logs=$(mktemp -d)
failed=0
port=$((15060 + RANDOM % 1000 * 2))
for scenario in options cancel login_success wrong_passcode login_info login_inband; do
  port=$((port + 2))
  if (cd "$here" && timeout 60 sipp "$target" -sf "$scenario.xml" -m 1 -l 1 -i 127.0.0.1 -p "$port" \
        -mp $((port + 10000)) -timeout 45s -timeout_error -nostdin -trace_err -error_file "$logs/$scenario.err" \
        >"$logs/$scenario.out" 2>&1); then
    echo "PASS $scenario"
  else
    echo "FAIL $scenario (sipp exit $?)"
    tail -n 30 "$logs/$scenario.err" "$logs/$scenario.out" 2>/dev/null | sed 's/^/    /'
    failed=1
  fi
done
rm -rf "$logs"
exit $failed
