#!/usr/bin/env bash
# Property-based check of the tenant API against its own OpenAPI document:
# schemathesis (pinned in requirements.txt) generates requests from
# /openapi.json and checks that no answer is a 5xx and that every answer
# (status, content type, headers, body) conforms to the document.
#
# It starts `hookline api` against the local broker (`make up`) on topics of
# its own, creates the tenant `acme` that the document uses as its example,
# runs one bounded pass per credential (admin token, acme's API key,
# producer token), then stops the API and deletes the topics. The venv lives
# in ${HOOKLINE_CACHE:-$HOME/.cache/hookline}/venv-api and is rebuilt only
# when requirements.txt changes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${HOOKLINE_CACHE:-$HOME/.cache/hookline}"
venv="$cache/venv-api"
bootstrap="${HOOKLINE_TEST_BOOTSTRAP:-127.0.0.1:9092}"
examples="${SCHEMATHESIS_MAX_EXAMPLES:-50}"

log() { printf 'schemathesis: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The venv, rebuilt when the requirements change.
wanted=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
stamp="$venv/.requirements.sha256"
if [[ ! -x $venv/bin/st || ! -f $stamp || $(<"$stamp") != "$wanted" ]]; then
  mkdir -p "$cache"
  exec 9>"$cache/venv-api.lock"
  flock -w 600 9 || die "timed out waiting for $cache/venv-api.lock"
  if [[ ! -x $venv/bin/st || ! -f $stamp || $(<"$stamp") != "$wanted" ]]; then
    log "installing schemathesis into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    printf '%s\n' "$wanted" >"$stamp"
  fi
  exec 9>&-
fi

run_id="st-$$-$(date +%s)"
work="$(mktemp -d)"

# A private copy of the binary: a target directory shared with other
# checkouts may have its hookline replaced by another build meanwhile.
bin="$work/hookline"
for _ in 1 2 3; do
  (cd "$root" && cargo build --quiet)
  cp "${CARGO_TARGET_DIR:-$root/target}/debug/hookline" "$bin"
  grep -q 'urn:hookline:problem' "$bin" && break
done
grep -q 'urn:hookline:problem' "$bin" || die "the built hookline has no tenant API"
api_pid=""
cleanup() {
  if [[ -n $api_pid ]]; then
    kill "$api_pid" 2>/dev/null || true
    wait "$api_pid" 2>/dev/null || true
  fi
  # Best effort: every name is unique to this run, so a leftover harms no one.
  bash "$root/testcontainers/kafka.sh" run-class org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$bootstrap" --delete --topic "$run_id-.*" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/topics.toml" <<TOML
[events]
name = "$run_id-events"
partitions = 2

[tenants]
name = "$run_id-tenants"
partitions = 1
[tenants.configs]
"cleanup.policy" = "compact"

[dlq]
name = "$run_id-dlq"
partitions = 2
TOML

admin="admin-$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
producer="producer-$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"

export HOOKLINE__KAFKA__BOOTSTRAP_SERVERS="$bootstrap"
export HOOKLINE__TOPOLOGY="$work/topics.toml"
export HOOKLINE__API__ADMIN_TOKEN="$admin"
export HOOKLINE__API__PRODUCER_TOKEN="$producer"
"$bin" setup-topics >"$work/setup.log" 2>&1 || { cat "$work/setup.log" >&2; die "setup-topics failed"; }
"$bin" api --listen "127.0.0.1:$port" 2>"$work/api.log" &
api_pid=$!

# Python rather than curl: the venv is there anyway, curl may not be.
py="$venv/bin/python"
answers() { "$py" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null; }
for _ in $(seq 1 300); do
  answers "$base/openapi.json" && break
  kill -0 "$api_pid" 2>/dev/null || { cat "$work/api.log" >&2; die "the API exited"; }
  sleep 0.1
done
answers "$base/openapi.json" || die "the API did not answer within 30 s"

key=$(ADMIN="$admin" "$py" - "$base" <<'PY'
import json, os, sys, urllib.request
request = urllib.request.Request(
    sys.argv[1] + "/v1/tenants",
    data=b'{"id": "acme"}',
    headers={"authorization": "Bearer " + os.environ["ADMIN"], "content-type": "application/json"},
)
print(json.load(urllib.request.urlopen(request, timeout=15))["api_key"])
PY
)

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
status=0
# The tenant's pass first: the admin pass may delete acme or replace its key.
for pass in "tenant:$key" "events:$producer" "admin:$admin"; do
  tag=${pass%%:*}
  token=${pass#*:}
  log "pass: $tag routes"
  # Run from the scratch directory: schemathesis and hypothesis leave their
  # databases in the working directory.
  (cd "$work" && timeout 100 "$venv/bin/st" run "$base/openapi.json" \
    --include-tag "$tag" \
    --header "Authorization: Bearer $token" \
    --checks "$checks" \
    --max-examples "$examples" \
    --phases examples,coverage,fuzzing \
    --seed 1 \
    --workers 2 \
    --request-timeout 15 \
    --suppress-health-check all \
    --warnings off \
    --report-dir "$work/report") || status=$?
  if ((status != 0)); then
    log "the $tag pass failed; API log:"
    tail -n 30 "$work/api.log" >&2
    exit "$status"
  fi
done
log "all passes conform, no server errors"
