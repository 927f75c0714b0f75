#!/usr/bin/env bash
# Apicurio Registry (its Confluent-compatible API at /apis/ccompat/v7) for
# hookline's Avro tests, run straight from the Maven Central distribution so
# that no container engine is needed. See README.md next to this file.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: apicurio.sh COMMAND [ARGS]

Lifecycle of a throw-away Apicurio Registry on 127.0.0.1, storage in memory.

commands:
  up             Start a fresh registry (wiping old logs) and wait until
                 /apis/ccompat/v7/subjects answers. If a registry started by
                 this script is already running on the port, reuse it as is.
  down           Stop the registry and delete its run directory.
  start          Start the registry, keeping old logs. Reuses a running one.
  stop           Stop the registry. Its storage is in memory, so registered
                 schemas are gone: the next 'start' begins empty.
  restart        'stop' then 'start'.
  status         Print running/stopped; exit 0 if running, 3 otherwise.
  logs [-f]      Show the tail of the registry log (-f to follow).
  url            Print the Confluent-compatible base URL for this port.

environment:
  APICURIO_PORT           HTTP port (default 8081)
  APICURIO_START_TIMEOUT  seconds to wait for readiness (default 90)
  APICURIO_STOP_TIMEOUT   seconds to wait for a clean shutdown (default 30)
  APICURIO_HEAP_OPTS      JVM heap flags (default "-Xms64m -Xmx512m")
  APICURIO_OPTS           extra JVM flags, e.g. -Dapicurio.ccompat.max-subjects=5000
  HOOKLINE_CACHE          cache root (default ~/.cache/hookline)
  APICURIO_RUN_DIR        log directory (default $HOOKLINE_CACHE/apicurio-run-$APICURIO_PORT)
  JAVA_HOME               JDK to use (Java 17+); otherwise 'java' on PATH
EOF
}

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
CONF_DIR=$SCRIPT_DIR/apicurio
POM=$CONF_DIR/pom.xml

APICURIO_PORT=${APICURIO_PORT:-8081}
APICURIO_START_TIMEOUT=${APICURIO_START_TIMEOUT:-90}
APICURIO_STOP_TIMEOUT=${APICURIO_STOP_TIMEOUT:-30}
APICURIO_HEAP_OPTS=${APICURIO_HEAP_OPTS:--Xms64m -Xmx512m}
APICURIO_OPTS=${APICURIO_OPTS:-}
CACHE_DIR=${HOOKLINE_CACHE:-$HOME/.cache/hookline}
HOST=127.0.0.1
# The readiness probe: the Confluent-compatible API itself, not a health
# endpoint, because that API is what the tests and hookline use.
READY_PATH=/apis/ccompat/v7/subjects

log() { printf 'apicurio: %s\n' "$*" >&2; }
die() { printf 'apicurio: error: %s\n' "$*" >&2; exit 1; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
if ! is_uint "$APICURIO_PORT" || ((APICURIO_PORT < 1 || APICURIO_PORT > 65535)); then
  die "APICURIO_PORT must be a TCP port number, got '$APICURIO_PORT'"
fi
is_uint "$APICURIO_START_TIMEOUT" || die "APICURIO_START_TIMEOUT must be whole seconds, got '$APICURIO_START_TIMEOUT'"
is_uint "$APICURIO_STOP_TIMEOUT" || die "APICURIO_STOP_TIMEOUT must be whole seconds, got '$APICURIO_STOP_TIMEOUT'"

APICURIO_VERSION=$(sed -n 's:.*<apicurio\.version>\(.*\)</apicurio\.version>.*:\1:p' "$POM")
[[ -n $APICURIO_VERSION ]] || die "cannot read apicurio.version from $POM"

RUN_DIR=${APICURIO_RUN_DIR:-$CACHE_DIR/apicurio-run-$APICURIO_PORT}
RUN_DIR=${RUN_DIR%/}
[[ -n $RUN_DIR ]] || die "APICURIO_RUN_DIR must not be '/'"
# Absolute paths: the registry's command line (matched by registry_pid) must
# mean the same thing whatever directory apicurio.sh is called from.
[[ $CACHE_DIR == /* ]] || CACHE_DIR=$PWD/$CACHE_DIR
[[ $RUN_DIR == /* ]] || RUN_DIR=$PWD/$RUN_DIR
APP_DIR=$CACHE_DIR/apicurio-$APICURIO_VERSION
LOG_DIR=$RUN_DIR/logs
PID_FILE=$RUN_DIR/apicurio.pid
# Proves a directory was created by this script before anything deletes it,
# so a mistyped APICURIO_RUN_DIR can never wipe unrelated files.
RUN_MARKER=$RUN_DIR/.hookline-apicurio-run

# shellcheck source=testcontainers/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- distribution ------------------------------------------------------------

# The runnable jar: the 3.0 distributions ship a fat '*-runner.jar' next to
# lib/, later ones Quarkus' fast-jar layout with quarkus-run.jar.
app_jar() {
  local jar
  if [[ -f $1/quarkus-run.jar ]]; then
    printf '%s\n' "$1/quarkus-run.jar"
    return 0
  fi
  for jar in "$1"/*-runner.jar; do
    [[ -f $jar ]] && { printf '%s\n' "$jar"; return 0; }
  done
  return 1
}

ensure_app() {
  local stamp marker=$APP_DIR/.complete
  stamp=$(sha256sum "$POM" | cut -d' ' -f1)
  if [[ -f $marker && $(<"$marker") == "$stamp" ]]; then
    return 0
  fi
  take_lock "$CACHE_DIR/apicurio-$APICURIO_VERSION.lock" "$((APICURIO_START_TIMEOUT + APICURIO_STOP_TIMEOUT + 600))"
  # Another process may have finished the download while we waited.
  if [[ -f $marker && $(<"$marker") == "$stamp" ]]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found; it is needed once to fetch Apicurio Registry $APICURIO_VERSION"
  log "downloading Apicurio Registry $APICURIO_VERSION into $APP_DIR (first run only)..."
  local t0 tmp mvn_log
  t0=$(now_ms)
  tmp=$APP_DIR.tmp.$$
  mvn_log=$CACHE_DIR/apicurio-$APICURIO_VERSION.mvn.log
  rm -rf "$tmp"
  mkdir -p "$tmp"
  if ! mvn -B -q -Dstyle.color=never -f "$POM" \
    dependency:unpack -Dapicurio.unpack.dir="$tmp" >"$mvn_log" 2>&1; then
    tail -n 30 "$mvn_log" >&2
    rm -rf "$tmp"
    die "maven could not fetch Apicurio Registry $APICURIO_VERSION (full log: $mvn_log)"
  fi
  if ! app_jar "$tmp" >/dev/null; then
    rm -rf "$tmp"
    die "maven finished but the archive has no quarkus-run.jar or *-runner.jar (log: $mvn_log)"
  fi
  rm -rf "$tmp/.markers" "$APP_DIR"
  mv "$tmp" "$APP_DIR"
  printf '%s\n' "$stamp" >"$marker"
  log "fetched $(du -sh "$APP_DIR" | cut -f1) in $(elapsed_since "$t0")"
}

# --- process state -----------------------------------------------------------

# Sets REGISTRY_PID when the pid file names a live registry of *this* run
# dir; checking the command line guards against pid reuse after a crash.
registry_pid() {
  REGISTRY_PID=
  [[ -s $PID_FILE ]] || return 1
  local pid cmdline
  pid=$(<"$PID_FILE")
  is_uint "$pid" || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"-Dhookline.apicurio.run-dir=$RUN_DIR "* ]] || return 1
  REGISTRY_PID=$pid
}

port_open() {
  (: <>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# Prints the HTTP status of GET $1, or fails when nothing answers. Plain
# bash, so that neither curl nor wget is needed.
http_status() {
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "GET %s HTTP/1.1\r\nHost: %s:%s\r\nAccept: application/json\r\nConnection: close\r\n\r\n" "$2" "$0" "$1" >&3
    read -r _ code _ <&3 || exit 1
    [[ -n $code ]] && printf "%s\n" "$code"' "$HOST" "$APICURIO_PORT" "$1" 2>/dev/null
}

show_log_tail() {
  local f=$LOG_DIR/apicurio.out
  [[ -s $f ]] || return 0
  printf -- '--- last lines of %s ---\n' "$f" >&2
  tail -n 40 "$f" >&2
}

# --- lifecycle ---------------------------------------------------------------

wipe_run_dir() {
  if [[ -e $RUN_DIR ]]; then
    if [[ ! -f $RUN_MARKER ]] && [[ -n $(ls -A "$RUN_DIR") ]]; then
      die "refusing to delete $RUN_DIR: it was not created by apicurio.sh"
    fi
    rm -rf "$RUN_DIR"
  fi
}

ensure_port_free() {
  if port_open "$APICURIO_PORT"; then
    die "port $HOST:$APICURIO_PORT is already in use by another process (not a registry started by apicurio.sh from $RUN_DIR)"
  fi
}

launch() {
  local jar
  jar=$(app_jar "$APP_DIR") || die "no runnable jar in $APP_DIR; delete it to download again"
  ensure_port_free
  mkdir -p "$LOG_DIR" "$RUN_DIR/tmp"
  rm -f "$PID_FILE"
  # setsid: the registry must outlive the shell (and its process group) that
  # started it, e.g. a test runner's Ctrl-C. The inner shell records its own
  # pid before exec'ing java, so the pid file is exact even if setsid forks.
  # fd 9 (the lifecycle lock) is closed so the registry does not hold it.
  # Start-up flags: serial GC and C1 only start a Quarkus app about twice as
  # fast on two cores, and a test registry never runs long enough for C2 to
  # pay off. Storage: Apicurio's SQL storage on an in-memory H2 database.
  # Canonical hashing makes the Confluent API match schemas the way
  # Confluent's registry does, by their parsed form rather than their exact
  # text: a client that re-serialises or trims a schema (Python
  # confluent-kafka strips it) still finds the registered one.
  # shellcheck disable=SC2016,SC2086 # inner script expands in the child; flag lists are meant to be split
  nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
    "$JAVA" $APICURIO_HEAP_OPTS \
    -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Djava.io.tmpdir="$RUN_DIR/tmp" \
    -Dhookline.apicurio.run-dir="$RUN_DIR" \
    -Dquarkus.http.host="$HOST" \
    -Dquarkus.http.port="$APICURIO_PORT" \
    -Dapicurio.storage.kind=sql \
    -Dapicurio.storage.sql.kind=h2 \
    -Dapicurio.datasource.url="jdbc:h2:mem:registry" \
    -Dapicurio.storage.snapshot.location="$RUN_DIR/tmp" \
    -Dapicurio.import.work-dir="$RUN_DIR/tmp" \
    -Dapicurio.ccompat.use-canonical-hash=true \
    $APICURIO_OPTS \
    -jar "$jar" \
    >>"$LOG_DIR/apicurio.out" 2>&1 </dev/null 9>&- &
  local i
  for ((i = 0; i < 100; i++)); do
    registry_pid && return 0
    sleep 0.05
  done
  show_log_tail
  die "the registry process exited right after launch (logs in $LOG_DIR)"
}

wait_ready() { # t0_ms
  local deadline=$(($(date +%s) + APICURIO_START_TIMEOUT)) status
  while (($(date +%s) < deadline)); do
    if ! registry_pid; then
      show_log_tail
      die "the registry exited during start-up (logs in $LOG_DIR)"
    fi
    if status=$(http_status "$READY_PATH") && [[ $status == 200 ]]; then
      log "ready on http://$HOST:$APICURIO_PORT$READY_PATH (pid $REGISTRY_PID) in $(elapsed_since "$1")"
      return 0
    fi
    sleep 0.25
  done
  show_log_tail
  [[ -n ${status:-} ]] && log "last readiness answer: HTTP $status"
  stop_registry >/dev/null 2>&1 || true
  die "the registry did not answer $READY_PATH within ${APICURIO_START_TIMEOUT}s; stopped it (logs in $LOG_DIR)"
}

stop_registry() {
  registry_pid || { rm -f "$PID_FILE"; return 0; }
  local pid=$REGISTRY_PID i
  log "stopping registry (pid $pid)..."
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < APICURIO_STOP_TIMEOUT * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "registry did not stop within ${APICURIO_STOP_TIMEOUT}s, killing it"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$PID_FILE"
}

# Shared tail of 'up' and 'start': a registry from this run dir is alive.
reuse_running() { # t0_ms
  local status
  if status=$(http_status "$READY_PATH") && [[ $status == 200 ]]; then
    log "already running on $HOST:$APICURIO_PORT (pid $REGISTRY_PID), reusing it"
  else
    # Probably another 'up' is still starting it: wait rather than restart.
    log "registry (pid $REGISTRY_PID) is starting, waiting for it..."
    wait_ready "$1"
  fi
}

start_registry() { # fresh(0|1)
  local t0
  t0=$(now_ms)
  require_java "Apicurio Registry $APICURIO_VERSION"
  ensure_app
  take_lock "$CACHE_DIR/apicurio-run-$APICURIO_PORT.lock" "$((APICURIO_START_TIMEOUT + APICURIO_STOP_TIMEOUT + 600))"
  if registry_pid; then
    reuse_running "$t0"
    return 0
  fi
  ensure_port_free
  if (($1)) || [[ ! -f $RUN_MARKER ]]; then
    wipe_run_dir
    mkdir -p "$RUN_DIR"
    : >"$RUN_MARKER"
  fi
  log "starting Apicurio Registry $APICURIO_VERSION on $HOST:$APICURIO_PORT (in-memory storage, logs in $LOG_DIR)..."
  launch
  wait_ready "$t0"
}

cmd_stop() {
  take_lock "$CACHE_DIR/apicurio-run-$APICURIO_PORT.lock" "$((APICURIO_START_TIMEOUT + APICURIO_STOP_TIMEOUT + 600))"
  if registry_pid; then
    stop_registry
    log "stopped (registered schemas were in memory and are gone)"
  else
    rm -f "$PID_FILE"
    log "not running"
  fi
}

cmd_down() {
  take_lock "$CACHE_DIR/apicurio-run-$APICURIO_PORT.lock" "$((APICURIO_START_TIMEOUT + APICURIO_STOP_TIMEOUT + 600))"
  stop_registry
  wipe_run_dir
  log "down (removed $RUN_DIR)"
}

cmd_status() {
  local status
  if registry_pid; then
    if status=$(http_status "$READY_PATH") && [[ $status == 200 ]]; then
      echo "running on http://$HOST:$APICURIO_PORT (pid $REGISTRY_PID, Apicurio Registry $APICURIO_VERSION, logs in $LOG_DIR)"
      return 0
    fi
    echo "starting on $HOST:$APICURIO_PORT (pid $REGISTRY_PID, not answering $READY_PATH yet)"
    return 3
  fi
  echo "stopped (port $APICURIO_PORT)"
  return 3
}

cmd_logs() {
  local f=$LOG_DIR/apicurio.out
  [[ -f $f ]] || die "no registry log at $f"
  case ${1:-} in
    -f | --follow) exec tail -n 100 -F "$f" ;;
    "") exec tail -n 200 "$f" ;;
    *) die "logs: unknown option '$1' (expected -f)" ;;
  esac
}

main() {
  local cmd=${1:-}
  (($#)) && shift
  case $cmd in
    up) start_registry 1 ;;
    down) cmd_down ;;
    start) start_registry 0 ;;
    stop) cmd_stop ;;
    restart) cmd_stop && start_registry 0 ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    url) echo "http://$HOST:$APICURIO_PORT/apis/ccompat/v7" ;;
    -h | --help | help) usage ;;
    "") usage >&2; exit 2 ;;
    *) printf 'apicurio: error: unknown command %s\n' "'$cmd'" >&2; usage >&2; exit 2 ;;
  esac
}

main "$@"
