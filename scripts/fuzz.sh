#!/usr/bin/env bash
# Runs the cargo-fuzz targets (fuzz/, docs/fuzzing.md) one after another,
# each for SECONDS, on the nightly toolchain, and prints each target's
# executions, executions per second, coverage and crashes.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 60 s; names config envelope)
#
# New inputs go into fuzz/corpus/TARGET; a crash is written to
# fuzz/artifacts/TARGET/ and makes the script exit non-zero (after the
# other targets have run). Full libFuzzer output: fuzz/logs/TARGET.log.
# Minimise a grown corpus before committing it:
#   (cd fuzz && cargo +nightly fuzz cmin TARGET)
# Extra libFuzzer flags can be given in FUZZ_FLAGS, e.g. FUZZ_FLAGS=-jobs=2.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[fuzz.sh]\033[0m %s\n' "$*" >&2; }

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(names config envelope)

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    log "the nightly toolchain is missing: rustup toolchain install nightly --profile minimal"
    exit 1
fi
if ! command -v cargo-fuzz >/dev/null; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd fuzz
mkdir -p logs
summary=()
failed=0
for target in "${targets[@]}"; do
    dict=()
    [ -f "dicts/$target.dict" ] && dict=("-dict=dicts/$target.dict")
    log "$target: ${seconds}s"
    status=0
    # -timeout: an input that takes 10 s is a hang, and a finding.
    # shellcheck disable=SC2086
    nice -n 10 cargo +nightly fuzz run "$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${dict[@]}" ${FUZZ_FLAGS:-} \
        >"logs/$target.log" 2>&1 || status=$?
    execs=$(grep -oE 'stat::number_of_executed_units:[[:space:]]*[0-9]+' "logs/$target.log" | awk '{s += $2} END {print s + 0}')
    rate=$(grep -oE 'stat::average_exec_per_sec:[[:space:]]*[0-9]+' "logs/$target.log" | awk '{s += $2} END {print s + 0}')
    cov=$(grep -oE '(cov|ft): [0-9]+' "logs/$target.log" | tail -n 2 | paste -sd ' ' -)
    corpus=$(find "corpus/$target" -type f | wc -l)
    if [ "$status" -ne 0 ]; then
        failed=1
        crash=$(grep -oE 'Test unit written to \S+' "logs/$target.log" | tail -n 1 | cut -d' ' -f5)
        summary+=("$target: FAILED (exit $status) after $execs executions; input: ${crash:-see logs/$target.log}")
    else
        summary+=("$target: $execs executions, $rate exec/s, $cov, corpus $corpus files, no crash")
    fi
done

printf '\n'
for line in "${summary[@]}"; do log "$line"; done
exit "$failed"
