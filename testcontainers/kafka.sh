#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, combined broker+controller) for hookline's
# integration tests, run straight from the Maven Central jars so that no
# container engine is needed. See README.md next to this file.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: kafka.sh COMMAND [ARGS]

Lifecycle of a throw-away single-node Kafka broker on 127.0.0.1.

commands:
  up             Start a fresh broker (wiping old data) and wait until it
                 answers metadata requests. If a broker started by this script
                 is already running on the port, reuse it as is.
  down           Stop the broker and delete its data directory.
  start          Start the broker, keeping existing data if any (formats the
                 storage only when there is none). Reuses a running broker.
  stop           Stop the broker but keep its data for a later 'start'.
  restart        'stop' then 'start': the broker comes back with the same
                 topics, records and committed offsets.
  status         Print running/stopped; exit 0 if running, 3 otherwise.
  logs [-f]      Show the tail of the broker log (-f to follow).
  run-class CLASS [ARGS...]
                 Run a Kafka CLI class from the same jars, e.g.
                 run-class org.apache.kafka.tools.TopicCommand \
                   --bootstrap-server 127.0.0.1:9092 --list

environment:
  KAFKA_PORT             client listener port (default 9092)
  KAFKA_CONTROLLER_PORT  KRaft controller port (default 9093)
  KAFKA_START_TIMEOUT    seconds to wait for readiness (default 90)
  KAFKA_STOP_TIMEOUT     seconds to wait for a clean shutdown (default 30)
  KAFKA_HEAP_OPTS        broker heap flags (default "-Xms256m -Xmx768m")
  KAFKA_OPTS             extra broker JVM flags
  HOOKLINE_CACHE         cache root (default ~/.cache/hookline)
  KAFKA_RUN_DIR          data/log directory (default $HOOKLINE_CACHE/kafka-run-$KAFKA_PORT)
  JAVA_HOME              JDK to use (Java 17+); otherwise 'java' on PATH

secure listeners (read when the broker is started):
  KAFKA_SECURE           1 adds a SASL_SSL listener (SCRAM-SHA-512) and an SSL
                         listener that requires client certificates; 0 (the
                         default): PLAINTEXT only
  KAFKA_SASL_SSL_PORT    SASL_SSL listener port (default KAFKA_PORT + 2)
  KAFKA_SSL_PORT         SSL listener port, ssl.client.auth=required
                         (default KAFKA_PORT + 3)
  KAFKA_SCRAM_USER       SCRAM-SHA-512 user created with the storage (default hookline)
  KAFKA_SCRAM_PASSWORD   its password (default hookline-secret)
  The PLAINTEXT listener stays, for inter-broker traffic and test fixtures.
  A throw-away CA, a broker certificate for 127.0.0.1 and localhost, and a
  client certificate are generated with openssl into $KAFKA_RUN_DIR/tls:
  ca.crt, client.crt and client.key are what clients need.
EOF
}

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
CONF_DIR=$SCRIPT_DIR/kafka
POM=$CONF_DIR/pom.xml

KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}
KAFKA_OPTS=${KAFKA_OPTS:-}
KAFKA_SECURE=${KAFKA_SECURE:-0}
KAFKA_SCRAM_USER=${KAFKA_SCRAM_USER:-hookline}
KAFKA_SCRAM_PASSWORD=${KAFKA_SCRAM_PASSWORD:-hookline-secret}
CACHE_DIR=${HOOKLINE_CACHE:-$HOME/.cache/hookline}
HOST=127.0.0.1

log() { printf 'kafka: %s\n' "$*" >&2; }
die() { printf 'kafka: error: %s\n' "$*" >&2; exit 1; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
for var in KAFKA_PORT KAFKA_CONTROLLER_PORT; do
  val=${!var}
  if ! is_uint "$val" || ((val < 1 || val > 65535)); then
    die "$var must be a TCP port number, got '$val'"
  fi
done
[[ $KAFKA_PORT != "$KAFKA_CONTROLLER_PORT" ]] ||
  die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ (both $KAFKA_PORT)"
[[ $KAFKA_SECURE == 0 || $KAFKA_SECURE == 1 ]] || die "KAFKA_SECURE must be 0 or 1, got '$KAFKA_SECURE'"
KAFKA_SASL_SSL_PORT=${KAFKA_SASL_SSL_PORT:-$((KAFKA_PORT + 2))}
KAFKA_SSL_PORT=${KAFKA_SSL_PORT:-$((KAFKA_PORT + 3))}
# Every port this broker listens on; the secure ones only when asked for.
BROKER_PORTS=("$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT")
if ((KAFKA_SECURE)); then
  for var in KAFKA_SASL_SSL_PORT KAFKA_SSL_PORT; do
    val=${!var}
    if ! is_uint "$val" || ((val < 1 || val > 65535)); then
      die "$var must be a TCP port number, got '$val'"
    fi
  done
  BROKER_PORTS+=("$KAFKA_SASL_SSL_PORT" "$KAFKA_SSL_PORT")
  (($(printf '%s\n' "${BROKER_PORTS[@]}" | sort -u | wc -l) == 4)) ||
    die "KAFKA_PORT, KAFKA_CONTROLLER_PORT, KAFKA_SASL_SSL_PORT and KAFKA_SSL_PORT must differ (${BROKER_PORTS[*]})"
  # Both end up inside the SCRAM credential syntax of kafka-storage.
  [[ $KAFKA_SCRAM_USER =~ ^[A-Za-z0-9._-]+$ ]] ||
    die "KAFKA_SCRAM_USER may hold only letters, digits, '.', '_' and '-'"
  [[ $KAFKA_SCRAM_PASSWORD =~ ^[A-Za-z0-9._-]+$ ]] ||
    die "KAFKA_SCRAM_PASSWORD may hold only letters, digits, '.', '_' and '-'"
fi
is_uint "$KAFKA_START_TIMEOUT" || die "KAFKA_START_TIMEOUT must be whole seconds, got '$KAFKA_START_TIMEOUT'"
is_uint "$KAFKA_STOP_TIMEOUT" || die "KAFKA_STOP_TIMEOUT must be whole seconds, got '$KAFKA_STOP_TIMEOUT'"

KAFKA_VERSION=$(sed -n 's:.*<kafka\.version>\(.*\)</kafka\.version>.*:\1:p' "$POM")
[[ -n $KAFKA_VERSION ]] || die "cannot read kafka.version from $POM"

RUN_DIR=${KAFKA_RUN_DIR:-$CACHE_DIR/kafka-run-$KAFKA_PORT}
RUN_DIR=${RUN_DIR%/}
[[ -n $RUN_DIR ]] || die "KAFKA_RUN_DIR must not be '/'"
# Absolute paths: the broker's command line (matched by broker_pid) and its
# config must mean the same thing whatever directory kafka.sh is called from.
[[ $CACHE_DIR == /* ]] || CACHE_DIR=$PWD/$CACHE_DIR
[[ $RUN_DIR == /* ]] || RUN_DIR=$PWD/$RUN_DIR
LIB_DIR=$CACHE_DIR/kafka-$KAFKA_VERSION/libs
DATA_DIR=$RUN_DIR/data
LOG_DIR=$RUN_DIR/logs
PID_FILE=$RUN_DIR/kafka.pid
TLS_DIR=$RUN_DIR/tls
# Proves a directory was created by this script before anything deletes it,
# so a mistyped KAFKA_RUN_DIR can never wipe unrelated files.
RUN_MARKER=$RUN_DIR/.hookline-kafka-run

# shellcheck source=testcontainers/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- jars --------------------------------------------------------------------

ensure_libs() {
  local stamp marker=$LIB_DIR/.complete
  stamp=$(sha256sum "$POM" | cut -d' ' -f1)
  if [[ -f $marker && $(<"$marker") == "$stamp" ]]; then
    return 0
  fi
  take_lock "$CACHE_DIR/kafka-$KAFKA_VERSION.lock" "$((KAFKA_START_TIMEOUT + KAFKA_STOP_TIMEOUT + 600))"
  # Another process may have finished the download while we waited.
  if [[ -f $marker && $(<"$marker") == "$stamp" ]]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found; it is needed once to fetch the Kafka $KAFKA_VERSION jars"
  log "downloading Kafka $KAFKA_VERSION jars into $LIB_DIR (first run only)..."
  local t0 tmp mvn_log
  t0=$(now_ms)
  tmp=$LIB_DIR.tmp.$$
  mvn_log=$CACHE_DIR/kafka-$KAFKA_VERSION/mvn.log
  rm -rf "$tmp"
  mkdir -p "$tmp"
  if ! mvn -B -q -Dstyle.color=never -f "$POM" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
    >"$mvn_log" 2>&1; then
    tail -n 30 "$mvn_log" >&2
    rm -rf "$tmp"
    die "maven could not fetch the Kafka $KAFKA_VERSION jars (full log: $mvn_log)"
  fi
  if [[ ! -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]]; then
    rm -rf "$tmp"
    die "maven finished but did not produce kafka_2.13-$KAFKA_VERSION.jar (log: $mvn_log)"
  fi
  rm -rf "$LIB_DIR"
  mv "$tmp" "$LIB_DIR"
  printf '%s\n' "$stamp" >"$marker"
  log "fetched $(find "$LIB_DIR" -name '*.jar' | wc -l) jars in $(elapsed_since "$t0")"
}

# Runs a Kafka CLI class. Tuned for fast JVM start-up rather than throughput,
# since these are short-lived admin commands.
run_class() {
  "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$CONF_DIR/tools-log4j2.yaml" \
    -cp "$LIB_DIR/*" "$@"
}

# --- process state -----------------------------------------------------------

# Sets BROKER_PID when the pid file names a live broker of *this* run dir;
# checking the command line guards against pid reuse after a crash or reboot.
broker_pid() {
  BROKER_PID=
  [[ -s $PID_FILE ]] || return 1
  local pid cmdline
  pid=$(<"$PID_FILE")
  is_uint "$pid" || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *kafka.Kafka*"$RUN_DIR/server.properties"* ]] || return 1
  BROKER_PID=$pid
}

port_open() {
  (: <>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# A real Metadata round trip (the admin client's listTopics), not just an open
# socket: the broker only answers once it has registered with the controller
# and been unfenced, i.e. when it can actually serve produce/fetch.
metadata_probe() {
  timeout 30 "$JAVA" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    -Dlog4j2.configurationFile="$CONF_DIR/tools-log4j2.yaml" \
    -cp "$LIB_DIR/*" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$HOST:$KAFKA_PORT" \
    --command-config "$RUN_DIR/probe.properties" --list \
    >"$LOG_DIR/probe.log" 2>&1
}

show_log_tail() {
  local f
  for f in "$LOG_DIR/kafka.out" "$LOG_DIR/server.log"; do
    [[ -s $f ]] || continue
    printf -- '--- last lines of %s ---\n' "$f" >&2
    tail -n 40 "$f" >&2
  done
}

# --- configuration -----------------------------------------------------------

write_config() {
  mkdir -p "$DATA_DIR" "$LOG_DIR"
  local listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
  local protocols=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
  if ((KAFKA_SECURE)); then
    listeners+=,SASL_SSL://$HOST:$KAFKA_SASL_SSL_PORT,SSL://$HOST:$KAFKA_SSL_PORT
    protocols+=,SASL_SSL:SASL_SSL,SSL:SSL
  fi
  cat >"$RUN_DIR/server.properties" <<EOF
# Generated by kafka.sh on each start; edits are overwritten.
process.roles=broker,controller
node.id=1
listeners=$listeners
advertised.listeners=$listeners
listener.security.protocol.map=$protocols
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=$HOST:$KAFKA_CONTROLLER_PORT
log.dirs=$DATA_DIR

# One replica of everything, including the internal topics whose defaults
# (replication factor 3) would otherwise make the first group join or
# transaction fail on a single node.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1

# Tests create every topic they use explicitly, with the intended config.
auto.create.topics.enable=false
delete.topic.enable=true

# Groups: no join delay, short session timeouts permitted, and frequent
# heartbeats so that next-gen (KIP-848) assignments propagate in ~1 s.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
group.consumer.min.session.timeout.ms=1000
group.consumer.session.timeout.ms=10000
group.consumer.min.heartbeat.interval.ms=500
group.consumer.heartbeat.interval.ms=1000

# Compaction and retention observable within seconds. Segments stay at the
# default size; topics that need rolling set segment.ms / segment.bytes.
log.cleaner.backoff.ms=1000
log.cleaner.min.compaction.lag.ms=0
log.cleaner.min.cleanable.ratio=0.01
log.cleaner.dedupe.buffer.size=33554432
log.retention.check.interval.ms=1000
log.initial.task.delay.ms=1000
log.segment.delete.delay.ms=1000

# Room for ~10 MB test records.
message.max.bytes=16777216
replica.fetch.max.bytes=16777216

# Small machines: fewer threads than the production defaults.
num.network.threads=2
num.io.threads=4
EOF
  if ((KAFKA_SECURE)); then
    cat >>"$RUN_DIR/server.properties" <<EOF

# KAFKA_SECURE=1: SCRAM-SHA-512 over TLS, and TLS with client certificates,
# both with the throw-away certificates in $TLS_DIR (PEM: no keytool).
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$TLS_DIR/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.crt
listener.name.ssl.ssl.client.auth=required
EOF
  fi
  cat >"$RUN_DIR/probe.properties" <<'EOF'
request.timeout.ms=5000
default.api.timeout.ms=10000
socket.connection.setup.timeout.ms=2000
socket.connection.setup.timeout.max.ms=2000
EOF
}

# Whether $TLS_DIR holds a complete set of certificates valid for a day more.
tls_valid() {
  local c
  [[ -s $TLS_DIR/broker.pem && -s $TLS_DIR/client.key ]] || return 1
  for c in ca broker client; do
    openssl x509 -checkend 86400 -noout -in "$TLS_DIR/$c.crt" >/dev/null 2>&1 || return 1
  done
}

# Generates a throw-away CA, the broker's certificate and a client's into
# $TLS_DIR, unless valid ones are there: a 'start' keeps them, so that
# clients configured with them keep working across restarts.
ensure_tls() {
  command -v openssl >/dev/null 2>&1 ||
    die "openssl not found; KAFKA_SECURE=1 needs it to make the test certificates"
  tls_valid && return 0
  local tmp=$TLS_DIR.tmp.$$
  rm -rf "$tmp"
  mkdir -p "$tmp" "$LOG_DIR"
  if ! (
    set -e
    cd "$tmp"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=hookline test CA" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
      -keyout ca.key -out ca.crt
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >broker.ext
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout broker.key -out broker.csr
    openssl x509 -req -days 30 -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -extfile broker.ext -out broker.crt
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$KAFKA_SCRAM_USER" -keyout client.key -out client.csr
    openssl x509 -req -days 30 -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -extfile client.ext -out client.crt
    # Kafka's PEM key store: the unencrypted PKCS#8 key, then the certificate.
    cat broker.key broker.crt >broker.pem
    rm -f ./*.csr ./*.ext ./*.srl
    chmod 644 ca.crt broker.crt client.crt
  ) >"$LOG_DIR/tls.log" 2>&1; then
    cat "$LOG_DIR/tls.log" >&2
    rm -rf "$tmp"
    die "generating the test certificates with openssl failed (log: $LOG_DIR/tls.log)"
  fi
  rm -rf "$TLS_DIR"
  mv "$tmp" "$TLS_DIR"
  log "generated a throw-away CA and certificates in $TLS_DIR"
}

# What scram.user holds once the storage has the SCRAM user (a digest, not
# the password).
scram_stamp() {
  printf '%s %s\n' "$KAFKA_SCRAM_USER" "$(printf '%s' "$KAFKA_SCRAM_PASSWORD" | sha256sum | cut -d' ' -f1)"
}

# Adds (or resets) the SCRAM user on a running broker, over PLAINTEXT.
add_scram_user() {
  if ! run_class org.apache.kafka.tools.ConfigCommand --bootstrap-server "$HOST:$KAFKA_PORT" \
    --alter --entity-type users --entity-name "$KAFKA_SCRAM_USER" \
    --add-config "SCRAM-SHA-512=[password=$KAFKA_SCRAM_PASSWORD]" >"$LOG_DIR/scram.log" 2>&1; then
    cat "$LOG_DIR/scram.log" >&2
    die "creating the SCRAM user $KAFKA_SCRAM_USER failed"
  fi
  scram_stamp >"$RUN_DIR/scram.user"
}

log_secure_listeners() {
  log "SASL_SSL (SCRAM-SHA-512, user $KAFKA_SCRAM_USER) on $HOST:$KAFKA_SASL_SSL_PORT," \
    "SSL with client certificates on $HOST:$KAFKA_SSL_PORT; CA and client certificate in $TLS_DIR"
}

format_storage() {
  local cluster_id
  # A random UUID in Kafka's base64url form. Kafka never issues ids that start
  # with '-' (they parse as CLI flags), so neither do we.
  while :; do
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    [[ $cluster_id != -* ]] && break
  done
  # The SCRAM user is part of the initial metadata: no broker round trip.
  local scram=()
  if ((KAFKA_SECURE)); then
    scram=(--add-scram "SCRAM-SHA-512=[name=$KAFKA_SCRAM_USER,password=$KAFKA_SCRAM_PASSWORD]")
  fi
  rm -f "$RUN_DIR/scram.user"
  if ! run_class kafka.tools.StorageTool format --standalone \
    -t "$cluster_id" -c "$RUN_DIR/server.properties" "${scram[@]}" >"$LOG_DIR/format.log" 2>&1; then
    cat "$LOG_DIR/format.log" >&2
    die "formatting the storage in $DATA_DIR failed"
  fi
  printf '%s\n' "$KAFKA_CONTROLLER_PORT" >"$RUN_DIR/controller.port"
  if ((KAFKA_SECURE)); then scram_stamp >"$RUN_DIR/scram.user"; fi
}

# --- lifecycle ---------------------------------------------------------------

wipe_run_dir() {
  if [[ -e $RUN_DIR ]]; then
    if [[ ! -f $RUN_MARKER ]] && [[ -n $(ls -A "$RUN_DIR") ]]; then
      die "refusing to delete $RUN_DIR: it was not created by kafka.sh"
    fi
    rm -rf "$RUN_DIR"
  fi
}

ensure_ports_free() {
  local p
  for p in "${BROKER_PORTS[@]}"; do
    if port_open "$p"; then
      die "port $HOST:$p is already in use by another process (not a broker started by kafka.sh from $RUN_DIR)"
    fi
  done
}

launch() {
  ensure_ports_free
  rm -f "$PID_FILE"
  # setsid: the broker must outlive the shell (and its process group) that
  # started it, e.g. a test runner's Ctrl-C. The inner shell records its own
  # pid before exec'ing java, so the pid file is exact even if setsid forks.
  # fd 9 (the lifecycle lock) is closed so the broker does not hold it.
  # shellcheck disable=SC2016,SC2086 # inner script expands in the child; flag lists are meant to be split
  nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
    "$JAVA" $KAFKA_HEAP_OPTS \
    -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dkafka.logs.dir="$LOG_DIR" \
    -Dlog4j2.configurationFile="$CONF_DIR/log4j2.yaml" \
    $KAFKA_OPTS \
    -cp "$LIB_DIR/*" kafka.Kafka "$RUN_DIR/server.properties" \
    >>"$LOG_DIR/kafka.out" 2>&1 </dev/null 9>&- &
  local i
  for ((i = 0; i < 100; i++)); do
    broker_pid && return 0
    sleep 0.05
  done
  show_log_tail
  die "the broker process exited right after launch (logs in $LOG_DIR)"
}

wait_ready() { # t0_ms
  local deadline=$(($(date +%s) + KAFKA_START_TIMEOUT))
  while (($(date +%s) < deadline)); do
    if ! broker_pid; then
      show_log_tail
      die "the broker exited during start-up (logs in $LOG_DIR)"
    fi
    if port_open "$KAFKA_PORT" && metadata_probe; then
      log "ready on $HOST:$KAFKA_PORT (pid $BROKER_PID) in $(elapsed_since "$1")"
      return 0
    fi
    sleep 0.5
  done
  show_log_tail
  [[ -s $LOG_DIR/probe.log ]] && { echo '--- last readiness probe ---' >&2; tail -n 10 "$LOG_DIR/probe.log" >&2; }
  stop_broker >/dev/null 2>&1 || true
  die "the broker did not answer metadata requests within ${KAFKA_START_TIMEOUT}s; stopped it (logs in $LOG_DIR)"
}

stop_broker() {
  broker_pid || { rm -f "$PID_FILE"; return 0; }
  local pid=$BROKER_PID i
  log "stopping broker (pid $pid)..."
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < KAFKA_STOP_TIMEOUT * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "broker did not stop within ${KAFKA_STOP_TIMEOUT}s, killing it"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$PID_FILE"
}

# Shared tail of 'up' and 'start': a broker from this run dir is alive.
reuse_running() { # t0_ms
  if port_open "$KAFKA_PORT"; then
    log "already running on $HOST:$KAFKA_PORT (pid $BROKER_PID), reusing it"
  else
    # Probably another 'up' is still starting it: wait rather than restart.
    log "broker (pid $BROKER_PID) is starting, waiting for it..."
    wait_ready "$1"
  fi
}

cmd_up() {
  local t0
  t0=$(now_ms)
  require_java "Kafka $KAFKA_VERSION"
  ensure_libs
  take_lock "$CACHE_DIR/kafka-run-$KAFKA_PORT.lock" "$((KAFKA_START_TIMEOUT + KAFKA_STOP_TIMEOUT + 600))"
  if broker_pid; then
    reuse_running "$t0"
    return 0
  fi
  ensure_ports_free
  wipe_run_dir
  mkdir -p "$RUN_DIR"
  : >"$RUN_MARKER"
  write_config
  ((KAFKA_SECURE)) && ensure_tls
  log "starting Kafka $KAFKA_VERSION on $HOST:$KAFKA_PORT (data in $RUN_DIR)..."
  format_storage
  launch
  wait_ready "$t0"
  ((KAFKA_SECURE)) && log_secure_listeners
  return 0
}

cmd_start() {
  local t0 add_user=0
  t0=$(now_ms)
  require_java "Kafka $KAFKA_VERSION"
  ensure_libs
  take_lock "$CACHE_DIR/kafka-run-$KAFKA_PORT.lock" "$((KAFKA_START_TIMEOUT + KAFKA_STOP_TIMEOUT + 600))"
  if broker_pid; then
    reuse_running "$t0"
    return 0
  fi
  ensure_ports_free
  if [[ -f $RUN_MARKER && -f $DATA_DIR/meta.properties ]]; then
    # The standalone quorum's voter endpoint is stored in the metadata log,
    # so the controller port cannot change under existing data.
    local formatted_port
    formatted_port=$(cat "$RUN_DIR/controller.port" 2>/dev/null || echo "$KAFKA_CONTROLLER_PORT")
    [[ $formatted_port == "$KAFKA_CONTROLLER_PORT" ]] ||
      die "data in $RUN_DIR was formatted for controller port $formatted_port, not $KAFKA_CONTROLLER_PORT; use 'down' first"
    write_config
    log "starting Kafka $KAFKA_VERSION on $HOST:$KAFKA_PORT with existing data in $RUN_DIR..."
    # Data formatted without KAFKA_SECURE (or for another user) lacks the
    # SCRAM user; it is added once the broker is up.
    [[ $(cat "$RUN_DIR/scram.user" 2>/dev/null) == "$(scram_stamp)" ]] || add_user=1
  else
    wipe_run_dir
    mkdir -p "$RUN_DIR"
    : >"$RUN_MARKER"
    write_config
    log "starting Kafka $KAFKA_VERSION on $HOST:$KAFKA_PORT (no existing data; fresh storage in $RUN_DIR)..."
    format_storage
  fi
  ((KAFKA_SECURE)) && ensure_tls
  launch
  wait_ready "$t0"
  if ((KAFKA_SECURE)); then
    ((add_user)) && add_scram_user
    log_secure_listeners
  fi
  return 0
}

cmd_stop() {
  take_lock "$CACHE_DIR/kafka-run-$KAFKA_PORT.lock" "$((KAFKA_START_TIMEOUT + KAFKA_STOP_TIMEOUT + 600))"
  if broker_pid; then
    stop_broker
    log "stopped (data kept in $RUN_DIR)"
  else
    rm -f "$PID_FILE"
    log "not running"
  fi
}

cmd_down() {
  take_lock "$CACHE_DIR/kafka-run-$KAFKA_PORT.lock" "$((KAFKA_START_TIMEOUT + KAFKA_STOP_TIMEOUT + 600))"
  stop_broker
  wipe_run_dir
  log "down (removed $RUN_DIR)"
}

cmd_status() {
  if broker_pid; then
    if port_open "$KAFKA_PORT"; then
      echo "running on $HOST:$KAFKA_PORT (pid $BROKER_PID, Kafka $KAFKA_VERSION, data in $RUN_DIR)"
      return 0
    fi
    echo "starting on $HOST:$KAFKA_PORT (pid $BROKER_PID, not accepting connections yet)"
    return 3
  fi
  echo "stopped (port $KAFKA_PORT)"
  return 3
}

cmd_logs() {
  local f=$LOG_DIR/server.log
  [[ -f $f ]] || die "no broker log at $f"
  case ${1:-} in
    -f | --follow) exec tail -n 100 -F "$f" ;;
    "") exec tail -n 200 "$f" ;;
    *) die "logs: unknown option '$1' (expected -f)" ;;
  esac
}

cmd_run_class() {
  (($# >= 1)) || die "run-class needs a class name, e.g. org.apache.kafka.tools.TopicCommand"
  require_java "Kafka $KAFKA_VERSION"
  ensure_libs
  run_class "$@"
}

main() {
  local cmd=${1:-}
  (($#)) && shift
  case $cmd in
    up) cmd_up ;;
    down) cmd_down ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop && cmd_start ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    run-class) cmd_run_class "$@" ;;
    -h | --help | help) usage ;;
    "") usage >&2; exit 2 ;;
    *) printf 'kafka: error: unknown command %s\n' "'$cmd'" >&2; usage >&2; exit 2 ;;
  esac
}

main "$@"
