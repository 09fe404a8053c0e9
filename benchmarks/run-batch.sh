#!/usr/bin/env bash
# Batch benchmark: Basin, DuckDB and Spark (local mode) side by side, in one run.
#
# Builds Basin in release mode (or takes BASIN_BIN), installs pyspark and
# DuckDB if they are missing, generates the data if it is not cached yet (the
# taxi trips with `basin gen taxi`, TPC-H with DuckDB's dbgen), then runs
# benchmarks/batch/bench_batch.py: the taxi ETL (benchmarks/batch/etl/*.sql)
# and the 22 TPC-H queries on every engine, best of N runs each. It writes
# benchmarks/results/batch-<date>.md (the table) and batch-<date>.jsonl (every
# measurement and check), and prints the table.
#
# Usage: bash benchmarks/run-batch.sh
# Knobs (environment):
#   TAXI_ROWS (10000000)  taxi rows; cached in ~/.cache/basin-bench/taxi-<rows>
#   TAXI_SEED (1)         seed of `basin gen taxi`
#   TPCH_SF (1)           TPC-H scale factor; cached in ~/.cache/basin-tpch/sf<SF>
#   RUNS (3)              runs per TPC-H query (best of)
#   ETL_RUNS (2)          runs of the ETL (best of)
#   ENGINES (basin,duckdb,spark)   a subset to run
#   ITEMS (etl,tpch)      what to run
#   QUERIES               TPC-H query numbers, e.g. 1,6,18 (default: all 22)
#   THREADS (nproc)       threads for every engine
#   SPARK_DRIVER_MEMORY (8g), SPARK_CONF (k=v,k=v: extra Spark settings)
#   PYSPARK_VERSION (4.3.0)
#   TIMEOUT (1800)        seconds per ETL step or query before it counts as failed
#   BASIN_BIN             use this basin binary instead of building one
#   RESULTS_DIR (benchmarks/results)  where the .md and .jsonl go
#   CARGO_TARGET_DIR (~/.cache/basin-target), PYTHON (python3)
set -euo pipefail

T_START=$SECONDS
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/basin-target}
PYTHON=${PYTHON:-python3}

TAXI_ROWS=${TAXI_ROWS:-10000000}
TAXI_SEED=${TAXI_SEED:-1}
TPCH_SF=${TPCH_SF:-1}
RUNS=${RUNS:-3}
ETL_RUNS=${ETL_RUNS:-2}
ENGINES=${ENGINES:-basin,duckdb,spark}
ITEMS=${ITEMS:-etl,tpch}
QUERIES=${QUERIES:-}
THREADS=${THREADS:-$(nproc)}
SPARK_DRIVER_MEMORY=${SPARK_DRIVER_MEMORY:-8g}
SPARK_CONF=${SPARK_CONF:-}
PYSPARK_VERSION=${PYSPARK_VERSION:-4.3.0}
TIMEOUT=${TIMEOUT:-1800}
DUCKDB_PKGS=(duckdb==1.5.5 duckdb-extension-tpch==1.5.5)

DATE=$(date -u +%Y-%m-%d)
RESULTS_DIR=${RESULTS_DIR:-$ROOT/benchmarks/results}
OUT_MD=$RESULTS_DIR/batch-$DATE.md
OUT_JSONL=$RESULTS_DIR/batch-$DATE.jsonl
WORK=$(mktemp -d "${TMPDIR:-/tmp}/basin-batch-bench.XXXXXX")

log() { printf '[run-batch %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
has() { [[ ",$1," == *",$2,"* ]]; }

cleanup() {
    # The engines' outputs can be large; the logs and SQL files stay.
    rm -rf "$WORK/bin" "$WORK/work/basin/etl-data" "$WORK/work/basin/tpch-data" "$WORK/work/duckdb" \
        "$WORK/work/spark" 2>/dev/null || true
    log "logs kept in $WORK"
    log "total time: $((SECONDS - T_START)) s"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for e in ${ENGINES//,/ }; do
    case $e in basin | duckdb | spark) ;; *) die "ENGINES: unknown engine '$e' (basin, duckdb, spark)" ;; esac
done
for i in ${ITEMS//,/ }; do
    case $i in etl | tpch) ;; *) die "ITEMS: unknown item '$i' (etl, tpch)" ;; esac
done
has "$ENGINES" basin || log "note: Basin is not in ENGINES; the × columns will be empty"

pip_install() {
    log "pip install $*"
    if ! "$PYTHON" -m pip install --disable-pip-version-check -q "$@"; then
        # Debian's own python3 refuses plain pip installs (PEP 668).
        "$PYTHON" -m pip install --disable-pip-version-check -q --break-system-packages "$@"
    fi
}

# ------------------------------------------------------------------ basin ---
# Basin generates the taxi data, so it is needed even when it is not measured.
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

# --------------------------------------------------------------- python ---
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
if ! "$PYTHON" -c "import duckdb, duckdb_extension_tpch" >/dev/null 2>&1; then
    pip_install "${DUCKDB_PKGS[@]}"
fi
if has "$ENGINES" spark; then
    command -v java >/dev/null || die "Spark needs Java 17 or newer on PATH (java not found)"
    JAVA_MAJOR=$(java -version 2>&1 | awk -F'"' '/version/ { split($2, v, "."); print v[1]; exit }')
    ((JAVA_MAJOR >= 17)) || die "Spark $PYSPARK_VERSION needs Java 17+, found $(java -version 2>&1 | head -1)"
    have=$("$PYTHON" -c 'import pyspark; print(pyspark.__version__)' 2>/dev/null || true)
    if [[ $have != "$PYSPARK_VERSION" ]]; then
        log "pyspark ${have:-not installed}; installing pyspark==$PYSPARK_VERSION (about 400 MB)"
        pip_install "pyspark==$PYSPARK_VERSION"
    fi
fi

# ----------------------------------------------------------------- data ---
rows_label() { # 10000000 -> 10m, 200000 -> 200k
    local n=$1
    if ((n % 1000000 == 0)); then echo "$((n / 1000000))m"
    elif ((n % 1000 == 0)); then echo "$((n / 1000))k"
    else echo "$n"; fi
}
TAXI_DIR=""
if has "$ITEMS" etl; then
    [[ $TAXI_ROWS =~ ^[0-9]+$ ]] && ((TAXI_ROWS > 0)) || die "TAXI_ROWS must be a positive integer"
    TAXI_DIR=$HOME/.cache/basin-bench/taxi-$(rows_label "$TAXI_ROWS")
    [[ $TAXI_SEED == 1 ]] || TAXI_DIR=$TAXI_DIR-seed$TAXI_SEED
    MARK="rows=$TAXI_ROWS seed=$TAXI_SEED"
    if [[ -f $TAXI_DIR/_GENERATED && $(cat "$TAXI_DIR/_GENERATED") == "$MARK" ]]; then
        log "taxi data: $TAXI_DIR (cached)"
    else
        log "generating $TAXI_ROWS taxi rows into $TAXI_DIR"
        mkdir -p "$(dirname "$TAXI_DIR")"
        tmp=$TAXI_DIR.tmp.$$
        rm -rf "$tmp"
        # Part files of 1M rows (one row group each): every engine can split
        # the input over its threads.
        "$BIN" gen taxi --rows "$TAXI_ROWS" --seed "$TAXI_SEED" --rows-per-file 1000000 --out "$tmp/"
        echo "$MARK" >"$tmp/_GENERATED"
        rm -rf "$TAXI_DIR"
        mv "$tmp" "$TAXI_DIR"
    fi
fi
TPCH_DIR=""
if has "$ITEMS" tpch; then
    TPCH_ROOT=$HOME/.cache/basin-tpch/sf$TPCH_SF
    # Generates the 8 tables with DuckDB's dbgen (and DuckDB's answers) unless
    # they are already there; a no-op when the cache is complete.
    log "TPC-H data: $TPCH_ROOT"
    "$PYTHON" "$ROOT/scripts/tpch_reference.py" "$TPCH_ROOT" --sf "$TPCH_SF"
    TPCH_DIR=$TPCH_ROOT/data
fi

# ------------------------------------------------------------------ run ---
mkdir -p "$RESULTS_DIR"
COMMAND="TAXI_ROWS=$TAXI_ROWS TPCH_SF=$TPCH_SF RUNS=$RUNS ETL_RUNS=$ETL_RUNS ENGINES=$ENGINES ITEMS=$ITEMS"
[[ -z $QUERIES ]] || COMMAND+=" QUERIES=$QUERIES"
COMMAND+=" bash benchmarks/run-batch.sh"
args=(--basin "$BIN" --engines "$ENGINES" --items "$ITEMS" --runs "$RUNS" --etl-runs "$ETL_RUNS"
    --threads "$THREADS" --spark-memory "$SPARK_DRIVER_MEMORY" --spark-conf "$SPARK_CONF"
    --timeout "$TIMEOUT" --work "$WORK/work" --out-md "$OUT_MD" --out-jsonl "$OUT_JSONL"
    --tpch-sf "$TPCH_SF" --queries "$QUERIES" --command "$COMMAND")
[[ -z $TAXI_DIR ]] || args+=(--taxi "$TAXI_DIR")
[[ -z $TPCH_DIR ]] || args+=(--tpch "$TPCH_DIR")
log "running the benchmark (engine logs: $WORK/driver.log)"
# The table goes to stdout; Spark's own log lines and the progress to the log
# file and to stderr.
"$PYTHON" "$ROOT/benchmarks/batch/bench_batch.py" "${args[@]}" 2> >(tee "$WORK/driver.log" >&2)
log "wrote $OUT_MD and $OUT_JSONL"
