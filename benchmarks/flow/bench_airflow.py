#!/usr/bin/env python3
"""Apache Airflow's per-task overhead on the DAG shapes flow-bench times.

Airflow 3 runs with the LocalExecutor over PostgreSQL (the test server of
scripts/pg-test-server.sh, database `airflow_bench`, made anew each run):
api-server (the tasks' execution API), scheduler and dag-processor, all on
127.0.0.1. Each task is a BashOperator running `true` (EmptyOperator tasks
are never executed, and `airflow dags test` skips the scheduler, so neither
measures scheduling). For each shape one run is triggered; its wall time is
Airflow's own dag_run start_date → end_date (the scheduler starting the run
to its end, as flow-bench measures Basin). A run still going at
--max-seconds is stopped and reported by the tasks it finished.

Prints one JSON line per shape on stdout, progress on stderr.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEERS = os.environ.get("BASIN_PEERS", os.path.expanduser("~/.cache/basin-peers"))
VENV = os.path.join(PEERS, "airflow-venv")
AIRFLOW_VERSION = "3.3.2"
PARALLELISM = 32


def log(msg):
    print(f"bench_airflow: {msg}", file=sys.stderr, flush=True)


def ensure_airflow():
    """The venv with apache-airflow and psycopg2 (installed on first use)."""
    py = os.path.join(VENV, "bin", "python")
    ok = os.path.exists(py) and subprocess.run(
        [py, "-c", "import airflow, psycopg2, asyncpg; assert airflow.__version__ == %r" % AIRFLOW_VERSION],
        capture_output=True).returncode == 0
    if not ok:
        log(f"installing apache-airflow {AIRFLOW_VERSION} into {VENV} (a few minutes)")
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        f"apache-airflow=={AIRFLOW_VERSION}", "psycopg2-binary", "asyncpg"], check=True)
    return os.path.join(VENV, "bin")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dag_file(shape):
    kind, n = shape.split(":")
    n = int(n)
    dag_id = "bench_" + shape.replace(":", "_")
    lines = [
        "import pendulum",
        "from airflow.sdk import DAG",
        "from airflow.providers.standard.operators.bash import BashOperator",
        f"with DAG({dag_id!r}, schedule=None, catchup=False, max_active_tasks={PARALLELISM},",
        "         start_date=pendulum.datetime(2026, 1, 1, tz='UTC')) as dag:",
        f"    tasks = [BashOperator(task_id=f't{{i}}', bash_command='true') for i in range({n})]",
    ]
    if kind == "chain":
        lines.append("    for a, b in zip(tasks, tasks[1:]):\n        a >> b")
        tasks = n
    elif kind == "fanout":
        lines.append("    start = BashOperator(task_id='start', bash_command='true')")
        lines.append("    start >> tasks")
        tasks = n + 1
    else:
        raise SystemExit(f"shape {shape!r}: expected chain:N or fanout:N")
    return dag_id, "\n".join(lines) + "\n", tasks


class Airflow:
    """An Airflow installation in a fresh AIRFLOW_HOME and database."""

    def __init__(self, bin_dir, home, pg_url):
        self.bin = bin_dir
        self.home = home
        self.procs = []
        port = free_port()
        base = pg_url.split("?")[0].rsplit("/", 1)[0].replace("postgres://", "postgresql+psycopg2://")
        self.admin_url = pg_url
        self.env = dict(os.environ,
                        AIRFLOW_HOME=home,
                        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
                        AIRFLOW__CORE__LOAD_EXAMPLES="False",
                        AIRFLOW__CORE__DAGS_FOLDER=os.path.join(home, "dags"),
                        AIRFLOW__CORE__PARALLELISM=str(PARALLELISM),
                        AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=str(PARALLELISM),
                        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
                        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"{base}/airflow_bench",
                        AIRFLOW__API__HOST="127.0.0.1",
                        AIRFLOW__API__PORT=str(port),
                        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}",
                        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
                        AIRFLOW__API_AUTH__JWT_SECRET="basin-bench-secret",
                        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
                        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING")
        self.port = port

    def psql(self, sql, db="postgres"):
        url = self.admin_url.split("?")[0].rsplit("/", 1)[0] + "/" + db
        out = subprocess.run(["psql", url, "-AtXq", "-c", sql], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"psql: {out.stderr.strip()}")
        return out.stdout.strip()

    def cli(self, *args):
        return subprocess.run([os.path.join(self.bin, "airflow"), *args], env=self.env,
                              capture_output=True, text=True)

    def setup(self):
        self.psql("DROP DATABASE IF EXISTS airflow_bench WITH (FORCE)")
        self.psql("CREATE DATABASE airflow_bench")
        os.makedirs(os.path.join(self.home, "dags"), exist_ok=True)
        out = self.cli("db", "migrate")
        if out.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{out.stderr[-3000:]}")

    def start(self):
        for part in (["api-server", "--port", str(self.port)], ["scheduler"], ["dag-processor"]):
            logf = open(os.path.join(self.home, part[0] + ".log"), "w")
            self.procs.append(subprocess.Popen([os.path.join(self.bin, "airflow"), *part],
                                               env=self.env, stdout=logf, stderr=logf,
                                               start_new_session=True))

    def stop(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + 20
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        self.procs = []

    def q(self, sql):
        return self.psql(sql, db="airflow_bench")


def measure(af, shape, max_seconds):
    dag_id, text, tasks = dag_file(shape)
    with open(os.path.join(af.home, "dags", dag_id + ".py"), "w") as f:
        f.write(text)
    deadline = time.time() + 300
    while af.q(f"SELECT count(*) FROM dag WHERE dag_id = '{dag_id}' AND NOT is_stale") != "1":
        if time.time() > deadline:
            raise RuntimeError(f"{dag_id} was never parsed; see {af.home}/dag-processor.log")
        time.sleep(1)
    out = af.cli("dags", "trigger", dag_id)
    if out.returncode != 0:
        raise RuntimeError(f"trigger {dag_id}: {out.stderr[-2000:]}")
    log(f"{shape}: triggered ({tasks} tasks)")
    t0 = time.time()
    capped = False
    while True:
        state = af.q(f"SELECT state FROM dag_run WHERE dag_id = '{dag_id}'")
        if state in ("success", "failed"):
            break
        if time.time() - t0 > max_seconds:
            capped = True
            break
        time.sleep(1)
    done = int(af.q(f"SELECT count(*) FROM task_instance WHERE dag_id = '{dag_id}' AND state = 'success'"))
    if capped:
        span = af.q(f"SELECT EXTRACT(EPOCH FROM (now() - start_date)) FROM dag_run WHERE dag_id = '{dag_id}'")
        af.cli("dags", "pause", dag_id)
    else:
        span = af.q(f"SELECT EXTRACT(EPOCH FROM (end_date - start_date)) FROM dag_run WHERE dag_id = '{dag_id}'")
    queued = af.q(f"SELECT EXTRACT(EPOCH FROM (start_date - queued_at)) FROM dag_run WHERE dag_id = '{dag_id}'")
    wall = float(span)
    return {"peer": "airflow", "version": AIRFLOW_VERSION, "shape": shape, "tasks": tasks,
            "tasks_done": done, "wall_s": wall, "per_task_ms": wall * 1000 / max(done, 1),
            "queued_to_start_s": float(queued or 0), "state": state if not capped else "capped",
            "capped": capped, "executor": "LocalExecutor", "parallelism": PARALLELISM,
            "db": "postgresql"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="chain:40,chain:1000,fanout:1000")
    ap.add_argument("--max-seconds", type=float, default=900)
    ap.add_argument("--keep", action="store_true", help="keep AIRFLOW_HOME (logs)")
    args = ap.parse_args()
    bin_dir = ensure_airflow()
    pg_url = subprocess.run(["bash", os.path.join(ROOT, "scripts/pg-test-server.sh")],
                            capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    home = tempfile.mkdtemp(prefix="airflow-bench-")
    af = Airflow(bin_dir, home, pg_url)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        log(f"AIRFLOW_HOME={home}; migrating the database")
        af.setup()
        af.start()
        for shape in args.shapes.split(","):
            print(json.dumps(measure(af, shape.strip(), args.max_seconds)), flush=True)
    finally:
        af.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
