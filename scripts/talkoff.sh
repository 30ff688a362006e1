#!/usr/bin/env bash
# Talk-off test of the in-band DTMF detector: synthesizes well over 10 minutes of speech with
# espeak-ng (many voices, variants, speeds and texts), resamples it to 8 kHz with sox, and
# counts the keys the detector wrongly finds in it after a G.711 round trip. Target: zero.
#   usage: scripts/talkoff.sh [OUT_DIR]      (needs espeak-ng and sox)
# Nothing generated is committed; the count goes to BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
mkdir -p "$out"
command -v espeak-ng >/dev/null && command -v sox >/dev/null || {
  echo "talkoff.sh needs espeak-ng and sox: apt-get install -y espeak-ng sox" >&2; exit 2; }

# Texts: this project's own prose (README and docs/, design notes in the sources) and number strings,
# which are the hardest for a DTMF detector (digits spoken as words).
texts=$(mktemp)
{
  sed -e 's/[`|#*_<>\[\]()]/ /g' README.md docs/*.md
  grep -h '^//[!/]' src/*.rs src/*/*.rs src/*/*/*.rs | sed 's#^//[!/]##'
  for i in $(seq 1 60); do echo "Agent $((RANDOM)) at extension $((RANDOM % 9000 + 1000)), call back on $((RANDOM))$((RANDOM)). "; done
} | tr -s ' \n' ' ' | fold -s -w 900 > "$texts"

voices=(en-us en en-gb-scotland en-029 de fr es it nl pt pl sv ru)
variants=(m1 m3 m5 m7 f1 f2 f3 f4 croak klatt klatt2 whisper)
n=0
while IFS= read -r chunk; do
  voice=${voices[$((n % ${#voices[@]}))]}
  variant=${variants[$((n % ${#variants[@]}))]}
  speed=$((120 + (n * 37) % 110))
  pitch=$((20 + (n * 23) % 70))
  espeak-ng -v "$voice+$variant" -s "$speed" -p "$pitch" -w "$out/raw-$n.wav" "$chunk" 2>/dev/null || true
  if [ -s "$out/raw-$n.wav" ]; then
    sox "$out/raw-$n.wav" -r 8000 -c 1 -b 16 -e signed-integer "$out/speech-$n.wav"
  fi
  rm -f "$out/raw-$n.wav"
  n=$((n + 1))
done < "$texts"
rm -f "$texts"
cargo run --release --quiet --example talkoff -- "$out"/speech-*.wav
