#!/usr/bin/env bash
# The import rules of ARCHITECTURE.md that the compiler does not check:
#
#   - only src/kafka/ imports rdkafka (the benchmark, src/bin/hookline-bench/,
#     and the integration-test fixtures under tests/ aside);
#   - no module outside src/commands/ and src/main.rs imports a command;
#   - nothing under src/events/ imports delivery.
#
# Prints each offending file:line with the rule it breaks and exits 1 when
# there is one. Comment lines are not imports and are skipped. `make lint`
# runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every Rust file of the package and its fuzz targets, build output aside.
mapfile -t files < <(find src fuzz -name target -prune -o -name '*.rs' -print | sort)

failed=0

# check RULE PATTERN EXCLUDED INCLUDED: reports the lines matching PATTERN
# (an extended regular expression) in the files whose path matches INCLUDED
# and not EXCLUDED.
check() {
    local rule=$1 pattern=$2 excluded=$3 included=$4
    local selected=() file
    for file in "${files[@]}"; do
        if [[ $file =~ $included && ! $file =~ $excluded ]]; then
            selected+=("$file")
        fi
    done
    ((${#selected[@]})) || return 0
    local hits
    hits=$(grep -nHE -- "$pattern" "${selected[@]}" | grep -vE '^[^:]+:[0-9]+:[[:space:]]*//' || true)
    if [[ -n $hits ]]; then
        failed=1
        while IFS= read -r hit; do
            local place=${hit%%:*} rest=${hit#*:}
            local line=${rest%%:*} code=${rest#*:}
            printf '%s:%s: %s: %s\n' "$place" "$line" "$rule" "$(sed -E 's/^[[:space:]]+//' <<<"$code")"
        done <<<"$hits"
    fi
}

check "rdkafka is imported outside src/kafka/" \
    '\brdkafka(_sys)?[[:space:]]*::|\buse[[:space:]]+(::)?rdkafka(_sys)?\b|\bextern[[:space:]]+crate[[:space:]]+rdkafka' \
    '^src/kafka/|^src/bin/hookline-bench/' '^(src|fuzz)/'
check "a command is imported outside src/commands/" \
    '\b(crate|hookline)::commands\b|\bsuper::(super::)*commands\b' \
    '^src/commands/|^src/main\.rs$' '^src/'
check "events imports delivery" \
    '\b(crate|hookline)::delivery\b|\bsuper::(super::)*delivery\b' \
    '^$' '^src/events/'

exit "$failed"
