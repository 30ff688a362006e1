#!/usr/bin/env bash
# A real phone over everything encrypted: baresip (Debian's, its own libre SIP/TLS/SRTP) calls
# a release agentgw over SIP over TLS with SRTP required, authenticates with Digest as a phone
# account, keys 1001# 1234# as RFC 4733 events inside SRTP, and the agent is logged on at the
# phone account's station. Needs baresip, tmux and openssl; runs on loopback in a scratch
# directory, and prints the negotiated crypto suite and the session.
#
#   cargo build --release && scripts/baresip-tls-srtp.sh
#
# tests/interop.rs runs it against the debug build (BIN=…).
set -euo pipefail
for tool in baresip tmux openssl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install $tool)" >&2; exit 2; }
done
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release/agentgw}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 2; }
DIR=$(mktemp -d)
SESSION=agentgw-baresip-$$
cleanup() {
  tmux kill-session -t "$SESSION" 2>/dev/null || true
  [ -n "${GW:-}" ] && kill "$GW" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
cd "$DIR"

# A CA, and the gateway's certificate for 127.0.0.1.
"$HERE/test-certificate.sh" "$DIR" gw 127.0.0.1

cat > agentgw.toml <<EOF
[sip]
listen = ["udp:127.0.0.1:25070", "tls:127.0.0.1:25071"]
tls_certificate = "$DIR/gw.pem"
tls_private_key = "$DIR/gw.key"
trusted_networks = []
# libre 1.1 fails the call at any challenge that is not MD5.
digest_algorithms = ["MD5"]
[media]
srtp = "require"
[store]
url = "sqlite://$DIR/agentgw.db"
[admin]
listen = "127.0.0.1:28080"
EOF
echo "abcdefgh12345" | "$BIN" --config agentgw.toml phone add desk-7 --password-stdin >/dev/null
# The SIP messages in the log, to show the SDP negotiated.
RUST_LOG="info,rsipstack=warn,rsipstack::transport::stream=info" \
  "$BIN" --config agentgw.toml serve --demo > gw.log 2>&1 &
GW=$!
sleep 2

mkdir bs
python3 -c "
import wave
w = wave.open('$DIR/bs/silence.wav', 'wb')
w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000); w.writeframes(b'\0\0' * 8000 * 60)
"
cat > bs/config <<EOF
sip_listen 127.0.0.1:25072
sip_cafile $DIR/gw-ca.pem
audio_player aufile,$DIR/bs/heard.wav
audio_source aufile,$DIR/bs/silence.wav
audio_alert aufile,$DIR/bs/alert.wav
ausrc_srate 8000
auplay_srate 8000
module_path /usr/lib/baresip/modules
module stdio.so
module g711.so
module aufile.so
module srtp.so
module_tmp uuid.so
module_tmp account.so
module_app menu.so
EOF
echo '<sip:desk-7@127.0.0.1;transport=tls>;auth_user=desk-7;auth_pass=abcdefgh12345;mediaenc=srtp-mand;regint=0;audio_codecs=pcmu' > bs/accounts

tmux new-session -d -s "$SESSION" -x 200 -y 50 "baresip -f $DIR/bs > $DIR/baresip.log 2>&1"
sleep 3
tmux send-keys -t "$SESSION" "/dial sip:login@127.0.0.1:25071" Enter
sleep 5
tmux send-keys -t "$SESSION" "1001#"
sleep 3
tmux send-keys -t "$SESSION" "1234#"
sleep 8

echo "--- negotiated (agentgw's SDP answer):"
grep -a -o 'm=audio [0-9]* RTP/[A-Z]*\|a=crypto:[0-9]* [A-Z0-9_]*' gw.log | sort -u || true
echo "--- call:"
grep -a 'call ended' gw.log | sed 's/.*agentgw::call: //' || true
echo "--- sessions:"
"$BIN" --config agentgw.toml session list
"$BIN" --config agentgw.toml session list | grep -q '^1001 .*desk-7' \
  && echo "OK: baresip logged agent 1001 in over TLS + SRTP as phone account desk-7" \
  || { echo "FAILED; baresip said:"; tail -c 2000 baresip.log; exit 1; }
