# Helpers shared by kafka.sh and apicurio.sh. Sourced after the caller has
# defined log, die and CACHE_DIR.

if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
  JAVA=$JAVA_HOME/bin/java
else
  JAVA=java
fi

now_ms() { date +%s%3N; }
elapsed_since() { # start_ms -> "12.3s"
  local ms=$(($(now_ms) - $1))
  printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100))
}

# require_java WHAT: dies unless a Java 17+ runtime is available for WHAT.
require_java() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (install a JDK 17+ or set JAVA_HOME)"
  local major
  major=$("$JAVA" -version 2>&1 | sed -n '1s/.*version "\([0-9]*\).*/\1/p')
  [[ -n $major ]] || die "cannot determine the Java version of $JAVA"
  ((major >= 17)) || die "$1 needs Java 17+, found Java $major ($JAVA)"
}

# take_lock FILE SECONDS: serialises lifecycle commands on one service so
# that parallel test jobs calling 'up' at the same time end up sharing one
# instead of racing.
take_lock() {
  command -v flock >/dev/null 2>&1 || return 0
  mkdir -p "$CACHE_DIR"
  exec 9>"$1"
  flock -w "$2" 9 ||
    die "timed out waiting for lock $1 (another $(basename "$0") still running?)"
}
