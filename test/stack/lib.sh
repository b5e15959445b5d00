# Shared settings and helpers for test/stack/up and test/stack/down. Sourced, never run.
# shellcheck shell=bash

# Versions of the servers the stack runs. lakeFS must be >= 1.83 (older servers cancel
# post-commit hooks early); MinIO releases are tagged by date, so the Go module only has
# pseudo-versions (this one is the February 2026 release line).
LAKEFS_VERSION=${LAKEFS_VERSION:-v1.86.0}
MINIO_VERSION=${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
KAFKA_VERSION=${KAFKA_VERSION:-4.1.1}
# Prometheus's promtool checks and unit-tests the alert rules in deploy/prometheus/.
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.316.0}
# MinIO's client mc: a peer of the benchmark (mc mirror) and its measure of the store's own
# server-side copy rate (mc cp --recursive). The module is only served as a pseudo-version.
MC_VERSION=${MC_VERSION:-v0.0.0-20250313080218-cf909e1063a9}
# delta-rs's Python package (and the pyarrow it reads tables into): the Delta Lake writer and
# reader of the tests that read a mirrored table during an export.
DELTALAKE_VERSION=${DELTALAKE_VERSION:-1.6.6}
PYARROW_VERSION=${PYARROW_VERSION:-26.0.1}
# pyiceberg (with its SQLite catalog) writes and reads the Iceberg tables of the tests that
# rewrite table paths; fastavro reads their manifests as a second Avro reader; python-snappy
# gives both the snappy codec (pyiceberg imports `snappy`), backports.zstd gives fastavro
# Zstandard on Python < 3.14.
PYICEBERG_VERSION=${PYICEBERG_VERSION:-0.12.0}
FASTAVRO_VERSION=${FASTAVRO_VERSION:-1.13.1}
PYTHON_SNAPPY_VERSION=${PYTHON_SNAPPY_VERSION:-0.7.3}
BACKPORTS_ZSTD_VERSION=${BACKPORTS_ZSTD_VERSION:-1.8.0}
# Apache Iceberg's Java libraries (Maven Central): test/iceberg-java writes the tables with
# position-delete files and deletion vectors that pyiceberg does not write, and reads mirrors.
ICEBERG_JAVA_VERSION=${ICEBERG_JAVA_VERSION:-1.10.0}
# Azurite (the npm package azurite), Microsoft's Azure Storage emulator: the stack runs its Blob
# service as the Azure Blob Storage of the tests.
AZURITE_VERSION=${AZURITE_VERSION:-3.37.0}
# fake-gcs-server (Go module): the stack's Google Cloud Storage, JSON and XML APIs over HTTP.
FAKE_GCS_VERSION=${FAKE_GCS_VERSION:-v1.56.1}
# rclone, the benchmark's peer, built from its Go module (Debian's package is 1.60, from 2022).
RCLONE_VERSION=${RCLONE_VERSION:-v1.76.0}

STACK_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STACK_DIR=${LAKEFS_MIRROR_STACK_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lakefs-mirror/stack}
BIN_DIR=$STACK_DIR/bin
RUN_DIR=$STACK_DIR/run
ENV_FILE=$RUN_DIR/env.sh

# Fixed credentials: the stack listens on loopback only and holds throwaway data.
STACK_LAKEFS_ACCESS_KEY_ID=AKIAIOSFOLMIRRORTEST
STACK_LAKEFS_SECRET_ACCESS_KEY=lakefs-mirror-stack-secret-access-key
STACK_S3_ACCESS_KEY_ID=mirrorstack
STACK_S3_SECRET_ACCESS_KEY=mirrorstack-secret-key
STACK_WEBHOOK_TOKEN=lakefs-mirror-stack-webhook-token
STACK_LAKEFS_BUCKET=lakefs-data
# Azurite's well-known development account and key, as Microsoft documents them for the emulator.
STACK_AZURE_ACCOUNT=devstoreaccount1
STACK_AZURE_ACCOUNT_KEY=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==
# fake-gcs-server takes any project and checks no credentials.
STACK_GCP_PROJECT=lakefs-mirror-stack

log() { printf 'stack: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

pid_alive() {
  local f=$RUN_DIR/$1.pid
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_for NAME SECONDS COMMAND...: polls COMMAND until it succeeds, failing with the
# server's log tail when the process dies or the time runs out.
wait_for() {
  local name=$1 seconds=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    if ! pid_alive "$name"; then
      tail -n 30 "$RUN_DIR/logs/$name.log" >&2 || true
      die "$name exited during start-up (log: $RUN_DIR/logs/$name.log)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 30 "$RUN_DIR/logs/$name.log" >&2 || true
      die "$name did not answer within ${seconds}s (log: $RUN_DIR/logs/$name.log)"
    fi
    sleep 0.3
  done
}

# start NAME COMMAND...: runs COMMAND detached in its own session, logging to run/logs.
start() {
  local name=$1
  shift
  # fd 9 is the stack lock: a server that inherited it would hold the lock for its lifetime.
  setsid "$@" >"$RUN_DIR/logs/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$RUN_DIR/$name.pid"
}

stop() {
  local name=$1 f=$RUN_DIR/$1.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    # Each server runs in its own session: signal the whole group, children included.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

lakefs_bin() { echo "$BIN_DIR/lakefs-$LAKEFS_VERSION"; }
minio_bin() { echo "$BIN_DIR/minio-$MINIO_VERSION"; }
kafka_libs() { echo "$STACK_DIR/kafka-$KAFKA_VERSION/libs"; }
promtool_bin() { echo "$BIN_DIR/promtool-$PROMETHEUS_VERSION"; }
mc_bin() { echo "$BIN_DIR/mc-$MC_VERSION"; }
fake_gcs_bin() { echo "$BIN_DIR/fake-gcs-server-$FAKE_GCS_VERSION"; }
rclone_bin() { echo "$BIN_DIR/rclone-$RCLONE_VERSION"; }
# Azurite's npm installation; complete once its marker is written.
azurite_dir() { echo "$STACK_DIR/azurite-$AZURITE_VERSION"; }
# The project's manifest checker (test/manifests): named by a hash of its sources, so an edit
# builds it anew.
manifest_check_bin() {
  local src=$STACK_SRC/../manifests
  echo "$BIN_DIR/manifest-check-$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-12)"
}
delta_venv() {
  echo "$STACK_DIR/python-deltalake-$DELTALAKE_VERSION-pyarrow-$PYARROW_VERSION-pyiceberg-$PYICEBERG_VERSION-fastavro-$FASTAVRO_VERSION-snappy-$PYTHON_SNAPPY_VERSION-zstd-$BACKPORTS_ZSTD_VERSION"
}
delta_python() { echo "$(delta_venv)/bin/python"; }
# The build of test/iceberg-java, named after its sources so that an edit builds anew.
iceberg_java_dir() {
  local sum
  sum=$(cat "$STACK_SRC/../iceberg-java/pom.xml" "$STACK_SRC"/../iceberg-java/src/main/java/*/*.java | sha256sum)
  echo "$STACK_DIR/iceberg-java-$ICEBERG_JAVA_VERSION-${sum:0:12}"
}
iceberg_java_cp() { echo "$(iceberg_java_dir)/classes:$(iceberg_java_dir)/libs/*"; }

# Sets KAFKA_JAVA to the JVM command line of Kafka's tools and broker.
kafka_java() {
  KAFKA_JAVA=(java -Xms128m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$STACK_SRC/kafka-log4j2.properties" -cp "$(kafka_libs)/*")
}

# kafka_ready PORT: the broker listens and its log says it started (since the last start).
kafka_ready() { port_open "$1" && grep -q "Kafka Server started" "$RUN_DIR/logs/kafka.log"; }
