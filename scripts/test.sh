#!/usr/bin/env bash
# The one command that installs what the tests need and runs every test:
#
#   bash scripts/test.sh
#
# 1. installs missing tools: kcat (apt), the Python packages in tests/requirements.txt (pip)
#    and DuckDB with its tpch extension (pip), then generates the TPC-H reference
#    answers (scripts/tpch_reference.py, cached in ~/.cache/basin-tpch), and starts a
#    PostgreSQL server for the tests (scripts/pg-test-server.sh; Debian's postgresql)
# 2. gates: cargo fmt --check, cargo build (dev), cargo clippy -D warnings
# 3. Rust tests: cargo nextest (or cargo test) over the workspace, plus doctests
# 4. client-compatibility suite: pytest tests/clients against $CARGO_TARGET_DIR/debug/basin
#
# Every step runs even if an earlier one failed (except that tests need a
# successful build); the script exits non-zero if any step failed.
# Environment: CARGO_TARGET_DIR (default ~/.cache/basin-target), PYTHON
# (default python3), BASIN_PYTEST_ARGS (extra pytest arguments),
# BASIN_SKIP_CLIENT_TESTS=1 to skip the Python suite when iterating locally.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/basin-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
PYTHON="${PYTHON:-python3}"
LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/basin-test.XXXXXX")"
START_TS=$(date +%s)

FAILED=()
STEPS=()
SUMMARY_LINES=()

section() {
  printf '\n==================== %s ====================\n' "$*"
}

elapsed() {
  echo "$(( $(date +%s) - START_TS ))s"
}

# run_step NAME CMD...: run a step, record pass/fail in LAST_RC, never abort the script.
LAST_RC=0
run_step() {
  local name="$1"
  shift
  section "$name"
  echo "+ $*"
  local t0 rc
  t0=$(date +%s)
  set +e
  "$@"
  rc=$?
  set -e
  LAST_RC=$rc
  if [[ $rc -eq 0 ]]; then
    STEPS+=("ok      $name")
    echo "---- $name: ok ($(( $(date +%s) - t0 ))s)"
  else
    FAILED+=("$name")
    STEPS+=("FAILED  $name (exit code $rc)")
    echo "---- $name: FAILED with exit code $rc ($(( $(date +%s) - t0 ))s)"
  fi
  return 0
}

# ---------------------------------------------------------------------------
section "Environment"
echo "repo:             $ROOT"
echo "CARGO_TARGET_DIR: $CARGO_TARGET_DIR"
echo "CI:               ${CI:-}"
cargo --version
rustc --version
"$PYTHON" --version

# ---------------------------------------------------------------------------
section "Install test dependencies"

APT_UPDATED=0
apt_install() {
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    sudo=(sudo)
  fi
  if [[ $APT_UPDATED -eq 0 ]]; then
    echo "+ apt-get update"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq
    APT_UPDATED=1
  fi
  echo "+ apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@"
}

apt_missing=()
command -v kcat >/dev/null 2>&1 || command -v kafkacat >/dev/null 2>&1 || apt_missing+=(kcat)
command -v cc >/dev/null 2>&1 || apt_missing+=(gcc libc6-dev)
command -v make >/dev/null 2>&1 || apt_missing+=(make)
command -v timeout >/dev/null 2>&1 || apt_missing+=(coreutils)
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
  apt_missing+=(python3-pip)
fi
if [[ ${#apt_missing[@]} -gt 0 ]]; then
  apt_install "${apt_missing[@]}"
else
  echo "apt packages: nothing missing (kcat: $(command -v kcat || command -v kafkacat))"
fi

PY_IMPORTS="import kafka, confluent_kafka, pytest, pytest_timeout"
if ! "$PYTHON" -c "$PY_IMPORTS" >/dev/null 2>&1; then
  echo "+ $PYTHON -m pip install -r tests/requirements.txt"
  if ! "$PYTHON" -m pip install --disable-pip-version-check -q -r tests/requirements.txt; then
    # Debian's own python3 refuses plain pip installs (PEP 668).
    "$PYTHON" -m pip install --disable-pip-version-check -q --break-system-packages -r tests/requirements.txt
  fi
  "$PYTHON" -c "$PY_IMPORTS"
else
  echo "python packages: already importable"
fi
"$PYTHON" -c 'import kafka, confluent_kafka, pytest; from importlib.metadata import version; print("kafka-python", kafka.__version__, "| confluent-kafka", version("confluent-kafka"), "| librdkafka", confluent_kafka.libversion()[0], "| pytest", pytest.__version__)'

# DuckDB and its tpch extension make the reference for basin-sql's TPC-H test
# (crates/basin-sql/tests/tpch.rs); the extension must match DuckDB's version.
DUCKDB_PKGS=(duckdb==1.5.5 duckdb-extension-tpch==1.5.5)
if ! "$PYTHON" -c "import duckdb, duckdb_extension_tpch" >/dev/null 2>&1; then
  echo "+ $PYTHON -m pip install ${DUCKDB_PKGS[*]}"
  if ! "$PYTHON" -m pip install --disable-pip-version-check -q "${DUCKDB_PKGS[@]}"; then
    "$PYTHON" -m pip install --disable-pip-version-check -q --break-system-packages "${DUCKDB_PKGS[@]}"
  fi
fi
run_step "TPC-H reference (DuckDB)" "$PYTHON" scripts/tpch_reference.py

# A real PostgreSQL server for basin-sql's PostgreSQL tests (installed from
# Debian when missing; reused when already running).
start_pg() {
  local url
  url="$(bash scripts/pg-test-server.sh)" || return 1
  export BASIN_TEST_PG_URL="$url"
  echo "BASIN_TEST_PG_URL=$url"
}
run_step "PostgreSQL test server" start_pg

if cargo nextest --version >/dev/null 2>&1; then
  HAVE_NEXTEST=1
else
  HAVE_NEXTEST=0
  echo "cargo-nextest not installed: falling back to cargo test"
fi

# ---------------------------------------------------------------------------
run_step "cargo fmt --check" cargo fmt --all -- --check

# Test binaries link DataFusion with debug info (about 1 GB each) and every
# change leaves the old ones behind: keep only the newest of each name, so the
# persistent target dir does not fill the disk.
prune_stale_test_binaries() {
  local deps="$CARGO_TARGET_DIR/debug/deps"
  [[ -d $deps ]] || return 0
  find "$deps" -maxdepth 1 -type f -executable -size +50M -printf '%T@ %p\n' |
    sort -rn | awk '{ n = $2; sub(/.*\//, "", n); sub(/-[0-9a-f]+$/, "", n); if (seen[n]++) print $2 }' |
    xargs -r rm -f
}
prune_stale_test_binaries
mkdir -p "$CARGO_TARGET_DIR"
df -h "$CARGO_TARGET_DIR" | tail -1 || true

run_step "cargo build (dev)" cargo build --workspace --bins
BUILD_OK=0
if [[ $LAST_RC -eq 0 ]]; then
  BUILD_OK=1
fi

run_step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings

# ---------------------------------------------------------------------------
rust_tests() {
  local log="$LOG_DIR/rust-tests.log"
  local rc=0
  if [[ $HAVE_NEXTEST -eq 1 ]]; then
    cargo nextest run --workspace --no-fail-fast 2>&1 | tee "$log" || rc=$?
    # nextest does not run doctests.
    cargo test --workspace --doc 2>&1 | tee -a "$log" || rc=$((rc ? rc : $?))
  else
    cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || rc=$?
  fi
  return $rc
}
if [[ $BUILD_OK -eq 1 ]]; then
  run_step "Rust tests" rust_tests
else
  section "Rust tests"
  echo "skipped: the build failed"
  FAILED+=("Rust tests")
  STEPS+=("FAILED  Rust tests (not run: the build failed)")
fi

# ---------------------------------------------------------------------------
client_tests() {
  local log="$LOG_DIR/pytest.log"
  local rc=0
  export BASIN_BIN="${BASIN_BIN:-$CARGO_TARGET_DIR/debug/basin}"
  echo "BASIN_BIN=$BASIN_BIN"
  if [[ ! -x "$BASIN_BIN" ]]; then
    echo "error: $BASIN_BIN is missing or not executable"
    return 1
  fi
  # shellcheck disable=SC2086
  timeout --kill-after=30 900 "$PYTHON" -m pytest tests/clients -v --durations=10 \
    ${BASIN_PYTEST_ARGS:-} 2>&1 | tee "$log" || rc=$?
  if [[ $rc -eq 5 ]]; then
    if compgen -G "tests/clients/test_*.py" >/dev/null; then
      echo "error: pytest collected no tests, but tests/clients has test files"
      return 5
    fi
    echo "no client tests present"
    return 0
  fi
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "error: the client suite hit its 15 minute limit"
  fi
  return $rc
}
if [[ ${BASIN_SKIP_CLIENT_TESTS:-0} == 1 ]]; then
  section "Client tests (pytest)"
  echo "skipped: BASIN_SKIP_CLIENT_TESTS=1"
  STEPS+=("skipped Client tests (BASIN_SKIP_CLIENT_TESTS=1)")
elif [[ $BUILD_OK -eq 1 ]]; then
  run_step "Client tests (pytest)" client_tests
else
  section "Client tests (pytest)"
  echo "skipped: the build failed"
  FAILED+=("Client tests")
  STEPS+=("FAILED  Client tests (not run: the build failed)")
fi

# ---------------------------------------------------------------------------
section "Summary ($(elapsed))"
for s in "${STEPS[@]}"; do
  echo "  $s"
done

# Repeat the runners' own closing lines, then one combined count.
total_pass=0
total_fail=0
if [[ -f "$LOG_DIR/rust-tests.log" ]]; then
  while IFS= read -r line; do
    SUMMARY_LINES+=("$line")
  done < <(grep -E '^ *Summary \[|^test result:' "$LOG_DIR/rust-tests.log" || true)
  # nextest: "Summary [ 1.2s] 45 tests run: 44 passed, 1 failed, 0 skipped"
  if nx=$(grep -E '^ *Summary \[' "$LOG_DIR/rust-tests.log" | tail -1) && [[ -n $nx ]]; then
    p=$(grep -oE '[0-9]+ passed' <<<"$nx" | grep -oE '[0-9]+' || echo 0)
    f=$(grep -oE '[0-9]+ failed' <<<"$nx" | grep -oE '[0-9]+' || echo 0)
    total_pass=$((total_pass + ${p:-0}))
    total_fail=$((total_fail + ${f:-0}))
  fi
  # cargo test / doctests: "test result: ok. 3 passed; 0 failed; ..."
  while IFS= read -r line; do
    p=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+' || echo 0)
    f=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+' || echo 0)
    total_pass=$((total_pass + ${p:-0}))
    total_fail=$((total_fail + ${f:-0}))
  done < <(grep -E '^test result:' "$LOG_DIR/rust-tests.log" || true)
fi
if [[ -f "$LOG_DIR/pytest.log" ]]; then
  # pytest: "==== 14 passed, 2 failed in 80.1s ===="
  if py=$(grep -E '^=+ .*(passed|failed|error|no tests ran).* in [0-9.]+s' "$LOG_DIR/pytest.log" | tail -1) && [[ -n $py ]]; then
    SUMMARY_LINES+=("$py")
    p=$(grep -oE '[0-9]+ passed' <<<"$py" | grep -oE '[0-9]+' || echo 0)
    f=$(grep -oE '[0-9]+ failed' <<<"$py" | grep -oE '[0-9]+' || echo 0)
    e=$(grep -oE '[0-9]+ errors?' <<<"$py" | grep -oE '[0-9]+' || echo 0)
    total_pass=$((total_pass + ${p:-0}))
    total_fail=$((total_fail + ${f:-0} + ${e:-0}))
  fi
fi
if [[ ${#SUMMARY_LINES[@]} -gt 0 ]]; then
  echo
  echo "Test runner summaries:"
  for line in "${SUMMARY_LINES[@]}"; do
    echo "  $line"
  done
fi
echo "logs: $LOG_DIR"
echo

if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo "RESULT: FAILED (${#FAILED[@]} step(s): $(printf '%s; ' "${FAILED[@]}"))"
  echo "total: $total_pass passed, $total_fail failed"
  exit 1
fi
echo "RESULT: OK"
echo "total: $total_pass passed, $total_fail failed"
