#!/usr/bin/env python3
"""Batch benchmark: Basin vs DuckDB vs Spark (local mode), side by side in one run.

    python3 benchmarks/batch/bench_batch.py --basin BIN --taxi DIR --tpch DIR \\
        [--engines basin,duckdb,spark] [--items etl,tpch] [--runs 3] [--etl-runs 2]

Items:

  etl   The taxi ETL in etl/{basin,duckdb,spark}.sql, on the Parquet files in
        --taxi: step "clean" (drop dirty rows, fill missing values, derive
        features, write the rows as Parquet) and step "aggregate" (per pickup
        zone and hour, from the written rows, written as Parquet).
  tpch  The 22 TPC-H queries of crates/basin-sql/tests/tpch/qNN.sql on the
        Parquet tables in --tpch (<table>.parquet).

Every item runs on every engine, best of N runs (an ETL run is both steps; its
time is their sum). Timing:

  basin   one `basin sql` process per step / query (process start included),
          after a one-time setup process that registers the external tables;
          query results go to a Parquet file (--format parquet --out).
  duckdb  the duckdb Python package, in this process: execute + fetchall.
  spark   pyspark, one SparkSession (local[threads]) for the whole run:
          spark.sql(...).collect(). JVM and session start are timed once and
          reported apart, not counted in any item.

After the runs it checks that the engines agree (ETL: output row counts and
sums read back from every engine's Parquet output; TPC-H: result row counts
and per-column sums of the numeric columns), then writes --out-md (the table)
and --out-jsonl (one JSON object per measurement and check).
"""

import argparse
import datetime
import glob
import json
import math
import os
import platform
import re
import shutil
import string
import subprocess
import sys
import threading
import time
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TPCH_QUERIES = os.path.join(ROOT, "crates", "basin-sql", "tests", "tpch")
TPCH_TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]
ENGINES = ["basin", "duckdb", "spark"]
LABEL = {"basin": "Basin", "duckdb": "DuckDB", "spark": "Spark"}
ETL_STEPS = ["clean", "aggregate"]
ETL_STEP_TITLE = {
    "clean": "ETL: clean + features → Parquet",
    "aggregate": "ETL: aggregate per zone × hour → Parquet",
}
# Targets from the issue, on the ETL (peer time / Basin time).
TARGET_VS_SPARK = 5.0
TARGET_VS_DUCKDB = 1 / 1.5


def log(msg):
    print(f"[bench-batch {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class EngineError(Exception):
    pass


def describe(err):
    if isinstance(err, EngineError):
        return str(err)
    return f"{type(err).__name__}: {err}"[:1500]


# ------------------------------------------------------------------- helpers

def split_steps(text):
    """{step: sql} from a file whose steps start with a `-- step: NAME` line."""
    parts = re.split(r"(?m)^-- step: *(\w+) *$", text)
    steps = {}
    for i in range(1, len(parts), 2):
        steps[parts[i]] = parts[i + 1].strip()
    missing = [s for s in ETL_STEPS if s not in steps]
    if missing:
        raise SystemExit(f"bench_batch: steps {missing} missing from an ETL SQL file")
    return steps


def strip_sql(sql):
    """The statement without comment lines and the trailing semicolon (for
    in-process APIs that take one statement)."""
    lines = [l for l in sql.splitlines() if not l.strip().startswith("--")]
    return "\n".join(lines).strip().rstrip(";").strip()


def parquet_files(path):
    if os.path.isdir(path):
        return sorted(glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True))
    return [path]


def warm(paths):
    """Read the input files once, so no engine pays for a cold page cache."""
    total = 0
    for p in paths:
        with open(p, "rb") as f:
            while True:
                b = f.read(1 << 22)
                if not b:
                    break
                total += len(b)
    return total


def numeric(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float, Decimal)):
        return float(v)
    return None


def result_summary(rows):
    """Row count, per-column sums of the numeric values (None for columns with
    no numeric value) and per-column rounding slack: the sum of 10^-scale over
    the column's decimal values (engines round or truncate a decimal result such
    as avg() at its scale differently)."""
    if not rows:
        return {"rows": 0, "sums": [], "slack": []}
    ncol = len(rows[0])
    sums, slack = [None] * ncol, [0.0] * ncol
    for row in rows:
        for i, v in enumerate(row):
            x = numeric(v)
            if x is not None and not math.isnan(x):
                sums[i] = (sums[i] or 0.0) + x
                if isinstance(v, Decimal):
                    slack[i] += 10.0 ** v.as_tuple().exponent
    return {"rows": len(rows), "sums": sums, "slack": slack}


def compare(ref, other, rel=1e-6):
    """'' when `other` agrees with `ref`, else what differs. Numeric sums agree
    within `rel` plus the decimal rounding slack of both sides."""
    if ref["rows"] != other["rows"]:
        return f"rows {other['rows']} vs {ref['rows']}"
    if len(ref["sums"]) != len(other["sums"]):
        return f"{len(other['sums'])} columns vs {len(ref['sums'])}"
    for i, (a, b) in enumerate(zip(ref["sums"], other["sums"])):
        if a is None or b is None:
            if (a is None) != (b is None):
                return f"column {i + 1} numeric in one engine only"
            continue
        tol = rel * max(abs(a), abs(b)) + ref["slack"][i] + other["slack"][i] + 1e-9
        if abs(a - b) > tol:
            return f"column {i + 1} sum {b!r} vs {a!r}"
    return ""


class Timeout:
    """Call `cancel` once the block has run `seconds`, and again every second
    until it ends (a Spark query can start new jobs after a cancel). `fired`
    tells the block it ran out of time, even if it then finished."""

    def __init__(self, seconds, cancel):
        self.seconds, self.cancel, self.fired = seconds, cancel, False
        self.done = threading.Event()

    def _watch(self):
        if self.done.wait(self.seconds):
            return
        self.fired = True
        while True:
            try:
                self.cancel()
            except Exception:  # best effort
                pass
            if self.done.wait(1.0):
                return

    def __enter__(self):
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        return False


# ------------------------------------------------------------------- engines

class Basin:
    name = "basin"

    def __init__(self, args, work):
        self.bin = args.basin
        self.work = os.path.join(work, "basin")
        self.timeout = args.timeout
        self.prefix = ""
        if args.threads != os.cpu_count():
            self.prefix = f"SET datafusion.execution.target_partitions = {args.threads};\n"
        os.makedirs(self.work, exist_ok=True)
        out = subprocess.run([self.bin, "--version"], capture_output=True, text=True)
        self.version = out.stdout.strip() or "basin (version unknown)"

    def _run(self, data_dir, sql, tag, extra=()):
        path = os.path.join(self.work, f"{tag}.sql")
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.prefix + sql + "\n")
        cmd = [self.bin, "sql", "--data-dir", data_dir, "-f", path, *extra]
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise EngineError(f"timed out after {self.timeout} s")
        dt = time.perf_counter() - t0
        if p.returncode != 0:
            msg = (p.stderr.strip() or p.stdout.strip() or f"exit {p.returncode}")
            raise EngineError(f"exit {p.returncode}: {msg[-1500:]}")
        return dt

    # etl
    def setup_etl(self, taxi):
        self.etl_dir = os.path.join(self.work, "etl-data")
        shutil.rmtree(self.etl_dir, ignore_errors=True)
        self._run(self.etl_dir,
                  f"CREATE EXTERNAL TABLE trips STORED AS PARQUET LOCATION '{taxi}';", "etl-setup")
        with open(os.path.join(HERE, "etl", "basin.sql"), encoding="utf-8") as f:
            self.etl = split_steps(f.read())

    def etl_step(self, step):
        return self._run(self.etl_dir, self.etl[step], f"etl-{step}")

    def etl_outputs(self):
        out = {}
        for step, table in (("clean", "trips_clean"), ("aggregate", "zone_hour")):
            tdir = os.path.join(self.etl_dir, "lake", table)
            with open(os.path.join(tdir, "_table.json"), encoding="utf-8") as f:
                version = json.load(f)["version"]
            out[step] = parquet_files(os.path.join(tdir, f"v{version}"))
        return out

    # tpch
    def setup_tpch(self, tpch):
        self.tpch_dir = os.path.join(self.work, "tpch-data")
        shutil.rmtree(self.tpch_dir, ignore_errors=True)
        ddl = "\n".join(
            f"CREATE EXTERNAL TABLE {t} STORED AS PARQUET LOCATION '{tpch}/{t}.parquet';"
            for t in TPCH_TABLES)
        self._run(self.tpch_dir, ddl, "tpch-setup")

    def query(self, name, sql):
        out = os.path.join(self.work, f"{name}.parquet")
        if os.path.exists(out):
            os.remove(out)
        dt = self._run(self.tpch_dir, sql, name, ("--format", "parquet", "--out", out))
        import duckdb
        rows = duckdb.connect().execute("SELECT * FROM read_parquet(?)", [out]).fetchall()
        return dt, rows

    def close(self):
        pass


class DuckDB:
    name = "duckdb"

    def __init__(self, args, work):
        import duckdb
        self.con = duckdb.connect()
        self.con.execute(f"SET threads TO {args.threads}")
        self.timeout = args.timeout
        self.version = f"DuckDB {duckdb.__version__}"
        self.out = os.path.join(work, "duckdb")
        os.makedirs(self.out, exist_ok=True)

    def _timed(self, sql, fetch):
        t0 = time.perf_counter()
        with Timeout(self.timeout, self.con.interrupt) as to:
            try:
                cur = self.con.execute(sql)
                rows = cur.fetchall() if fetch else None
            except Exception as e:
                if to.fired:
                    raise EngineError(f"timed out after {self.timeout} s")
                raise EngineError(f"{type(e).__name__}: {e}"[:1500])
        if to.fired:
            raise EngineError(f"timed out after {self.timeout} s")
        return time.perf_counter() - t0, rows

    def setup_etl(self, taxi):
        self.con.execute(
            f"CREATE OR REPLACE VIEW trips AS SELECT * FROM read_parquet('{taxi}/*.parquet')")
        with open(os.path.join(HERE, "etl", "duckdb.sql"), encoding="utf-8") as f:
            text = string.Template(f.read()).substitute(out=self.out)
        self.etl = split_steps(text)

    def etl_step(self, step):
        target = os.path.join(self.out, "trips_clean.parquet" if step == "clean" else "zone_hour.parquet")
        if os.path.exists(target):
            os.remove(target)
        return self._timed(self.etl[step], False)[0]

    def etl_outputs(self):
        return {"clean": [os.path.join(self.out, "trips_clean.parquet")],
                "aggregate": [os.path.join(self.out, "zone_hour.parquet")]}

    def setup_tpch(self, tpch):
        for t in TPCH_TABLES:
            self.con.execute(
                f"CREATE OR REPLACE VIEW {t} AS SELECT * FROM read_parquet('{tpch}/{t}.parquet')")

    def query(self, name, sql):
        return self._timed(sql, True)

    def close(self):
        self.con.close()


class Spark:
    name = "spark"

    def __init__(self, args, work):
        self.timeout = args.timeout
        self.out = os.path.join(work, "spark")
        os.makedirs(self.out, exist_ok=True)
        conf = {
            "spark.driver.memory": args.spark_memory,
            "spark.sql.session.timeZone": "UTC",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            # Same output compression as Basin's lake and the DuckDB script.
            "spark.sql.parquet.compression.codec": "zstd",
            "spark.hadoop.parquet.compression.codec.zstd.level": "1",
        }
        for kv in filter(None, (args.spark_conf or "").split(",")):
            k, _, v = kv.partition("=")
            conf[k.strip()] = v.strip()
        self.conf = conf
        t0 = time.perf_counter()
        from pyspark.sql import SparkSession
        import pyspark
        b = SparkSession.builder.master(f"local[{args.threads}]").appName("basin-batch-bench")
        for k, v in conf.items():
            b = b.config(k, v)
        self.spark = b.getOrCreate()
        self.spark.sparkContext.setLogLevel("ERROR")
        self.spark.sql("SELECT 1").collect()
        self.start_seconds = time.perf_counter() - t0
        java = self.spark.sparkContext._jvm.java.lang.System.getProperty("java.version")
        self.version = f"Spark {pyspark.__version__} (pyspark, Java {java})"

    def _timed(self, sql, fetch=True):
        sc = self.spark.sparkContext
        t0 = time.perf_counter()
        with Timeout(self.timeout, sc.cancelAllJobs) as to:
            try:
                rows = self.spark.sql(sql).collect()
            except Exception as e:
                if to.fired:
                    raise EngineError(f"timed out after {self.timeout} s")
                msg = str(e).strip().splitlines()
                raise EngineError(f"{type(e).__name__}: {' '.join(msg[:6])}"[:1500])
        if to.fired:
            raise EngineError(f"timed out after {self.timeout} s")
        return time.perf_counter() - t0, [tuple(r) for r in rows]

    def setup_etl(self, taxi):
        self.spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW trips USING parquet OPTIONS (path '{taxi}')")
        with open(os.path.join(HERE, "etl", "spark.sql"), encoding="utf-8") as f:
            text = string.Template(f.read()).substitute(out=self.out)
        self.etl = {k: strip_sql(v) for k, v in split_steps(text).items()}

    def etl_step(self, step):
        return self._timed(self.etl[step])[0]

    def etl_outputs(self):
        return {"clean": parquet_files(os.path.join(self.out, "trips_clean")),
                "aggregate": parquet_files(os.path.join(self.out, "zone_hour"))}

    def setup_tpch(self, tpch):
        for t in TPCH_TABLES:
            self.spark.sql(
                f"CREATE OR REPLACE TEMPORARY VIEW {t} USING parquet OPTIONS (path '{tpch}/{t}.parquet')")

    def query(self, name, sql):
        return self._timed(spark_variant(name, strip_sql(sql)))

    def close(self):
        try:
            self.spark.stop()
        except Exception:
            pass


# Spark SQL dialect adaptations of the TPC-H texts: query name -> list of
# (pattern, replacement, why). Spark 4.x runs all 22 texts as they are, so
# this is empty; add an entry here if a query needs one, and the report lists it.
SPARK_ADAPTATIONS = {}


def spark_variant(name, sql):
    for pattern, repl, _why in SPARK_ADAPTATIONS.get(name, []):
        sql = re.sub(pattern, repl, sql)
    return sql


# ----------------------------------------------------------------- the runs

def best_of(fn, runs):
    """(best seconds, all seconds, last result) of `runs` calls of fn() -> (s, result)."""
    times, result = [], None
    for _ in range(runs):
        dt, result = fn()
        times.append(dt)
    return min(times), times, result


def run_etl(engines, args, records, taxi):
    import duckdb
    checker = duckdb.connect()
    outputs = {}
    for e in engines:
        log(f"ETL on {e.name}: {args.etl_runs} run(s)")
        rec = {"type": "measurement", "item": "etl", "engine": e.name, "runs": []}
        try:
            e.setup_etl(taxi)
            for r in range(args.etl_runs):
                run = {}
                for step in ETL_STEPS:
                    run[step] = e.etl_step(step)
                run["total"] = sum(run[s] for s in ETL_STEPS)
                rec["runs"].append(run)
                log(f"  {e.name} run {r + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in run.items()))
            best = min(rec["runs"], key=lambda x: x["total"])
            rec["best"] = best
            outputs[e.name] = e.etl_outputs()
        except Exception as err:  # EngineError, or a surprise: record it, go on
            rec["error"] = describe(err)
            log(f"  {e.name} failed: {rec['error']}")
        records.append(rec)

    # Read every engine's output back (with DuckDB) and compare.
    summaries = {}
    for name, out in outputs.items():
        try:
            c = checker.execute(
                "SELECT count(*), sum(speed_mph), sum(duration_min), sum(total_amount), "
                "count(DISTINCT zone_pair) FROM read_parquet(?)", [out["clean"]]).fetchall()
            a = checker.execute(
                "SELECT count(*), sum(trips), sum(passengers), sum(zone_pairs), sum(revenue), "
                "sum(avg_speed_mph), sum(weekend_share), sum(avg_tip_pct) FROM read_parquet(?)",
                [out["aggregate"]]).fetchall()
            summaries[name] = {"clean": result_summary(c), "aggregate": result_summary(a),
                               "clean_values": list(c[0]), "aggregate_values": list(a[0])}
        except Exception as err:
            summaries[name] = {"error": f"cannot read the output: {err}"}
    checks = check_against_reference(summaries, lambda s: (s["clean"], s["aggregate"]))
    for name, s in summaries.items():
        records.append({"type": "check", "item": "etl", "engine": name, **s,
                        "check": checks.get(name, "")})
    return checks


def check_against_reference(summaries, parts):
    """{engine: '' | 'ok' | what differs}, against DuckDB (else the first engine
    that produced a result)."""
    good = {n: s for n, s in summaries.items() if "error" not in s}
    checks = {n: "failed" for n, s in summaries.items() if "error" in s}
    if not good:
        return checks
    ref = "duckdb" if "duckdb" in good else sorted(good, key=ENGINES.index)[0]
    for name, s in good.items():
        if name == ref:
            checks[name] = "ok" if len(good) > 1 else "(alone)"
            continue
        diffs = [d for d in (compare(a, b) for a, b in zip(parts(good[ref]), parts(s))) if d]
        checks[name] = f"differs from {ref}: {diffs[0]}" if diffs else "ok"
    return checks


def run_tpch(engines, args, records, tpch):
    names = [f"q{int(q):02d}" for q in args.queries.split(",")] if args.queries else \
        [f"q{i:02d}" for i in range(1, 23)]
    texts = {}
    for n in names:
        with open(os.path.join(TPCH_QUERIES, f"{n}.sql"), encoding="utf-8") as f:
            texts[n] = f.read()
    ready = []
    for e in engines:
        try:
            e.setup_tpch(tpch)
            ready.append(e)
        except Exception as err:
            log(f"TPC-H setup on {e.name} failed: {describe(err)}")
            for n in names:
                records.append({"type": "measurement", "item": f"tpch-{n}", "engine": e.name,
                                "error": f"setup failed: {describe(err)}"})
    all_checks = {}
    for n in names:
        summaries = {}
        line = []
        for e in ready:
            rec = {"type": "measurement", "item": f"tpch-{n}", "engine": e.name}
            try:
                best, times, rows = best_of(lambda: e.query(n, texts[n]), args.runs)
                rec.update(best=best, times=times)
                summaries[e.name] = result_summary(rows)
                rec["rows"] = len(rows)
                line.append(f"{e.name} {best:.3f} s")
            except Exception as err:
                rec["error"] = describe(err)
                summaries[e.name] = {"error": rec["error"]}
                line.append(f"{e.name} FAILED ({short(rec['error'], 200)})")
            records.append(rec)
        checks = check_against_reference(summaries, lambda s: (s,))
        all_checks[n] = checks
        for name, s in summaries.items():
            records.append({"type": "check", "item": f"tpch-{n}", "engine": name,
                            "check": checks.get(name, ""), **({} if "error" in s else s)})
        log(f"TPC-H {n}: " + ", ".join(line) +
            ("" if all(v in ("ok", "(alone)", "failed") for v in checks.values())
             else f"  CHECK: {checks}"))
    return names, all_checks


# ------------------------------------------------------------------- report

def fmt_s(x):
    if x is None:
        return "—"
    return f"{x:.3f}" if x < 10 else f"{x:.2f}" if x < 100 else f"{x:.1f}"


def fmt_x(peer, basin):
    if peer is None or basin is None or basin <= 0:
        return "—"
    return f"{peer / basin:.2f}×"


def short(msg, n=160):
    msg = " ".join(str(msg).split())
    return msg if len(msg) <= n else msg[: n - 1] + "…"


def write_report(args, meta, records, etl_checks, tpch_names, tpch_checks):
    engines = meta["engines"]
    meas = {(r["item"], r["engine"]): r for r in records if r["type"] == "measurement"}
    rows, errors = [], []

    def cell(item, eng, key=None):
        r = meas.get((item, eng))
        if r is None or "error" in r:
            return None
        b = r["best"]
        return b[key] if key else b

    def add_row(title, vals, check=""):
        b, d, s = (vals.get(e) for e in ENGINES)
        rows.append([title, fmt_s(b) if "basin" in engines else "—",
                     fmt_s(d) if "duckdb" in engines else "—",
                     fmt_s(s) if "spark" in engines else "—",
                     fmt_x(s, b), fmt_x(d, b), check])

    def err_cell(item):
        out = []
        for e in engines:
            r = meas.get((item, e))
            if r is not None and "error" in r:
                errors.append(f"- {item}, {LABEL[e]}: `{short(r['error'], 400)}`")
                out.append(f"{LABEL[e]} failed")
        return out

    def check_text(checks):
        if sum(c != "failed" for c in checks.values()) < 2:
            return ""  # nothing to compare
        bad = [f"{LABEL[n]}: {c}" for n, c in checks.items()
               if c not in ("ok", "(alone)", "", "failed")]
        return "; ".join(bad) if bad else "ok"

    summary = {}
    if "etl" in meta["items"]:
        for step in ETL_STEPS:
            add_row(ETL_STEP_TITLE[step], {e: cell("etl", e, step) for e in engines})
        etl_tot = {e: cell("etl", e, "total") for e in engines}
        chk = "; ".join(filter(None, err_cell("etl") + [check_text(etl_checks)]))
        add_row("**ETL total**", etl_tot, chk)
        summary["etl"] = etl_tot
    if "tpch" in meta["items"]:
        totals = {e: 0.0 for e in engines}
        complete = {e: True for e in engines}
        ratios = {"spark": [], "duckdb": []}
        for n in tpch_names:
            item = f"tpch-{n}"
            vals = {e: cell(item, e) for e in engines}
            for e in engines:
                if vals[e] is None:
                    complete[e] = False
                else:
                    totals[e] += vals[e]
            for peer in ratios:
                if vals.get(peer) and vals.get("basin"):
                    ratios[peer].append(vals[peer] / vals["basin"])
            chk = "; ".join(filter(None, err_cell(item) + [check_text(tpch_checks.get(n, {}))]))
            title = f"TPC-H Q{n[1:]}" + (" (Spark text adapted)" if n in SPARK_ADAPTATIONS else "")
            add_row(title, vals, chk)
        tot = {e: (totals[e] if complete[e] else None) for e in engines}
        add_row(f"**TPC-H total ({len(tpch_names)} queries)**", tot,
                "" if all(complete.values()) else "total only where every query ran")
        if not all(complete.values()):
            common = [n for n in tpch_names
                      if all(cell(f"tpch-{n}", e) is not None for e in engines)]
            sub = {e: sum(cell(f"tpch-{n}", e) for n in common) for e in engines}
            add_row(f"TPC-H total over the {len(common)} queries every engine ran", sub,
                    ", ".join(f"Q{n[1:]}" for n in common) if len(common) < len(tpch_names) // 2
                    else "without " + ", ".join(f"Q{n[1:]}" for n in tpch_names if n not in common))
        geo = {}
        for peer, rs in ratios.items():
            geo[peer] = math.exp(sum(map(math.log, rs)) / len(rs)) if rs else None
        rows.append(["TPC-H geometric mean of per-query ratios", "", "", "",
                     f"{geo['spark']:.2f}×" if geo.get("spark") else "—",
                     f"{geo['duckdb']:.2f}×" if geo.get("duckdb") else "—", ""])
        summary["tpch"] = tot
        summary["tpch_geomean"] = geo

    # Targets (from the issue): on the ETL.
    targets = []
    if "etl" in summary:
        b, d, s = (summary["etl"].get(e) for e in ENGINES)
        if b and s:
            r = s / b
            targets.append(f"- **ETL, at least {TARGET_VS_SPARK:g}× faster than Spark local: "
                           f"{'met' if r >= TARGET_VS_SPARK else 'not met'}** ({r:.2f}×: "
                           f"{fmt_s(b)} s vs {fmt_s(s)} s).")
        else:
            targets.append("- ETL vs Spark: not measured.")
        if b and d:
            r = b / d
            targets.append(f"- **ETL, within 1.5× of DuckDB: "
                           f"{'met' if r <= 1.5 else 'not met'}** (Basin takes {r:.2f}× "
                           f"DuckDB's time: {fmt_s(b)} s vs {fmt_s(d)} s).")
        else:
            targets.append("- ETL vs DuckDB: not measured.")
    if "tpch" in summary:
        b, d, s = (summary["tpch"].get(e) for e in ENGINES)
        if b and s:
            targets.append(f"- TPC-H (for reference, the issue sets the targets on the ETL): "
                           f"total {s / b:.2f}× faster than Spark"
                           + (f", {d / b:.2f}× DuckDB's speed" if d else "") + ".")

    lines = []
    lines.append(f"# Batch benchmark: Basin vs DuckDB vs Spark local — {meta['date']}")
    lines.append("")
    lines.append("Reproduce: `bash benchmarks/run-batch.sh` "
                 f"(this run: `{meta['command']}`).")
    lines.append("")
    lines.append(f"- Run: {meta['started']} → {meta['finished']} UTC, host {meta['host']}, "
                 f"{meta['cpus']} cores, {meta['mem_gib']} GiB RAM; load average "
                 f"{meta['load_start']} at the start, {meta['load_end']} at the end.")
    lines.append(f"- Engines: {meta['basin_version']} (git {meta['git_rev']}"
                 f"{', crates/ modified' if meta.get('git_dirty') else ''}); "
                 f"{meta.get('duckdb_version', 'DuckDB not run')}; "
                 f"{meta.get('spark_version', 'Spark not run')}. "
                 f"All limited to {meta['threads']} threads (local[{meta['threads']}] for Spark).")
    if "spark_start_seconds" in meta:
        lines.append(f"- Spark JVM + session start: {meta['spark_start_seconds']:.1f} s "
                     "(once, not counted in any row).")
    if "etl" in meta["items"]:
        lines.append(f"- ETL input: {meta['taxi_rows']:,} generated taxi rows in "
                     f"{meta['taxi_files']} Parquet file(s), {meta['taxi_mib']:.0f} MiB "
                     f"(`{meta['taxi']}`). Best of {meta['etl_runs']} run(s); a run is both "
                     "steps, and the step rows show the steps of the best run.")
    if "tpch" in meta["items"]:
        lines.append(f"- TPC-H: scale factor {meta['tpch_sf']}, {meta['tpch_mib']:.0f} MiB of Parquet "
                     f"(`{meta['tpch']}`). Best of {meta['runs']} run(s) per query.")
    lines.append("- Seconds are wall time. Basin: one `basin sql` process per step or query "
                 "(process start included). DuckDB: in-process Python API. Spark: one "
                 "SparkSession; `spark.sql(...).collect()`.")
    lines.append("- The × columns are peer time ÷ Basin time: above 1 means Basin is faster.")
    lines.append("")
    lines.append("| item | Basin s | DuckDB s | Spark s | Basin vs Spark × | Basin vs DuckDB × | check |")
    lines.append("|---|---|---|---|---|---|---|")
    for r in rows:
        lines.append("| " + " | ".join(r) + " |")
    lines.append("")
    lines.append("## Targets")
    lines.append("")
    lines.extend(targets or ["- nothing measured"])
    lines.append("")
    lines.append("## Notes")
    lines.append("")
    if "tpch" in meta["items"]:
        if SPARK_ADAPTATIONS:
            for q, subs in sorted(SPARK_ADAPTATIONS.items()):
                lines.append(f"- Spark {q}: " + "; ".join(w for _, _, w in subs))
        else:
            lines.append("- Spark ran the 22 TPC-H texts unchanged (no dialect adaptation).")
    lines.append("- check: ETL — every engine's Parquet output read back with DuckDB; row counts, "
                 "sums of several columns and the distinct zone pairs compared with DuckDB's "
                 "(relative tolerance 1e-6). TPC-H — row count and the sum of every numeric "
                 "column of the result, compared with DuckDB's.")
    if errors:
        lines.append("")
        lines.append("Errors:")
        lines.append("")
        lines.extend(errors)
    text = "\n".join(lines) + "\n"
    with open(args.out_md, "w", encoding="utf-8") as f:
        f.write(text)
    return text, summary


# --------------------------------------------------------------------- main

def dir_mib(paths):
    return sum(os.path.getsize(p) for p in paths) / (1 << 20)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--basin", required=True, help="basin binary")
    p.add_argument("--taxi", help="folder of the generated taxi Parquet files")
    p.add_argument("--tpch", help="folder of the TPC-H <table>.parquet files")
    p.add_argument("--tpch-sf", default="?", help="scale factor of --tpch (for the report)")
    p.add_argument("--engines", default="basin,duckdb,spark")
    p.add_argument("--items", default="etl,tpch")
    p.add_argument("--queries", default="", help="TPC-H query numbers, e.g. 1,6,18 (default all 22)")
    p.add_argument("--runs", type=int, default=3, help="runs per TPC-H query (best of)")
    p.add_argument("--etl-runs", type=int, default=2, help="runs of the ETL (best of)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--spark-memory", default="8g")
    p.add_argument("--spark-conf", default="", help="extra Spark settings: k=v,k=v")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per step or query")
    p.add_argument("--work", required=True, help="scratch folder for outputs")
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-jsonl", required=True)
    p.add_argument("--command", default="", help="how this run was started (for the report)")
    args = p.parse_args()

    engines_wanted = [e.strip() for e in args.engines.split(",") if e.strip()]
    items = [i.strip() for i in args.items.split(",") if i.strip()]
    for e in engines_wanted:
        if e not in ENGINES:
            raise SystemExit(f"bench_batch: unknown engine {e!r} (use {', '.join(ENGINES)})")
    for i in items:
        if i not in ("etl", "tpch"):
            raise SystemExit(f"bench_batch: unknown item {i!r} (use etl, tpch)")
    if "etl" in items and not args.taxi:
        raise SystemExit("bench_batch: --taxi is needed for the etl item")
    if "tpch" in items and not args.tpch:
        raise SystemExit("bench_batch: --tpch is needed for the tpch item")
    engines_wanted.sort(key=ENGINES.index)

    started = datetime.datetime.now(datetime.timezone.utc)
    meta = {
        "type": "meta", "date": started.strftime("%Y-%m-%d"),
        "started": started.strftime("%Y-%m-%d %H:%M:%S"),
        "command": args.command or " ".join(sys.argv),
        "host": platform.node(), "cpus": os.cpu_count(),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)),
        "cpu_model": cpu_model(),
        "load_start": load(), "engines": engines_wanted, "items": items,
        "runs": args.runs, "etl_runs": args.etl_runs, "threads": args.threads,
        "git_rev": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", "crates")),
        "python": platform.python_version(),
    }
    warm_files = []
    if "etl" in items:
        taxi = os.path.abspath(args.taxi)
        files = parquet_files(taxi)
        if not files:
            raise SystemExit(f"bench_batch: no Parquet files in {taxi}")
        import duckdb
        n = duckdb.connect().execute("SELECT count(*) FROM read_parquet(?)", [files]).fetchone()[0]
        meta.update(taxi=taxi, taxi_rows=n, taxi_files=len(files), taxi_mib=dir_mib(files))
        warm_files += files
    if "tpch" in items:
        tpch = os.path.abspath(args.tpch)
        files = [os.path.join(tpch, f"{t}.parquet") for t in TPCH_TABLES]
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise SystemExit(f"bench_batch: missing TPC-H files: {missing}")
        meta.update(tpch=tpch, tpch_sf=args.tpch_sf, tpch_mib=dir_mib(files))
        warm_files += files

    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    log(f"warming the page cache: {warm(warm_files) / (1 << 20):.0f} MiB of input")

    engines = []
    meta["basin_version"] = "Basin not run"
    for name in engines_wanted:
        log(f"starting {name}")
        try:
            e = {"basin": Basin, "duckdb": DuckDB, "spark": Spark}[name](args, work)
        except Exception as err:
            raise SystemExit(f"bench_batch: cannot start {name}: {err}")
        meta[f"{name}_version"] = e.version
        if name == "spark":
            meta["spark_start_seconds"] = e.start_seconds
            meta["spark_conf"] = e.conf
            log(f"Spark JVM + session start: {e.start_seconds:.1f} s")
        engines.append(e)

    records = []
    etl_checks, tpch_names, tpch_checks = {}, [], {}
    try:
        if "etl" in items:
            etl_checks = run_etl(engines, args, records, taxi)
        if "tpch" in items:
            tpch_names, tpch_checks = run_tpch(engines, args, records, tpch)
    finally:
        for e in engines:
            e.close()
    meta["finished"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    meta["load_end"] = load()

    text, summary = write_report(args, meta, records, etl_checks, tpch_names, tpch_checks)
    with open(args.out_jsonl, "w", encoding="utf-8") as f:
        for r in [meta] + records + [{"type": "summary", **summary}]:
            f.write(json.dumps(r, default=str) + "\n")
    print(text)


def load():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def git(*a):
    try:
        return subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except Exception:
        return ""


if __name__ == "__main__":
    main()
