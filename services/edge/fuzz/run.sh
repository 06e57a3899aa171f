#!/usr/bin/env bash
# A short fuzz run of every target (60 s each by default) with cargo fuzz
# on the nightly toolchain. New inputs that reach new code are kept in
# corpus/<target>/; commit the interesting ones: the test suite replays the
# corpus on stable Rust (gateway_edge::fuzzing), so CI catches regressions.
#
#   services/edge/fuzz/run.sh              # every target, 60 s each
#   SECONDS_PER_TARGET=600 services/edge/fuzz/run.sh jwt spool
#
# Needs: rustup's nightly toolchain and cargo-fuzz (cargo install cargo-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${SECONDS_PER_TARGET:-60}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
for target in "${targets[@]}"; do
  echo "==> $target ($seconds s)"
  cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1
done
