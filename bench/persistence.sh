#!/bin/sh
# QoS 1 publish throughput with persistence off, on (acks after fsync) and on without
# synced acks, every message stored for an offline persistent subscriber of bench/#.
# Usage: bench/persistence.sh [SECONDS] [PUBLISHERS]   (release binaries in $BIN)
set -eu
BIN=${BIN:-target/release}
SECS=${1:-5}
PUBS=${2:-16}
PORT=${PORT:-18883}
run() {
    name=$1; extra=$2
    dir=$(mktemp -d /var/tmp/pigeon-persist.XXXXXX)
    chmod 755 "$dir"  # run as root, the broker writes as user mosquitto
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\nmax_queued_messages 0\n%s\n' \
        "$PORT" "$(printf "$extra" "$dir")" > "$dir/pigeon.conf"
    "$BIN/pigeon" -c "$dir/pigeon.conf" > "$dir/log" 2>&1 &
    pid=$!
    sleep 0.5
    "$BIN/pigeon-sub" -p "$PORT" -c -i keeper -q 1 -t 'bench/#' -E
    echo "== $name"
    "$BIN/pigeon-bench" --no-progress pub -p "$PORT" -c "$PUBS" -q 1 -d "$SECS" --pid "$pid"
    kill -TERM "$pid"; wait "$pid" || true
    grep -h "synced\|Restored" "$dir/log" || true
    du -sh "$dir/db" 2>/dev/null || true
    rm -rf "$dir"
}
run "persistence false" ""
run "persistence true" 'persistence true\npersistence_location %s/db/'
run "persistence true, persistence_sync_acks false" 'persistence true\npersistence_location %s/db/\npersistence_sync_acks false'
