#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo-fuzz) of everything a peer controls, on the
# stable toolchain: each target in fuzz/fuzz_targets runs SECS seconds (default 600), starting
# from the committed seeds (fuzz/seeds/TARGET) and the corpus grown by earlier runs
# (fuzz/corpus/TARGET, not committed). A crash stops the run and leaves its input in
# fuzz/artifacts/TARGET. Prints each target's executions and coverage at the end.
#
#   cargo install cargo-fuzz --locked     # once
#   scripts/fuzz.sh [SECS [TARGET…]]
#
# No sanitizer (`--sanitizer none`): AddressSanitizer needs a nightly compiler, and the code
# fuzzed has no unsafe; overflow and debug assertions are on (cargo fuzz's default build).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(sip_intake sdp rtp_keys info_body srtp)
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: $secs s" >&2
  cargo fuzz run --sanitizer none "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -print_final_stats=1 2> "/tmp/agentgw-fuzz-$t.log" || {
      tail -40 "/tmp/agentgw-fuzz-$t.log" >&2
      echo "$t: CRASH (input in fuzz/artifacts/$t)" >&2
      exit 1
    }
  grep -E "^stat::(number_of_executed_units|peak_rss_mb|new_units_added)|DONE|cov:" "/tmp/agentgw-fuzz-$t.log" | tail -4
done
