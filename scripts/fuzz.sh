#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a while (libFuzzer through cargo-fuzz, nightly).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Defaults: 30 s per target, every target. New inputs go to fuzz/corpus/<target> (ignored by
# git); the seeds in fuzz/seeds/<target> are read, never written. A crash, a hang (an input
# taking over 10 s) or an input allocating over 2 GiB fails the run, and libFuzzer writes the
# input to fuzz/artifacts/<target>/. Installs cargo-fuzz when missing. Prints one line per
# target: the inputs run and whether it passed.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
shift || true
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
echo "== building the fuzz targets"
cargo +nightly fuzz build -s none
failed=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log="$(mktemp)"
  if cargo +nightly fuzz run -s none "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed=1
    tail -40 "$log" >&2
  fi
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
  echo "fuzz $t: $runs inputs in ${secs}s: $status"
  rm -f "$log"
done
exit "$failed"
