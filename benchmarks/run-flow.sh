#!/usr/bin/env bash
# Orchestrator overhead: Basin (flow-bench, over SQLite and over PostgreSQL
# with one worker) vs Apache Airflow (LocalExecutor over PostgreSQL), the
# same DAG shapes of no-op shell tasks, in one run. Writes
# benchmarks/results/flow-<date>.{jsonl,md} and prints the table.
#
#   bash benchmarks/run-flow.sh
#
# Knobs: SHAPES (default chain:40,chain:1000,fanout:1000), RUNS (Basin runs
# per shape, default 3), AIRFLOW_MAX_SECONDS (cap per Airflow run, default
# 900), CONCURRENCY (Basin tasks at once, default 16).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/basin-target}"
SHAPES="${SHAPES:-chain:40,chain:1000,fanout:1000}"
RUNS="${RUNS:-3}"
CONCURRENCY="${CONCURRENCY:-16}"
AIRFLOW_MAX_SECONDS="${AIRFLOW_MAX_SECONDS:-900}"
DAY="$(date +%Y-%m-%d)"
OUT="benchmarks/results/flow-$DAY.jsonl"
MD="benchmarks/results/flow-$DAY.md"

echo "building flow-bench (release)..." >&2
cargo build --release -q -p flow-bench
BENCH="$(mktemp -d)/flow-bench"
cp "$CARGO_TARGET_DIR/release/flow-bench" "$BENCH"
PG_URL="$(bash scripts/pg-test-server.sh | tail -1)"
SEP='?'; [[ $PG_URL == *\?* ]] && SEP='&'

: > "$OUT"
echo "basin over SQLite..." >&2
"$BENCH" --shapes "$SHAPES" --runs "$RUNS" --concurrency "$CONCURRENCY" >> "$OUT"
echo "basin over PostgreSQL (1 worker)..." >&2
"$BENCH" --shapes "$SHAPES" --runs "$RUNS" --concurrency "$CONCURRENCY" \
  --metadata "${PG_URL}${SEP}schema=flowbench_$$" >> "$OUT"
echo "airflow..." >&2
python3 benchmarks/flow/bench_airflow.py --shapes "$SHAPES" --max-seconds "$AIRFLOW_MAX_SECONDS" >> "$OUT"
python3 benchmarks/flow/report.py "$OUT" "$(git rev-parse --short HEAD)" > "$MD"
cat "$MD"
