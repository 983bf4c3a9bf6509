#!/usr/bin/env bash
# The fuzzing suite (fuzz/, cargo-fuzz on the nightly toolchain; see README.md, "Fuzzing").
#
#   scripts/fuzz.sh smoke              build, then run every target for a bounded time (CI, test.sh)
#   scripts/fuzz.sh long HOURS [T...]  run every target (or the ones named) HOURS hours each, in turn
#   scripts/fuzz.sh run TARGET SECONDS one target
#   scripts/fuzz.sh build              build the targets only
#
# Crashes fail the run; libFuzzer writes the input to fuzz/artifacts/TARGET/ (reproduce with
# `cd fuzz && cargo +nightly fuzz run -s none TARGET artifacts/TARGET/crash-…`). The inputs found
# to cover new code are kept next to the build ($FUZZ_DIR/corpus), so each run starts where the
# previous one stopped; the committed seeds stay in fuzz/corpus/TARGET.
#
# Build output: $TDS_FUZZ_TARGET_DIR, else $CARGO_TARGET_DIR/fuzz (CI's cache), else fuzz/target.
# Without sanitizers (-s none): the code forbids unsafe, and the build is much faster.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

TARGETS=(telemetry_batch csv_import csr mqtt_session)
FUZZ_DIR="${TDS_FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/fuzz}}"
FUZZ_DIR="${FUZZ_DIR:-$PWD/target}"
unset CARGO_TARGET_DIR
# Smoke bound per target: whichever comes first.
SMOKE_SECONDS="${TDS_FUZZ_SMOKE_SECONDS:-20}"
SMOKE_RUNS="${TDS_FUZZ_SMOKE_RUNS:-500000}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "== fuzz: SKIPPED, the nightly toolchain is missing (cargo-fuzz needs it)." >&2
  echo "   Install it with: rustup toolchain install nightly --profile minimal" >&2
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "== fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

build() {
  echo "== fuzz: building the targets (nightly, no sanitizer) in $FUZZ_DIR" >&2
  local start=$SECONDS
  cargo +nightly fuzz build -s none --target-dir "$FUZZ_DIR"
  echo "== fuzz: built in $((SECONDS - start)) s" >&2
}

# run TARGET SECONDS RUNS
run() {
  local target=$1 seconds=$2 runs=$3
  local work="$FUZZ_DIR/corpus/$target"
  mkdir -p "$work" "artifacts/$target"
  echo "== fuzz: $target for at most ${seconds} s / ${runs} runs" >&2
  cargo +nightly fuzz run -s none --target-dir "$FUZZ_DIR" "$target" "$work" "corpus/$target" -- \
    -max_total_time="$seconds" -runs="$runs" -timeout=30 -rss_limit_mb=2048 \
    -artifact_prefix="artifacts/$target/" -print_final_stats=1
}

case "${1:-}" in
  build) build ;;
  smoke)
    build
    start=$SECONDS
    for t in "${TARGETS[@]}"; do run "$t" "$SMOKE_SECONDS" "$SMOKE_RUNS"; done
    echo "== fuzz: smoke run of ${#TARGETS[@]} targets passed in $((SECONDS - start)) s" >&2
    ;;
  long)
    hours="${2:?usage: scripts/fuzz.sh long HOURS [TARGET...]}"
    shift 2
    [ $# -gt 0 ] && TARGETS=("$@")
    build
    seconds=$(python3 -c "print(int(float('$hours') * 3600))")
    for t in "${TARGETS[@]}"; do nice -n 19 bash -c "$(declare -f run); FUZZ_DIR='$FUZZ_DIR'; run '$t' '$seconds' -1"; done
    ;;
  run)
    target="${2:?usage: scripts/fuzz.sh run TARGET SECONDS}"
    build
    run "$target" "${3:-60}" -1
    ;;
  *)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
