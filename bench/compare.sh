#!/usr/bin/env bash
# bench/compare.sh: Pigeon against Debian's Mosquitto on this machine, scenario by scenario.
#
#   bench/compare.sh                 full run: 5 s per measurement, 3 rounds
#   bench/compare.sh --quick         short run: 1 s per measurement, smaller idle/retained sets
#   bench/compare.sh --rounds 5      more rounds (at least 3)
#   bench/compare.sh --only fanin    only the scenarios whose name contains a word (repeatable)
#   bench/compare.sh --no-build      use the release binaries already built
#
# Each measurement starts a fresh broker with the same configuration for both (a loopback
# listener on a free port, anonymous access, set_tcp_nodelay true, otherwise each broker's
# defaults), runs one pigeon-bench scenario against it and stops it. With two cores or more,
# the broker is pinned to core 0 and pigeon-bench to core 1 (taskset), so the comparison is of
# efficiency per core; Pigeon is also measured unpinned (broker and bench free to use every
# core). Brokers alternate within each round (Pigeon, Mosquitto, Pigeon unpinned, then again),
# so drifts of the machine hit all of them alike. The table gives the median of the rounds and
# the Pigeon/Mosquitto ratio; "goal" is the target of issue 9 for that ratio.
#
# Environment: MOSQUITTO (default /usr/sbin/mosquitto), CARGO_TARGET_DIR, OUT (directory for
# the raw JSON results; default a new temporary directory).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
QUICK=0
ROUNDS=3
BUILD=1
ONLY=()
while (($#)); do
    case $1 in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS=$2; shift ;;
        --only) ONLY+=("$2"); shift ;;
        --no-build) BUILD=0 ;;
        -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
((ROUNDS >= 3)) || { echo "compare.sh: at least 3 rounds" >&2; exit 2; }

MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
[[ -x $MOSQUITTO ]] || { echo "compare.sh: no $MOSQUITTO (apt-get install mosquitto)" >&2; exit 1; }
for tool in python3 taskset; do
    command -v "$tool" >/dev/null || { echo "compare.sh: $tool is needed" >&2; exit 1; }
done

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if ((BUILD)); then
    (cd "$ROOT" && cargo build --release --locked -p pigeon-cli --bin pigeon -p pigeon-bench --bin pigeon-bench)
fi
PIGEON=$TARGET/release/pigeon
BENCH=$TARGET/release/pigeon-bench
[[ -x $PIGEON && -x $BENCH ]] || { echo "compare.sh: build the release binaries first" >&2; exit 1; }

OUT=${OUT:-$(mktemp -d /tmp/pigeon-compare.XXXXXX)}
mkdir -p "$OUT"
# Every idle connection is a file in the broker and in the bench.
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)

if (($(nproc) >= 2)); then
    PIN_BROKER=(taskset -c 0)
    PIN_BENCH=(taskset -c 1)
    PINNED=1
else
    PIN_BROKER=()
    PIN_BENCH=()
    PINNED=0
fi

if ((QUICK)); then
    DUR=1; DRAIN=1; IDLE=2000; RETAINED=20000
else
    DUR=5; DRAIN=3; IDLE=$((NOFILE > 20000 ? 19000 : NOFILE - 1000)); RETAINED=100000
fi
FLOW=(-d "$DUR" --drain "$DRAIN")

# name | pigeon-bench arguments | extra configuration | metrics (key:goal ...)
# A goal >=X wants Pigeon/Mosquitto at least X (higher is better); <=X at most X (lower is better).
# broker_cpu_us_per_msg is the broker's CPU time per delivered message: the efficiency per core
# whatever the pipeline's latency (1.5x the throughput per core is 0.67x the CPU per message).
SCENARIOS=(
    "fanin16-q0-16B|fanin --publishers 16 -q 0 -s 16||throughput:>=1.5 broker_cpu_us_per_msg:<=0.67"
    "fanin16-q1-16B|fanin --publishers 16 -q 1 -s 16||throughput:>=1.5 broker_cpu_us_per_msg:<=0.67"
    "fanin16-q0-1KiB|fanin --publishers 16 -q 0 -s 1024||throughput:>=1.5 broker_cpu_us_per_msg:<=0.67"
    "fanin16-q1-1KiB|fanin --publishers 16 -q 1 -s 1024||throughput:>=1.5 broker_cpu_us_per_msg:<=0.67"
    "fanout50-q0-16B|fanout --subscribers 50 -q 0 -s 16||throughput:>=1.5 broker_cpu_us_per_msg:<=0.67"
    "fanout50-q1-16B|fanout --subscribers 50 -q 1 -s 16||throughput:>=1.5 broker_cpu_us_per_msg:<=0.67"
    "fanout500-q0-16B|fanout --subscribers 500 -q 0 -s 16||throughput:>=1.5 broker_cpu_us_per_msg:<=0.67"
    "fanout500-q1-16B|fanout --subscribers 500 -q 1 -s 16||throughput:>=1.5 broker_cpu_us_per_msg:<=0.67"
    "pairs100-q0-16B|pairs --pairs 100 -q 0 -s 16||throughput:>=1.5 broker_cpu_us_per_msg:<=0.67"
    "pairs100-q1-16B|pairs --pairs 100 -q 1 -s 16||throughput:>=1.5 broker_cpu_us_per_msg:<=0.67"
    "pairs1000-q0-16B|pairs --pairs 1000 -q 0 -s 16||throughput:>=1.5 broker_cpu_us_per_msg:<=0.67"
    "pairs1000-q1-16B|pairs --pairs 1000 -q 1 -s 16||throughput:>=1.5 broker_cpu_us_per_msg:<=0.67"
    "latency-1k|latency --rate 1000 -q 0 -s 16||latency_p50_us:<=1 latency_p99_us:<=1"
    "latency-10k|latency --rate 10000 -q 0 -s 16||latency_p50_us:<=1 latency_p99_us:<=1"
    "idle-conns|conns -c $IDLE --settle 3||broker_rss_per_conn:<=1 broker_cpu_us_per_connect:<=1 connects_per_s:>=1"
    "idle-conns-ka60|conns -c $IDLE --settle 3 --keep-alive 60||broker_rss_per_conn:<=1 broker_cpu_us_per_connect:<=1"
    "retained|retained --topics $RETAINED --filter #|max_queued_messages 0|receive_all_ms:<=1"
)

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

BROKER_PID=""
PORT=""
# start_broker KIND(pigeon|mosquitto) PIN(1|0) EXTRA_CONFIG
start_broker() {
    local kind=$1 pin=$2 extra=$3 dir bin
    dir=$(mktemp -d "$OUT/broker.XXXXXX")
    PORT=$(free_port)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\nuser root\n%s\n' \
        "$PORT" "$extra" >"$dir/broker.conf"
    bin=$PIGEON
    [[ $kind == mosquitto ]] && bin=$MOSQUITTO
    if ((pin)); then
        "${PIN_BROKER[@]}" "$bin" -c "$dir/broker.conf" >"$dir/log" 2>&1 &
    else
        "$bin" -c "$dir/broker.conf" >"$dir/log" 2>&1 &
    fi
    BROKER_PID=$!
    local i
    for i in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "compare.sh: $kind did not listen on $PORT:" >&2
    cat "$dir/log" >&2
    exit 1
}

stop_broker() {
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
}
trap '[[ -n $BROKER_PID ]] && kill "$BROKER_PID" 2>/dev/null; true' EXIT

# measure KIND PIN NAME ARGS EXTRA: one run, its JSON kept in $OUT/NAME.KIND.N.json
measure() {
    local kind=$1 pin=$2 name=$3 args=$4 extra=$5 round=$6 file
    file=$OUT/$name.$kind.$round.json
    start_broker "${kind%-unpinned}" "$pin" "$extra"
    local -a cmd=("$BENCH" --port "$PORT" --pid "$BROKER_PID" --json --no-progress)
    # shellcheck disable=SC2206 # scenario arguments are plain words
    local -a words=($args)
    case ${words[0]} in conns | retained) ;; *) words+=("${FLOW[@]}") ;; esac
    if ((pin)); then
        "${PIN_BENCH[@]}" "${cmd[@]}" "${words[@]}" >"$file" 2>"$file.err" || true
    else
        "${cmd[@]}" "${words[@]}" >"$file" 2>"$file.err" || true
    fi
    stop_broker
    if [[ ! -s $file ]]; then
        echo "  $name on $kind failed: $(head -c 300 "$file.err")" >&2
    fi
}

selected() {
    local name=$1 w
    ((${#ONLY[@]} == 0)) && return 0
    for w in "${ONLY[@]}"; do [[ $name == *"$w"* ]] && return 0; done
    return 1
}

KINDS=(pigeon mosquitto pigeon-unpinned)
echo "compare.sh: $(nproc) cores, pinned=$PINNED, $ROUNDS rounds, ${DUR}s per measurement, results in $OUT" >&2
echo "compare.sh: $("$MOSQUITTO" -h 2>&1 | head -1), pigeon at $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" >&2
for entry in "${SCENARIOS[@]}"; do
    IFS='|' read -r name args extra metrics <<<"$entry"
    selected "$name" || continue
    for round in $(seq "$ROUNDS"); do
        echo "  $name round $round" >&2
        for kind in "${KINDS[@]}"; do
            pin=$PINNED
            [[ $kind == pigeon-unpinned ]] && pin=0
            measure "$kind" "$pin" "$name" "$args" "$extra" "$round"
        done
    done
done

# The table: medians per scenario and metric.
python3 - "$OUT" "$ROUNDS" "${SCENARIOS[@]}" <<'PY'
import json, os, statistics, sys

out, rounds, scenarios = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
kinds = ["pigeon", "mosquitto", "pigeon-unpinned"]

def values(name, kind, key):
    vs = []
    for r in range(1, rounds + 1):
        path = os.path.join(out, f"{name}.{kind}.{r}.json")
        try:
            with open(path) as f:
                v = json.load(f)["results"].get(key)
        except (OSError, ValueError):
            continue
        if isinstance(v, (int, float)):
            vs.append(float(v))
    return vs

def med(vs):
    return statistics.median(vs) if vs else None

def fmt(v):
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"

def losses(name, kind):
    lost = []
    for r in range(1, rounds + 1):
        try:
            with open(os.path.join(out, f"{name}.{kind}.{r}.json")) as f:
                res = json.load(f)["results"]
        except (OSError, ValueError):
            continue
        if "lost" in res and res.get("expected"):
            lost.append(100.0 * res["lost"] / res["expected"])
    return med(lost)

rows = []
for entry in scenarios:
    name, _args, _extra, metrics = entry.split("|")
    if not any(os.path.exists(os.path.join(out, f"{name}.pigeon.1.json")) for _ in [0]):
        continue
    for m in metrics.split():
        key, goal = m.split(":")
        p, q, u = (med(values(name, k, key)) for k in kinds)
        ratio = p / q if p is not None and q not in (None, 0) else None
        met = "-"
        if ratio is not None:
            x = float(goal[2:])
            met = "yes" if (ratio >= x if goal.startswith(">=") else ratio <= x) else "NO"
        lp, lq = losses(name, "pigeon"), losses(name, "mosquitto")
        loss = "" if lp is None else f"{lp:.2f}% / {lq:.2f}%" if lq is not None else f"{lp:.2f}%"
        rows.append((f"{name} {key}", fmt(p), fmt(q), fmt(ratio) if ratio is None else f"{ratio:.2f}", goal, met, fmt(u), loss))

head = ("scenario metric", "pigeon", "mosquitto", "P/M", "goal", "met", "pigeon unpinned", "lost P / M")
widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
line = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
print(line(head))
print("  ".join("-" * w for w in widths))
for r in rows:
    print(line(r))
PY
