#!/usr/bin/env bash
# Nexmark benchmark: Basin and Apache Flink (local mode) side by side, in one run.
#
# Builds Basin in release mode (or takes BASIN_BIN), installs apache-flink
# from PyPI into a venv under ~/.cache if it is missing, compiles the
# benchmark's small Flink jar (benchmarks/nexmark/flink/java: a counting
# blackhole sink and Nexmark's count_char UDF), then runs
# benchmarks/nexmark/bench_nexmark.py. That starts a fresh `basin up` broker,
# generates the events once as JSON-lines files (Flink's input) and once into
# topics (Basin's input), and runs every benchmarks/nexmark/queries/q*.sql on
# Basin (stream mode, bounded) and its counterpart benchmarks/nexmark/flink/q*.sql
# on Flink (streaming TableEnvironment), both with parallelism 1 and
# exactly-once checkpoints every 10 s. It writes
# benchmarks/results/nexmark-<date>.md (the table) and nexmark-<date>.jsonl
# (every measurement), and prints the table. A query with no Flink file is
# run on Basin only and the report says so.
#
# Usage: bash benchmarks/run-nexmark.sh [--events N] [--quick]
#   --events N   events to generate (default 10000000)
#   --quick      a smoke run: 200000 events
# Knobs (environment):
#   QUERIES             e.g. q0,q2 (default: every q*.sql in benchmarks/nexmark/queries)
#   ENGINES (basin,flink)  a subset to run
#   RUNS (1)            runs per query and engine (the fastest counts)
#   PARTITIONS (1)      partitions of the person/auction/bid topics
#   PARALLELISM (1), CHECKPOINT_INTERVAL (10s)
#   TIMEOUT (1800)      seconds per run before it counts as failed
#   FLINK_VERSION (2.3.0)  apache-flink version in the venv
#   FLINK_VENV (~/.cache/basin-peers/flink-venv-<version>)
#   BASIN_BIN           use this basin binary instead of building one
#   BASIN_REV           the commit BASIN_BIN was built from (for the report)
#   RESULTS_DIR (benchmarks/results), CARGO_TARGET_DIR (~/.cache/basin-target)
set -euo pipefail

T_START=$SECONDS
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/basin-target}
PYTHON=${PYTHON:-python3}

EVENTS=10000000
QUICK=0
while (($#)); do
    case $1 in
        --events) EVENTS=${2:?--events needs a number}; shift 2 ;;
        --events=*) EVENTS=${1#*=}; shift ;;
        --quick) QUICK=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
((QUICK)) && EVENTS=200000

QUERIES=${QUERIES:-}
ENGINES=${ENGINES:-basin,flink}
RUNS=${RUNS:-1}
PARTITIONS=${PARTITIONS:-1}
PARALLELISM=${PARALLELISM:-1}
CHECKPOINT_INTERVAL=${CHECKPOINT_INTERVAL:-10s}
TIMEOUT=${TIMEOUT:-1800}
FLINK_VERSION=${FLINK_VERSION:-2.3.0}
FLINK_VENV=${FLINK_VENV:-$HOME/.cache/basin-peers/flink-venv-$FLINK_VERSION}

DATE=$(date -u +%Y-%m-%d)
RESULTS_DIR=${RESULTS_DIR:-$ROOT/benchmarks/results}
OUT_MD=$RESULTS_DIR/nexmark-$DATE.md
OUT_JSONL=$RESULTS_DIR/nexmark-$DATE.jsonl
WORK=$(mktemp -d "${TMPDIR:-/tmp}/basin-nexmark-bench.XXXXXX")

log() { printf '[run-nexmark %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
has() { [[ ",$1," == *",$2,"* ]]; }

cleanup() {
    # The events and the broker's topics are large; the logs stay.
    rm -rf "${WORK:?}/bin" "$WORK/work/events" "$WORK/work/broker-data" "$WORK"/work/data-* \
        "$WORK/jar-build" 2>/dev/null || true
    log "logs kept in $WORK/work"
    log "total time: $((SECONDS - T_START)) s"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! [[ $EVENTS =~ ^[0-9]+$ ]] || ((EVENTS == 0)); then die "--events must be a positive integer"; fi
for e in ${ENGINES//,/ }; do
    case $e in basin | flink) ;; *) die "ENGINES: unknown engine '$e' (basin, flink)" ;; esac
done

# ------------------------------------------------------------------ basin ---
# Basin generates the events, so it is needed even when it is not measured.
cd "$ROOT"
if [[ -n ${BASIN_BIN:-} ]]; then
    [[ -x $BASIN_BIN ]] || die "BASIN_BIN=$BASIN_BIN is not an executable file"
    SRC_BIN=$BASIN_BIN
    log "using BASIN_BIN=$BASIN_BIN (no build)"
else
    log "building basin (release; shared target dir $CARGO_TARGET_DIR)"
    cargo build --release -p basin
    SRC_BIN=$CARGO_TARGET_DIR/release/basin
fi
mkdir -p "$WORK/bin"
# A private copy, so a concurrent rebuild cannot swap the binary mid-run.
cp "$SRC_BIN" "$WORK/bin/basin"
BIN=$WORK/bin/basin
log "$("$BIN" --version)"
if [[ -n ${BASIN_BIN:-} ]]; then
    # The work tree says nothing about a binary built elsewhere.
    GIT_REV=${BASIN_REV:-"unknown (BASIN_BIN)"}
else
    GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n $(git -C "$ROOT" status --porcelain -- crates 2>/dev/null) ]]; then GIT_REV+="+dirty"; fi
fi

# ----------------------------------------------------------------- flink ---
FLINK_PY=$FLINK_VENV/bin/python
JAR=""
if has "$ENGINES" flink; then
    command -v java >/dev/null || die "Flink needs Java 11 or newer on PATH (java not found)"
    command -v javac >/dev/null || die "the benchmark's Flink jar needs javac (a JDK), not found"
    have=$("$FLINK_PY" -c 'import importlib.metadata as m; print(m.version("apache-flink"))' \
        2>/dev/null || true)
    if [[ $have != "$FLINK_VERSION" ]]; then
        log "apache-flink ${have:-not installed} in $FLINK_VENV; installing apache-flink==$FLINK_VERSION (about 850 MB)"
        [[ -x $FLINK_PY ]] || "$PYTHON" -m venv "$FLINK_VENV"
        "$FLINK_PY" -m pip install --disable-pip-version-check -q "apache-flink==$FLINK_VERSION"
    fi
    FLINK_LIB=$("$FLINK_PY" -c 'import os, pyflink; print(os.path.join(os.path.dirname(pyflink.__file__), "lib"))')
    # The jar: rebuilt when a source is newer than it, or for another Flink.
    SRC=$ROOT/benchmarks/nexmark/flink/java
    JAR=$HOME/.cache/basin-peers/nexmark-flink-$FLINK_VERSION.jar
    if [[ ! -f $JAR ]] || [[ -n $(find "$SRC" -newer "$JAR" -type f) ]]; then
        log "compiling $SRC into $JAR"
        rm -rf "$WORK/jar-build"
        mkdir -p "$WORK/jar-build"
        FLINK_CP=$(printf '%s:' "$FLINK_LIB"/*.jar)
        javac --release 11 -nowarn -cp "${FLINK_CP%:}" \
            -d "$WORK/jar-build" "$SRC"/src/basin/nexmark/*.java
        cp -r "$SRC/META-INF" "$WORK/jar-build/"
        (cd "$WORK/jar-build" && "$PYTHON" -c '
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for d, _, fs in os.walk("."):
        for f in fs:
            z.write(os.path.join(d, f), os.path.relpath(os.path.join(d, f), "."))
' "$JAR.tmp")
        mv "$JAR.tmp" "$JAR"
    fi
fi

# ------------------------------------------------------------------ run ---
mkdir -p "$RESULTS_DIR"
if ((QUICK)); then COMMAND="bash benchmarks/run-nexmark.sh --quick"
else COMMAND="bash benchmarks/run-nexmark.sh --events $EVENTS"; fi
for k in QUERIES ENGINES RUNS PARTITIONS PARALLELISM CHECKPOINT_INTERVAL; do
    v=${!k}
    case $k:$v in ENGINES:basin,flink | RUNS:1 | PARTITIONS:1 | PARALLELISM:1 | CHECKPOINT_INTERVAL:10s | QUERIES:) ;;
        *) COMMAND="$k=$v $COMMAND" ;; esac
done
log "running the benchmark ($EVENTS events; work dir $WORK/work)"
"$PYTHON" "$ROOT/benchmarks/nexmark/bench_nexmark.py" --basin "$BIN" \
    --flink-python "$FLINK_PY" --flink-jar "${JAR:-none}" --flink-version "$FLINK_VERSION" \
    --events "$EVENTS" --partitions "$PARTITIONS" --parallelism "$PARALLELISM" \
    --checkpoint-interval "$CHECKPOINT_INTERVAL" --queries "$QUERIES" --engines "$ENGINES" \
    --runs "$RUNS" --timeout "$TIMEOUT" --work "$WORK/work" --out-md "$OUT_MD" \
    --out-jsonl "$OUT_JSONL" --command "$COMMAND" --git-rev "$GIT_REV"
log "wrote $OUT_MD and $OUT_JSONL"
