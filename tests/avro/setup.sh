#!/usr/bin/env bash
# Creates (or refreshes) the Python virtual environment of the Avro
# interoperability tests and prints its python's path on stdout.
#
# The venv lives in $HOOKLINE_CACHE/venv-avro (default ~/.cache/hookline),
# outside the source tree. It is rebuilt only when requirements.txt changes:
# .requirements.sha256 inside it holds the hash of the file it was built
# from. Safe to run concurrently (a lock serialises builders) and fast when
# nothing changed.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REQUIREMENTS=$SCRIPT_DIR/requirements.txt
CACHE_DIR=${HOOKLINE_CACHE:-$HOME/.cache/hookline}
[[ $CACHE_DIR == /* ]] || CACHE_DIR=$PWD/$CACHE_DIR
VENV=$CACHE_DIR/venv-avro
STAMP=$VENV/.requirements.sha256

die() { printf 'avro-venv: error: %s\n' "$*" >&2; exit 1; }

wanted=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
up_to_date() { [[ -x $VENV/bin/python && -f $STAMP && $(<"$STAMP") == "$wanted" ]]; }

if ! up_to_date; then
  mkdir -p "$CACHE_DIR"
  exec 9>"$CACHE_DIR/venv-avro.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w 900 9 || die "timed out waiting for $CACHE_DIR/venv-avro.lock"
  fi
  # Another process may have built it while this one waited for the lock.
  if ! up_to_date; then
    command -v python3 >/dev/null 2>&1 || die "python3 not found (install python3 and python3-venv)"
    printf 'avro-venv: creating %s...\n' "$VENV" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    log=$CACHE_DIR/venv-avro.pip.log
    if ! "$VENV/bin/pip" install --disable-pip-version-check -q -r "$REQUIREMENTS" >"$log" 2>&1; then
      tail -n 20 "$log" >&2
      rm -rf "$VENV"
      die "pip could not install $REQUIREMENTS (full log: $log)"
    fi
    printf '%s\n' "$wanted" >"$STAMP"
  fi
fi
printf '%s\n' "$VENV/bin/python"
