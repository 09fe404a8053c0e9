#!/usr/bin/env bash
# ML benchmark: Basin's gradient-boosted trees (basin-ml) beside perpetual,
# LightGBM and scikit-learn on the taxi fare features, in one run.
#
# Builds benchmarks/ml-bench in release mode, installs lightgbm,
# scikit-learn and pyarrow into a venv under ~/.cache/basin-peers if they
# are missing (OMP_NUM_THREADS=2, as the machine has), then for each size:
# generates the trips, computes the features (the SQL of the tests, in
# Rust), holds out the last 7 days of the 31, trains Basin and perpetual
# (ml-bench) and LightGBM and scikit-learn (benchmarks/ml/bench_ml.py) on
# the same rows with matched parameters, and measures Basin's batch
# scoring on one thread. Writes benchmarks/results/ml-<date>.md and .jsonl.
#
# Usage: bash benchmarks/run-ml.sh [--sizes 1000000,10000000]
# Knobs: ML_VENV (~/.cache/basin-peers/ml-venv), RESULTS_DIR (benchmarks/results),
#        PERPETUAL_MAX_ROWS (2000000: perpetual runs only up to this size)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/basin-target}
SIZES=1000000,10000000
while (($#)); do
    case $1 in
        --sizes) SIZES=${2:?--sizes needs a list}; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
VENV=${ML_VENV:-$HOME/.cache/basin-peers/ml-venv}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/benchmarks/results}
PERPETUAL_MAX_ROWS=${PERPETUAL_MAX_ROWS:-2000000}
log() { echo "[run-ml $(date +%H:%M:%S)] $*" >&2; }

log "building ml-bench (release)"
cargo build --release -q -p ml-bench --manifest-path "$ROOT/Cargo.toml"
BENCH=$CARGO_TARGET_DIR/release/ml-bench
if ! "$VENV/bin/python" -c "import lightgbm, sklearn, pyarrow" 2>/dev/null; then
    log "installing lightgbm, scikit-learn, pyarrow into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q lightgbm scikit-learn pyarrow pandas
fi
export OMP_NUM_THREADS=2
WORK=$(mktemp -d /tmp/basin-ml-bench.XXXXXX)
mkdir -p "$RESULTS_DIR"
STAMP=$(date +%Y-%m-%d)
JSONL=$RESULTS_DIR/ml-$STAMP.jsonl
: >"$JSONL"
IFS=, read -ra sizes <<<"$SIZES"
for n in "${sizes[@]}"; do
    log "$n trips: Basin and perpetual"
    extra=()
    ((n > PERPETUAL_MAX_ROWS)) && extra=(--no-perpetual)
    "$BENCH" --rows "$n" --out "$WORK/features-$n.parquet" "${extra[@]}" | sed "s/^{/{\"trips\":$n,/" >>"$JSONL"
    log "$n trips: LightGBM and scikit-learn"
    "$VENV/bin/python" "$ROOT/benchmarks/ml/bench_ml.py" "$WORK/features-$n.parquet" | sed "s/^{/{\"trips\":$n,/" >>"$JSONL"
    rm -f "$WORK/features-$n.parquet"
done
"$VENV/bin/python" - "$JSONL" "$RESULTS_DIR/ml-$STAMP.md" "$(git -C "$ROOT" rev-parse --short HEAD)" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
out = [f"# ML: Basin vs LightGBM, scikit-learn and perpetual — {sys.argv[1].split('ml-')[-1][:10]}", "",
       f"Command: `bash benchmarks/run-ml.sh`; Basin at git {sys.argv[3]}, release build; 2 cores.", "",
       "| trips | clean rows (train / held out) | engine | fit s | held-out RMSE | R² | vs LightGBM time | vs LightGBM RMSE |",
       "|---|---|---|---|---|---|---|---|"]
for n in sorted({r["trips"] for r in rows}):
    at = {r["engine"]: r for r in rows if r["trips"] == n}
    lg = at.get("lightgbm")
    split = f'{at["basin"]["train_rows"]:,} / {at["basin"]["valid_rows"]:,}'
    for e in ("basin", "perpetual", "lightgbm", "sklearn"):
        if e not in at:
            continue
        r = at[e]
        rel_t = f'{r["seconds"] / lg["seconds"]:.2f}×' if lg else "-"
        rel_e = f'{(r["rmse"] / lg["rmse"] - 1) * 100:+.1f} %' if lg else "-"
        out.append(f'| {n:,} | {split} | {e} | {r["seconds"]:.2f} | {r["rmse"]:.4f} | {r["r2"]:.4f} | {rel_t} | {rel_e} |')
    s = at.get("basin_scoring")
    if s:
        out.append(f'| {n:,} | | basin batch scoring (1 thread) | {s["seconds"]:.2f} for {s["rows"]:,} rows | | | {s["per_second_per_core"]:,.0f} predictions/s/core | |')
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
log "results in $RESULTS_DIR/ml-$STAMP.md"
