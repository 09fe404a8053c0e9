#!/usr/bin/env bash
# HTTP model serving benchmark: throughput and p50/p99 latency of
# `POST /v1/models/fare_model/predict` on `basin up` under wrk.
#
# Builds Basin in release mode (or takes BASIN_BIN), installs wrk from
# Debian if missing, trains fare_model (200 trees, the README's features)
# on 200,000 generated trips in a temporary data dir, starts `basin up`
# there, and runs wrk (2 threads, 16 connections, 20 s) with a body of one
# trip, then of 100 trips. wrk runs on the same 2 cores as the server.
# Writes benchmarks/results/serving-<date>.md and prints it.
#
# Usage: bash benchmarks/run-serving.sh
# Knobs: BASIN_BIN, DURATION (20s), CONNECTIONS (16), RESULTS_DIR
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/basin-target}
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-16}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/benchmarks/results}
log() { echo "[run-serving $(date +%H:%M:%S)] $*" >&2; }
[[ ${1:-} == -h || ${1:-} == --help ]] && { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0; }

if [[ -z ${BASIN_BIN:-} ]]; then
    log "building basin (release)"
    cargo build --release -q -p basin --manifest-path "$ROOT/Cargo.toml"
    BASIN_BIN=$CARGO_TARGET_DIR/release/basin
fi
command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y -q wrk >/dev/null; }

WORK=$(mktemp -d /tmp/basin-serving.XXXXXX)
DATA=$WORK/data
log "training fare_model in $DATA"
"$BASIN_BIN" gen taxi --rows 200000 --days 7 --out "$WORK/trips.parquet" >/dev/null 2>&1
"$BASIN_BIN" sql --data-dir "$DATA" "
CREATE EXTERNAL TABLE trips STORED AS PARQUET LOCATION '$WORK/trips.parquet';
CREATE TABLE lake.features AS
SELECT tpep_pickup_datetime AS pickup_ts, trip_distance,
       (date_part('epoch', tpep_dropoff_datetime) - date_part('epoch', tpep_pickup_datetime)) / 60.0 AS duration_min,
       date_part('hour', tpep_pickup_datetime) AS pickup_hour,
       date_part('dow', tpep_pickup_datetime) AS pickup_weekday,
       \"PULocationID\" AS pu_zone, \"DOLocationID\" AS do_zone, passenger_count, \"RatecodeID\" AS rate_code,
       fare_amount
FROM trips
WHERE fare_amount BETWEEN 2.5 AND 250 AND trip_distance > 0 AND trip_distance < 100
  AND tpep_dropoff_datetime > tpep_pickup_datetime
  AND tpep_dropoff_datetime < tpep_pickup_datetime + INTERVAL '3 hours';
CREATE MODEL fare_model OPTIONS (label = 'fare_amount', time_column = 'pickup_ts',
  validation = '1 day', stage = 'production') AS SELECT * FROM lake.features" 2>&1 | tail -1 >&2
ROWS=$("$BASIN_BIN" sql --data-dir "$DATA" --format json \
    "SELECT trip_distance, duration_min, pickup_hour, pickup_weekday, pu_zone, do_zone,
            coalesce(passenger_count, 1) AS passenger_count, coalesce(rate_code, 1) AS rate_code
     FROM lake.features LIMIT 100")
echo "$ROWS" | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
work = sys.argv[1]
for name, body in (("one", rows[0]), ("hundred", {"rows": rows})):
    open(f"{work}/{name}.json", "w").write(json.dumps(body))
    open(f"{work}/{name}.lua", "w").write(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        f"wrk.body = io.open(\"{work}/{name}.json\"):read(\"*a\")\n")
' "$WORK"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BASIN_BIN" up --data-dir "$DATA" --listen 127.0.0.1:0 --http "127.0.0.1:$PORT" 2>"$WORK/node.log" &
NODE=$!
trap 'kill $NODE 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/api/health" >/dev/null && break; sleep 0.1; done
URL=http://127.0.0.1:$PORT/v1/models/fare_model/predict
curl -sf -H 'Content-Type: application/json' --data @"$WORK/one.json" "$URL" >&2 \
    || { log "a first request failed"; cat "$WORK/node.log" >&2; exit 1; }
echo >&2

mkdir -p "$RESULTS_DIR"
OUT=$RESULTS_DIR/serving-$(date +%Y-%m-%d).md
{
    echo "# HTTP model serving — $(date +%Y-%m-%d)"
    echo
    echo "Command: \`bash benchmarks/run-serving.sh\`; Basin at git $(git -C "$ROOT" rev-parse --short HEAD), binary $BASIN_BIN;"
    echo "fare_model: 200 trees, 8 features; wrk -t2 -c$CONNECTIONS -d$DURATION on the same 2 cores as the server."
    echo
    echo "| body | requests/s | predictions/s | p50 | p90 | p99 |"
    echo "|---|---|---|---|---|---|"
} >"$OUT"
for body in one hundred; do
    log "wrk: $body"
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/$body.lua" "$URL" >"$WORK/wrk-$body.txt"
    cat "$WORK/wrk-$body.txt" >&2
    n=1; [[ $body == hundred ]] && n=100
    python3 - "$WORK/wrk-$body.txt" "$body" "$n" >>"$OUT" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
lat = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", t, re.M))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
note = f" ({errors.group(1)} non-2xx)" if errors else ""
print(f"| {sys.argv[2]} trip{'' if sys.argv[3] == '1' else 's'}{note} | {rps:,.0f} | {rps * int(sys.argv[3]):,.0f} | {lat['50']} | {lat['90']} | {lat['99']} |")
PY
done
cat "$OUT"
log "results in $OUT"
