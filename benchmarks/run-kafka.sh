#!/usr/bin/env bash
# Kafka benchmark: Basin and Tansu side by side, in one run.
#
# Builds Basin and kafka-bench in release mode, installs Tansu if needed,
# measures the disk's sequential write bandwidth, starts both brokers on
# loopback with fresh data directories, runs the same matrix against each
# (producer throughput: 100 B / 1 KB x 1 / 6 partitions x acks=1 / all;
# consumer throughput; end-to-end latency), then writes
# benchmarks/results/kafka-<date>.md (+ .jsonl with the raw measurements) and
# prints the Markdown table. Both brokers are stopped on exit.
#
# Usage: bash benchmarks/run-kafka.sh
# Knobs (environment): RECORDS_100 (500000), RECORDS_1K (200000),
# CELL_SECONDS (10, cap per producer cell), E2E_RATE (2000), E2E_SECONDS (5),
# BASIN_FLUSH (interval:1000, Basin's default), PRODUCERS (1: producer clients
# per throughput cell, see kafka-bench --producers), EXTRAS (1: also run Basin with
# flush.policy=every-batch for acks=all and Tansu's non-durable memory://
# engine, for reference), TANSU_WAIT_MINUTES (90).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/basin-target}
PEERS=${BASIN_PEERS_DIR:-$HOME/.cache/basin-peers}
TANSU_ROOT=$PEERS/tansu
TANSU_BIN=$TANSU_ROOT/bin/tansu
TANSU_LOG=$PEERS/tansu-install.log

RECORDS_100=${RECORDS_100:-500000}
RECORDS_1K=${RECORDS_1K:-200000}
CELL_SECONDS=${CELL_SECONDS:-10}
E2E_RATE=${E2E_RATE:-2000}
E2E_SECONDS=${E2E_SECONDS:-5}
E2E_SIZE=${E2E_SIZE:-1000}
BASIN_FLUSH=${BASIN_FLUSH:-interval:1000}
PRODUCERS=${PRODUCERS:-1}
EXTRAS=${EXTRAS:-1}
TANSU_WAIT_MINUTES=${TANSU_WAIT_MINUTES:-90}

DATE=$(date -u +%Y-%m-%d)
RESULTS_DIR=$ROOT/benchmarks/results
STAMP=$DATE
# A second run on the same day keeps the first one's files.
[[ -e $RESULTS_DIR/kafka-$STAMP.md ]] && STAMP=$DATE-$(date -u +%H%M)
OUT_MD=$RESULTS_DIR/kafka-$STAMP.md
OUT_JSONL=$RESULTS_DIR/kafka-$STAMP.jsonl
WORK=$(mktemp -d "${TMPDIR:-/tmp}/basin-kafka-bench.XXXXXX")
RAW=$WORK/results.jsonl
: >"$RAW"

log() { printf '[run-kafka %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- brokers ---
declare -A PID=() PORT=() ADDR_OK=()
stop_brokers() {
    for name in "${!PID[@]}"; do
        local pid=${PID[$name]}
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
        fi
        unset "PID[$name]"
    done
}
cleanup() {
    stop_brokers
    rm -rf "$WORK"/data-* "$WORK"/dd.tmp 2>/dev/null || true
    log "logs kept in $WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # name port seconds
    local deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        if ! kill -0 "${PID[$1]}" 2>/dev/null; then
            log "$1 exited during start-up; last log lines:"; tail -20 "$WORK/$1.log" >&2
            return 1
        fi
        (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
        sleep 0.2
    done
    log "$1 did not open port $2 within $3 s"; return 1
}

start_basin() { # name flush-policy
    local name=$1 port; port=$(free_port)
    mkdir -p "$WORK/data-$name"
    "$BIN/basin" up --listen "127.0.0.1:$port" --data-dir "$WORK/data-$name" \
        --log-config "flush.policy=$2" >"$WORK/$name.log" 2>&1 &
    PID[$name]=$!; PORT[$name]=$port
    wait_port "$name" "$port" 30 && ADDR_OK[$name]=1
    log "$name (flush.policy=$2) on 127.0.0.1:$port, pid ${PID[$name]}"
}

start_tansu() { # name storage-url (relative sqlite paths resolve in the data dir)
    local name=$1 port; port=$(free_port)
    mkdir -p "$WORK/data-$name"
    (cd "$WORK/data-$name" && exec "$TANSU_BIN" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "$2" --silent) >"$WORK/$name.log" 2>&1 &
    PID[$name]=$!; PORT[$name]=$port
    wait_port "$name" "$port" 60 && ADDR_OK[$name]=1
    log "$name (storage $2) on 127.0.0.1:$port, pid ${PID[$name]}"
}

# ------------------------------------------------------------ measurement ---
# bench NAME CASE-ARGS...: run kafka-bench against broker NAME, append its JSON
# lines (or a failure line) to $RAW.
fail_json() { # label exit-code message args
    python3 -c 'import json, sys
print(json.dumps({"label": sys.argv[1], "failed": True, "exit": int(sys.argv[2]),
                  "error": sys.argv[3], "args": sys.argv[4]}))' "$@"
}

RUN_NO=0
bench() {
    local name=$1; shift
    RUN_NO=$((RUN_NO + 1))
    local errf=$WORK/bench-$RUN_NO-$name.err
    if [[ -z ${ADDR_OK[$name]:-} ]]; then
        fail_json "$name" 0 "broker not running" "$*" >>"$RAW"
        return 0
    fi
    log "$name: kafka-bench $*"
    local out rc=0
    out=$(RUST_BACKTRACE=0 timeout 300 "$BIN/kafka-bench" --brokers "127.0.0.1:${PORT[$name]}" \
        --label "$name" --topic "bench$RUN_NO" "$@" 2>"$errf") || rc=$?
    if [[ -n $out ]]; then
        printf '%s\n' "$out" >>"$RAW"
        printf '%s\n' "$out" | cut -c1-400 >&2
    fi
    if ((rc != 0)); then
        local msg; msg=$(grep -v '^$' "$errf" | tail -3 | tr -s ' \n' '  ' | cut -c1-400)
        log "$name: kafka-bench failed (exit $rc): $msg"
        log "$name: last broker log lines:"; tail -15 "$WORK/$name.log" >&2
        fail_json "$name" "$rc" "$msg" "$*" >>"$RAW"
    fi
    if ! kill -0 "${PID[$name]}" 2>/dev/null; then
        log "$name died; last log lines:"; tail -30 "$WORK/$name.log" >&2
        unset "ADDR_OK[$name]"
    fi
    return 0
}

# ------------------------------------------------------------------ build ---
cd "$ROOT"
log "building basin and kafka-bench (release; shared target dir $CARGO_TARGET_DIR)"
cargo build --release -p basin -p kafka-bench
BIN=$WORK/bin
mkdir -p "$BIN"
# Private hard links (copies across file systems), so a concurrent rebuild
# cannot swap a binary mid-run: a rebuild writes a new file, and the basin
# binary is large enough (~0.9 GB with debug info) that copying it matters
# on a full disk.
for b in basin kafka-bench; do
    ln -f "$CARGO_TARGET_DIR/release/$b" "$BIN/$b" 2>/dev/null ||
        cp "$CARGO_TARGET_DIR/release/$b" "$BIN/$b"
done
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git -C "$ROOT" status --porcelain -- crates 2>/dev/null | wc -l)

# ------------------------------------------------------------------ tansu ---
install_tansu() {
    mkdir -p "$PEERS"
    local waited=0
    while [[ ! -x $TANSU_BIN ]]; do
        if pgrep -f "cargo install tansu" >/dev/null 2>&1; then
            if ((waited == 0)); then
                log "another process is installing Tansu (see $TANSU_LOG); waiting for it"
            fi
            ((waited++ % 12 == 0)) && log "  ... $(tail -1 "$TANSU_LOG" 2>/dev/null | cut -c1-80)"
            ((waited > TANSU_WAIT_MINUTES * 12)) && return 1
            sleep 5
            continue
        fi
        if ((waited > 0)); then
            [[ -x $TANSU_BIN ]] && break
            log "the other Tansu install ended without a binary; last log lines:"
            tail -5 "$TANSU_LOG" >&2 || true
        fi
        log "installing Tansu (log: $TANSU_LOG; takes ~15+ min on 2 cores)"
        cargo install tansu --locked --features libsql,dynostore --root "$TANSU_ROOT" \
            >"$TANSU_LOG" 2>&1 || { tail -20 "$TANSU_LOG" >&2; return 1; }
    done
}
if install_tansu; then
    TANSU_VERSION=$("$TANSU_BIN" --version 2>/dev/null | head -1 || echo "tansu (version unknown)")
else
    log "Tansu is not available; its column will be empty"
    TANSU_VERSION="not installed"
fi

# ------------------------------------------------------------------- disk ---
dd_mbps() { # dd args...: MB/s (10^6 bytes/s) computed from dd's own byte and time counts
    local line
    line=$(dd if=/dev/zero of="$WORK/dd.tmp" bs=1M count=1024 "$@" 2>&1 | tail -1)
    rm -f "$WORK/dd.tmp"
    # "1073741824 bytes (1.1 GB, 1.0 GiB) copied, 2.3 s, 467 MB/s"
    awk -F', ' '{ split($3, t, " "); printf "%.0f\n", ($1 + 0) / t[1] / 1e6 }' <<<"$line"
}
log "measuring sequential write bandwidth of $(df -P "$WORK" | awk 'NR==2{print $1" ("$6")"}')"
sync
DISK_DIRECT=$(dd_mbps oflag=direct)
DISK_FDATASYNC=$(dd_mbps conv=fdatasync)
DISK_REF=$((DISK_DIRECT > DISK_FDATASYNC ? DISK_DIRECT : DISK_FDATASYNC))
log "disk: ${DISK_DIRECT} MB/s (O_DIRECT), ${DISK_FDATASYNC} MB/s (buffered + fdatasync); reference ${DISK_REF} MB/s"

# ---------------------------------------------------------------- brokers ---
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
start_basin basin "$BASIN_FLUSH" || true
if [[ -x $TANSU_BIN ]]; then
    start_tansu tansu "sqlite://tansu.db" || true
fi
BROKERS=(basin tansu)

# ----------------------------------------------------------------- matrix ---
T0=$SECONDS
for size in 100 1000; do
    if ((size == 100)); then n=$RECORDS_100; else n=$RECORDS_1K; fi
    for parts in 1 6; do
        for b in "${BROKERS[@]}"; do
            bench "$b" --tests produce,consume --acks 1 --record-size "$size" \
                --partitions "$parts" --records "$n" --seconds "$CELL_SECONDS" \
                --producers "$PRODUCERS"
            bench "$b" --tests produce --acks all --record-size "$size" \
                --partitions "$parts" --records "$n" --seconds "$CELL_SECONDS" \
                --producers "$PRODUCERS"
        done
    done
done
for acks in 1 all; do
    for b in "${BROKERS[@]}"; do
        bench "$b" --tests e2e --acks "$acks" --record-size "$E2E_SIZE" --partitions 1 \
            --e2e-rate "$E2E_RATE" --e2e-seconds "$E2E_SECONDS"
    done
done
if [[ $EXTRAS == 1 ]]; then
    # Reference: latency when the consumer does not rely on the broker
    # answering a waiting fetch as soon as data arrives.
    for b in "${BROKERS[@]}"; do
        bench "$b" --tests e2e --acks 1 --record-size "$E2E_SIZE" --partitions 1 \
            --e2e-rate "$E2E_RATE" --e2e-seconds "$E2E_SECONDS" --fetch-wait-ms 10
    done
fi

# ------------------------------------------------------ reference extras ---
if [[ $EXTRAS == 1 ]]; then
    stop_brokers
    rm -rf "$WORK"/data-*
    start_basin basin-every-batch every-batch || true
    if [[ -x $TANSU_BIN ]]; then start_tansu tansu-memory "memory://tansu/" || true; fi
    for size in 100 1000; do
        if ((size == 100)); then n=$RECORDS_100; else n=$RECORDS_1K; fi
        for parts in 1 6; do
            bench basin-every-batch --tests produce --acks all --record-size "$size" \
                --partitions "$parts" --records "$n" --seconds "$CELL_SECONDS"
        done
        if [[ -x $TANSU_BIN ]]; then
            bench tansu-memory --tests produce --acks 1 --record-size "$size" \
                --partitions 6 --records "$n" --seconds "$CELL_SECONDS"
        fi
    done
fi
stop_brokers
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
log "matrix done in $((SECONDS - T0)) s"

# ----------------------------------------------------------------- report ---
mkdir -p "$RESULTS_DIR"
cp "$RAW" "$OUT_JSONL"
export RAW OUT_MD DATE GIT_REV GIT_DIRTY TANSU_VERSION DISK_DIRECT DISK_FDATASYNC DISK_REF \
    BASIN_FLUSH PRODUCERS LOAD_START LOAD_END RECORDS_100 RECORDS_1K CELL_SECONDS E2E_RATE E2E_SECONDS \
    E2E_SIZE EXTRAS
python3 "$ROOT/benchmarks/report-kafka.py"
log "wrote $OUT_MD and $OUT_JSONL"
