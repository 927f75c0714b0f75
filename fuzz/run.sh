#!/usr/bin/env bash
# A short, bounded fuzzing run of every target: fuzz/run.sh [SECONDS]
# (default 15 seconds per target). `make test` calls it; `make fuzz` runs it
# longer. It needs the nightly toolchain and cargo-fuzz; without them it
# says so and exits 0, since the same properties also run as proptests in
# `cargo test`. A crash fails the run: libFuzzer saves the input under
# fuzz/artifacts/TARGET/, and `cargo +nightly fuzz run TARGET FILE` replays it.
#
# The corpus grows in the cache ($HOOKLINE_CACHE/fuzz-corpus), so that each
# run starts where the previous one stopped; fuzz/seeds/ holds a few valid
# inputs to start from.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-15}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "usage: fuzz/run.sh [SECONDS]" >&2; exit 2; }

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: skipped: no nightly toolchain (rustup toolchain install nightly); the fuzzed properties still run as proptests" >&2
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: skipped: cargo-fuzz is not installed (cargo install --locked cargo-fuzz); the fuzzed properties still run as proptests" >&2
    exit 0
fi

cache=${HOOKLINE_CACHE:-$HOME/.cache/hookline}
# A target dir of its own: nightly and the fuzzing flags would otherwise
# rebuild the main one from scratch each time.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$cache/target-fuzz}
# No sanitizer: hookline's fuzzed code is safe Rust (its only unsafe code,
# the librdkafka admin calls, is not reachable from these targets), and
# without ASan the build is faster and each run executes several times more
# inputs. Debug assertions stay on, so overflows are crashes too.
flags=(--sanitizer none --debug-assertions)

cargo +nightly fuzz build "${flags[@]}"
summary=()
for target in $(cargo +nightly fuzz list); do
    corpus=$cache/fuzz-corpus/$target
    mkdir -p "$corpus" "seeds/$target"
    log=$(mktemp)
    echo "fuzz: $target for ${seconds}s"
    if ! cargo +nightly fuzz run "${flags[@]}" "$target" "$corpus" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        if compgen -G "artifacts/$target/*" >/dev/null; then
            echo "fuzz: $target FAILED; the input is under fuzz/artifacts/$target/" >&2
        else
            echo "fuzz: $target FAILED (see above)" >&2
        fi
        rm -f "$log"
        exit 1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    summary+=("$target: ${execs:-?} runs (${rate:-?}/s), corpus $(find "$corpus" -type f | wc -l) inputs, no crash")
    rm -f "$log"
done
printf 'fuzz: %s\n' "${summary[@]}"
