#!/usr/bin/env bash
# Builds and runs the mapping engine's fuzz target for a while (default 600 s):
#   bash fuzz/run.sh [seconds] [extra libFuzzer flags...]
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain RUSTC_BOOTSTRAP=1 lets
# cargo-fuzz pass its nightly-only sanitizer flags. Crashes land in fuzz/artifacts/mapping/;
# the corpus grows in a copy under the cache, so the checked-in seeds stay small.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
shift || true

export HUB_CACHE_DIR=${HUB_CACHE_DIR:-$HOME/.cache/automatrix-hub}
export CARGO_TARGET_DIR=${HUB_FUZZ_TARGET_DIR:-$HUB_CACHE_DIR/fuzz-target}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
  exit 2
fi

corpus="$HUB_CACHE_DIR/fuzz-corpus/mapping"
mkdir -p "$corpus"
cp -n corpus/mapping/* "$corpus"/

cargo fuzz build mapping
# -rss_limit_mb: a payload is at most the ingest body limit (1 MiB); anything near 2 GiB is a bug.
cargo fuzz run mapping "$corpus" -- \
  -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 "$@"
