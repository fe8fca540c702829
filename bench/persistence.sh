#!/bin/sh
# QoS 1 publish throughput with persistence off, on (acks after fsync) and on without
# synced acks, every message stored for an offline persistent subscriber of bench/#.
# Usage: bench/persistence.sh [SECONDS] [PUBLISHERS]   (release binaries in $BIN)
#        bench/persistence.sh recovery                (MESSAGES=1000000 by default)
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

# Recovery time: MESSAGES (default 1,000,000) QoS 1 messages of 16 bytes stored for an offline
# persistent subscriber, then the broker killed (recovery replays the log) and started again,
# then stopped with SIGTERM (a final snapshot) and started again (recovery reads the snapshot).
recovery() {
    total=${MESSAGES:-1000000}
    dir=$(mktemp -d /var/tmp/pigeon-persist.XXXXXX)
    chmod 755 "$dir"
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\npersistence true\npersistence_location %s/db/\nautosave_interval 0\n' \
        "$PORT" "$dir" > "$dir/pigeon.conf"
    "$BIN/pigeon" -c "$dir/pigeon.conf" > "$dir/log" 2>&1 &
    pid=$!
    sleep 0.5
    "$BIN/pigeon-sub" -p "$PORT" -c -i keeper -q 1 -t 'bench/#' -E
    "$BIN/pigeon-bench" --no-progress pub -p "$PORT" -c 16 -q 1 --limit $((total / 16)) -d 600 | grep -E "acked|publish_rate"
    kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
    du -sh "$dir/db"
    echo "== recovery from the log (after SIGKILL)"
    "$BIN/pigeon" -c "$dir/pigeon.conf" >> "$dir/log" 2>&1 &
    pid=$!
    sleep 1
    while [ "$(grep -c 'version .* running' "$dir/log")" -lt 2 ]; do sleep 0.2; done
    grep -h "Restored" "$dir/log" | tail -1
    grep -h "VmHWM\|VmRSS" "/proc/$pid/status"
    kill -TERM "$pid"; wait "$pid" || true
    du -sh "$dir/db"
    echo "== recovery from the snapshot (after SIGTERM)"
    "$BIN/pigeon" -c "$dir/pigeon.conf" >> "$dir/log" 2>&1 &
    pid=$!
    sleep 1
    while [ "$(grep -c 'version .* running' "$dir/log")" -lt 3 ]; do sleep 0.2; done
    grep -h "Restored" "$dir/log" | tail -1
    kill -TERM "$pid"; wait "$pid" || true
    grep -h "Saved\|Error\|Warning" "$dir/log"
    rm -rf "$dir"
}

if [ "${1:-}" = recovery ]; then
    recovery
    exit
fi
run "persistence false" ""
run "persistence true" 'persistence true\npersistence_location %s/db/'
run "persistence true, persistence_sync_acks false" 'persistence true\npersistence_location %s/db/\npersistence_sync_acks false'
