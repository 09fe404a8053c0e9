#!/usr/bin/env python3
"""Nexmark: Basin and Apache Flink (local mode) on the same events, in one run.

benchmarks/run-nexmark.sh builds Basin, makes the PyFlink venv and the
benchmark's Flink jar, then runs this driver. It:

1. starts a fresh `basin up` broker on a free loopback port;
2. generates the events twice, timing each generator's wall and CPU:
   `basin gen nexmark --out DIR` (JSON lines, Flink's input) and
   `basin gen nexmark --topics` into the broker (Basin's input; the
   broker's CPU while it stores them is counted with the generator's);
3. for each query benchmarks/nexmark/queries/qN.sql: runs Basin
   (`basin pipeline run _sources.sql qN.sql --bounded --discard`, stream
   mode), then Flink (flink_query.py with benchmarks/nexmark/flink/qN.sql,
   if it exists), measuring wall time and CPU seconds, and compares the
   output row counts;
4. writes the Markdown report and the raw JSON lines.

CPU is user+sys from the kernel: wait4() rusage for the processes this
driver runs (the generators and `basin pipeline run`), /proc/PID/stat for
the broker (before/after each step), and flink_query.py's own /proc
readings for the Python + JVM process tree.
"""
import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
HERE = os.path.dirname(os.path.abspath(__file__))


def log(msg):
    print(f"[bench-nexmark {dt.datetime.now(dt.timezone.utc):%H:%M:%S}] {msg}",
          file=sys.stderr, flush=True)


def proc_cpu(pid):
    """utime+stime of a live process, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy():
    """CPU seconds spent busy by the whole machine so far (all cores)."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    v = [int(x) for x in parts]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    # guest time is already in user/nice
    return (sum(v[:8]) - idle) / CLK_TCK


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_measured(argv, log_path, timeout, env=None):
    """Run argv to completion; return (exit code, wall s, user+sys CPU s,
    stdout text). stderr goes to log_path. CPU covers the process and the
    children it waited for."""
    with open(log_path, "wb") as err:
        t0 = time.time()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env,
                             start_new_session=True)
        out_chunks = []
        deadline = t0 + timeout
        # stdout is small (JSON lines); read it without blocking the child.
        os.set_blocking(p.stdout.fileno(), False)
        rusage = None
        status = None
        while True:
            try:
                chunk = p.stdout.read()
                if chunk:
                    out_chunks.append(chunk)
            except BlockingIOError:
                pass
            pid, st, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                status, rusage = st, ru
                break
            if time.time() > deadline:
                log(f"timeout after {timeout} s: killing {argv[0]}")
                os.killpg(p.pid, signal.SIGKILL)
                _, status, rusage = os.wait4(p.pid, 0)
                status = -9
                break
            time.sleep(0.02)
        wall = time.time() - t0
        try:
            rest = p.stdout.read()
            if rest:
                out_chunks.append(rest)
        except (BlockingIOError, ValueError):
            pass
        p.stdout.close()
        p.returncode = 0  # reaped by wait4; keep Popen from waiting again
    code = status if status == -9 else os.waitstatus_to_exitcode(status)
    cpu = rusage.ru_utime + rusage.ru_stime
    return code, wall, cpu, b"".join(out_chunks).decode(errors="replace")


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Broker:
    def __init__(self, basin, work):
        self.data = os.path.join(work, "broker-data")
        self.log = os.path.join(work, "broker.log")
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        os.makedirs(self.data, exist_ok=True)
        self.proc = subprocess.Popen(
            [basin, "up", "--data-dir", self.data, "--listen", self.addr],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"basin up exited ({self.proc.returncode}):\n{tail(self.log)}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"basin up did not open {self.addr} in 30 s:\n{tail(self.log)}")

    def cpu(self):
        return proc_cpu(self.proc.pid)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


SUMMARY = re.compile(r"(\d+) rows in, (\d+) rows out, (\d+) late rows dropped, (\d+) checkpoints")


def query_number(name):
    m = re.fullmatch(r"q(\d+)", name)
    return int(m.group(1)) if m else 10**9


def fmt_int(x):
    return "—" if x is None else f"{x:,.0f}"


def fmt_k(x):
    if x is None:
        return "—"
    return f"{x / 1000:,.0f}k" if x >= 10000 else f"{x:,.0f}"


def fmt_ratio(x):
    return "—" if x is None else f"{x:.2f}×"


def div(a, b):
    return a / b if a is not None and b else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--basin", required=True)
    ap.add_argument("--flink-python", required=True)
    ap.add_argument("--flink-jar", required=True)
    ap.add_argument("--flink-version", default="")
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--parallelism", type=int, default=1)
    ap.add_argument("--checkpoint-interval", default="10s")
    ap.add_argument("--queries", default="", help="e.g. q0,q2 (default: every q*.sql)")
    ap.add_argument("--engines", default="basin,flink")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out-md", required=True)
    ap.add_argument("--out-jsonl", required=True)
    ap.add_argument("--command", default="bash benchmarks/run-nexmark.sh")
    ap.add_argument("--git-rev", default="unknown")
    args = ap.parse_args()

    engines = set(args.engines.split(","))
    qdir = os.path.join(HERE, "queries")
    fdir = os.path.join(HERE, "flink")
    names = sorted((f[:-4] for f in os.listdir(qdir) if re.fullmatch(r"q\d+\.sql", f)),
                   key=query_number)
    if args.queries:
        wanted = [q.strip() for q in args.queries.split(",") if q.strip()]
        missing = [q for q in wanted if q not in names]
        if missing:
            sys.exit(f"no such query in {qdir}: {', '.join(missing)}")
        names = [q for q in names if q in wanted]
    log(f"queries: {' '.join(names)}")

    os.makedirs(args.work, exist_ok=True)
    records = []
    meta = {
        "kind": "meta", "date": dt.date.today().isoformat(), "git": args.git_rev,
        "events": args.events, "partitions": args.partitions,
        "parallelism": args.parallelism, "checkpoint_interval": args.checkpoint_interval,
        "runs": args.runs, "engines": sorted(engines), "flink": args.flink_version,
        "basin": subprocess.run([args.basin, "--version"], capture_output=True,
                                text=True).stdout.strip(),
        "java": subprocess.run(["java", "-version"], capture_output=True,
                               text=True).stderr.splitlines()[0],
        "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                           if l.startswith("model name")), platform.processor()),
        "cores": os.cpu_count(), "load_start": loadavg(), "command": args.command,
    }
    records.append(meta)
    log(f"load average at start: {meta['load_start']}")

    broker = Broker(args.basin, args.work)
    log(f"broker on {broker.addr} (pid {broker.proc.pid})")
    try:
        # ------------------------------------------------------- generation ---
        files_dir = os.path.join(args.work, "events")
        log(f"generating {args.events:,} events as JSON lines into {files_dir}")
        code, wall, cpu, _ = run_measured(
            [args.basin, "gen", "nexmark", "--events", str(args.events), "--out", files_dir],
            os.path.join(args.work, "gen-files.log"), args.timeout)
        if code != 0:
            sys.exit(f"gen --out failed ({code}):\n{tail(os.path.join(args.work, 'gen-files.log'))}")
        size = sum(os.path.getsize(os.path.join(files_dir, f)) for f in os.listdir(files_dir))
        gen_files = {"kind": "gen", "target": "files", "wall_s": wall, "cpu_s": cpu,
                     "bytes": size, "summary": tail(os.path.join(args.work, "gen-files.log"), 1).strip()}
        records.append(gen_files)
        log(f"  files: {wall:.1f} s wall, {cpu:.1f} s CPU, {size / 1e6:,.0f} MB")

        log(f"generating {args.events:,} events into topics person/auction/bid "
            f"({args.partitions} partition(s)) on {broker.addr}")
        b0 = broker.cpu()
        code, wall, cpu, _ = run_measured(
            [args.basin, "--brokers", broker.addr, "gen", "nexmark", "--events", str(args.events),
             "--topics", "--partitions", str(args.partitions)],
            os.path.join(args.work, "gen-topics.log"), args.timeout)
        broker_cpu = broker.cpu() - b0
        if code != 0:
            sys.exit(f"gen --topics failed ({code}):\n{tail(os.path.join(args.work, 'gen-topics.log'))}")
        gen_topics = {"kind": "gen", "target": "topics", "wall_s": wall, "cpu_s": cpu + broker_cpu,
                      "generator_cpu_s": cpu, "broker_cpu_s": broker_cpu,
                      "summary": tail(os.path.join(args.work, "gen-topics.log"), 1).strip()}
        records.append(gen_topics)
        log(f"  topics: {wall:.1f} s wall, {cpu:.1f} s generator CPU + {broker_cpu:.1f} s broker CPU")

        # ---------------------------------------------------------- queries ---
        results = []
        for q in names:
            row = {"kind": "query", "query": q, "events": args.events,
                   "basin": None, "flink": None, "flink_skipped": None}
            if "basin" in engines:
                row["basin"] = best([run_basin(args, broker, q, i) for i in range(args.runs)])
            if "flink" in engines:
                fq = os.path.join(fdir, f"{q}.sql")
                if os.path.exists(fq):
                    row["flink"] = best([run_flink(args, files_dir, q, fq, i)
                                         for i in range(args.runs)])
                else:
                    row["flink_skipped"] = f"no Flink counterpart benchmarks/nexmark/flink/{q}.sql"
                    log(f"{q}: Flink skipped: {row['flink_skipped']}")
            f = row["flink"]
            b = row["basin"]
            with open(os.path.join(qdir, f"{q}.sql")) as qf:
                row["proctime"] = "PROCTIME()" in qf.read().upper()
            if f and f.get("ok") and (f["changes"]["update_after"] or f["changes"]["delete"]):
                # An updating query: the two changelogs differ by design (Flink
                # emits an update per input row, Basin the keys that changed
                # at each tick), so the check compares the final results:
                # Flink's inserts - deletes against the row count of the same
                # Basin file run in batch mode (not timed).
                row["updating"] = True
                f["final_rows"] = f["changes"]["insert"] - f["changes"]["delete"]
                if b and b.get("ok"):
                    b["final_rows"] = basin_batch_rows(args, broker, q)
            derive(row, gen_topics["cpu_s"], gen_files["cpu_s"])
            records.append(row)
            results.append(row)
            log(f"{q}: basin {fmt_k(row['basin_eps'])} ev/s, {fmt_k(row['basin_eps_core'])} ev/s/core; "
                f"flink {fmt_k(row['flink_eps'])} ev/s, {fmt_k(row['flink_eps_core'])} ev/s/core; "
                f"ratio {fmt_ratio(row['ratio_core'])}; rows {fmt_int(row['basin_rows_out'])} / "
                f"{fmt_int(row['flink_rows_out'])} {row['check']}")
    finally:
        broker.stop()
    meta["load_end"] = loadavg()
    log(f"load average at end: {meta['load_end']}")

    with open(args.out_jsonl, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    md = report(meta, gen_files, gen_topics, results, args)
    with open(args.out_md, "w") as f:
        f.write(md)
    print(md)
    bad = [r["query"] for r in results if not r["check"].startswith(("ok", "—"))]
    if bad:
        log(f"row counts differ or a run failed: {', '.join(bad)}")


def best(runs):
    """The run with the lowest wall time among those that succeeded."""
    ok = [r for r in runs if r.get("ok")]
    chosen = min(ok, key=lambda r: r["wall_s"]) if ok else runs[-1]
    chosen = dict(chosen)
    chosen["all_runs"] = [{k: r.get(k) for k in ("wall_s", "cpu_s", "ok")} for r in runs]
    return chosen


def run_basin(args, broker, q, i):
    qdir = os.path.join(HERE, "queries")
    data = os.path.join(args.work, f"data-basin-{q}-{i}")
    shutil.rmtree(data, ignore_errors=True)
    logf = os.path.join(args.work, f"basin-{q}-{i}.log")
    argv = [args.basin, "--brokers", broker.addr, "pipeline", "run",
            os.path.join(qdir, "_sources.sql"), os.path.join(qdir, f"{q}.sql"),
            "--bounded", "--discard", "--parallelism", str(args.parallelism),
            "--checkpoint-interval", args.checkpoint_interval, "--data-dir", data]
    log(f"{q}: basin pipeline run (run {i + 1}/{args.runs})")
    m0, b0 = machine_busy(), broker.cpu()
    code, wall, cpu, _ = run_measured(argv, logf, args.timeout)
    b1, m1 = broker.cpu(), machine_busy()
    r = {"ok": code == 0, "exit": code, "wall_s": wall, "pipeline_cpu_s": cpu,
         "broker_cpu_s": b1 - b0, "cpu_s": cpu + (b1 - b0), "log": logf,
         "machine_busy_s": m1 - m0}
    r["other_cpu_s"] = max(0.0, r["machine_busy_s"] - r["cpu_s"])
    text = open(logf, errors="replace").read()
    found = SUMMARY.findall(text)
    if found:
        r["rows_in"] = sum(int(x[0]) for x in found)
        r["rows_out"] = sum(int(x[1]) for x in found)
        r["late_rows"] = sum(int(x[2]) for x in found)
        r["checkpoints"] = max(int(x[3]) for x in found)
        r["summary"] = [l for l in text.splitlines() if SUMMARY.search(l)]
    else:
        r["ok"] = False
    if not r["ok"]:
        r["error"] = tail(logf, 8)
        log(f"{q}: basin failed (exit {code}):\n{r['error']}")
    if not broker.alive():
        raise RuntimeError(f"the broker died:\n{tail(broker.log)}")
    shutil.rmtree(data, ignore_errors=True)
    return r


def basin_batch_rows(args, broker, q):
    """Rows of the query file run once in batch mode (a check, not timed).
    Batch mode with --discard prints no count, so the rows are printed (JSON
    lines) and counted here."""
    qdir = os.path.join(HERE, "queries")
    data = os.path.join(args.work, f"data-basin-{q}-batch")
    shutil.rmtree(data, ignore_errors=True)
    logf = os.path.join(args.work, f"basin-{q}-batch.log")
    argv = [args.basin, "--brokers", broker.addr, "pipeline", "run",
            os.path.join(qdir, "_sources.sql"), os.path.join(qdir, f"{q}.sql"),
            "--mode", "batch", "--data-dir", data]
    log(f"{q}: basin pipeline run --mode batch (final rows, for the check)")
    lines = 0
    with open(logf, "wb") as err:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
        try:
            while True:
                chunk = p.stdout.read(1 << 20)
                if not chunk:
                    break
                lines += chunk.count(b"\n")
            code = p.wait(args.timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            code = p.wait()
    shutil.rmtree(data, ignore_errors=True)
    if code != 0:
        log(f"{q}: basin batch run failed (exit {code}):\n{tail(logf, 8)}")
        return None
    return lines


def run_flink(args, files_dir, q, fq, i):
    work = os.path.join(args.work, f"data-flink-{q}-{i}")
    shutil.rmtree(work, ignore_errors=True)
    logf = os.path.join(args.work, f"flink-{q}-{i}.log")
    argv = [args.flink_python, os.path.join(HERE, "flink_query.py"),
            "--sources", os.path.join(HERE, "flink", "_sources.sql"), "--query", fq,
            "--data", files_dir, "--jar", args.flink_jar, "--work", work,
            "--parallelism", str(args.parallelism),
            "--checkpoint-interval", args.checkpoint_interval]
    log(f"{q}: flink (run {i + 1}/{args.runs})")
    m0 = machine_busy()
    code, wall, cpu, out = run_measured(argv, logf, args.timeout)
    m1 = machine_busy()
    r = {"ok": False, "exit": code, "process_wall_outside_s": wall, "log": logf,
         "machine_busy_s": m1 - m0}
    line = next((l for l in reversed(out.splitlines()) if l.startswith("{")), None)
    if code == 0 and line:
        j = json.loads(line)
        r.update(j)
        r["ok"] = j.get("count_files", 0) > 0
        # The measured window: from submitting the planned job to its end.
        r["wall_s"] = j["job_wall_s"]
        r["cpu_s"] = j["job_cpu_s"]
        r["other_cpu_s"] = max(0.0, r["machine_busy_s"] - j["process_cpu_s"])
        with open(os.path.join(args.work, f"flink-{q}-{i}.plan.txt"), "w") as f:
            f.write(j.get("plan", ""))
        r.pop("plan", None)
    else:
        r["wall_s"] = wall
    if not r["ok"]:
        r["error"] = tail(logf, 12)
        log(f"{q}: flink failed (exit {code}):\n{r['error']}")
    shutil.rmtree(work, ignore_errors=True)
    return r


def derive(row, gen_topics_cpu, gen_files_cpu):
    n = row["events"]
    b, f = row["basin"], row["flink"]
    bok = b is not None and b.get("ok")
    fok = f is not None and f.get("ok")
    row["basin_eps"] = div(n, b["wall_s"]) if bok else None
    row["basin_eps_core"] = div(n, b["cpu_s"]) if bok else None
    row["basin_eps_core_gen"] = div(n, b["cpu_s"] + gen_topics_cpu) if bok else None
    upd = row.get("updating")
    row["basin_rows_out"] = (b.get("final_rows") if upd else b.get("rows_out")) if bok else None
    row["flink_eps"] = div(n, f["wall_s"]) if fok else None
    row["flink_eps_core"] = div(n, f["cpu_s"]) if fok else None
    row["flink_eps_core_gen"] = div(n, f["cpu_s"] + gen_files_cpu) if fok else None
    row["flink_rows_out"] = (f.get("final_rows") if upd else f.get("rows_out")) if fok else None
    row["ratio_core"] = div(row["basin_eps_core"], row["flink_eps_core"])
    row["ratio_core_gen"] = div(row["basin_eps_core_gen"], row["flink_eps_core_gen"])
    row["ratio_wall"] = div(row["basin_eps"], row["flink_eps"])
    if b is not None and not bok or f is not None and not fok:
        row["check"] = "FAILED"
    elif bok and fok and row.get("proctime"):
        # Processing-time windows: which rows share a window depends on when
        # each engine read them, so the outputs are not comparable.
        row["check"] = "— (processing time)"
    elif bok and fok:
        same = row["basin_rows_out"] is not None and row["basin_rows_out"] == row["flink_rows_out"]
        row["check"] = ("ok" if same else "MISMATCH") + (" (final rows)" if upd else "")
    else:
        row["check"] = "—"


def report(meta, gen_files, gen_topics, results, args):
    n = args.events
    L = []
    L.append(f"# Nexmark: Basin vs Apache Flink — {meta['date']}\n")
    L.append(f"Command: `{meta['command']}`  ")
    L.append(f"Basin: {meta['basin']} (git {meta['git']}), release build. "
             f"Flink: apache-flink {meta['flink']} (PyFlink, local mode). {meta['java']}.  ")
    L.append(f"Machine: {meta['cores']} cores ({meta['cpu_model']}); load average "
             f"{meta['load_start']} at start, {meta['load_end']} at end.  ")
    L.append(f"Events: {n:,} (per 50: 1 person, 3 auctions, 46 bids; seed 1); topics with "
             f"{meta['partitions']} partition(s); parallelism {meta['parallelism']}; exactly-once "
             f"checkpoints every {meta['checkpoint_interval']} on both sides; best of "
             f"{meta['runs']} run(s) by wall time.\n")
    L.append("Generation (counted in the \"gen counted\" columns):\n")
    L.append(f"- to JSON-lines files (Flink's input): {gen_files['wall_s']:.1f} s wall, "
             f"{gen_files['cpu_s']:.1f} CPU s, {gen_files['bytes'] / 1e6:,.0f} MB")
    L.append(f"- to topics on a fresh `basin up` (Basin's input): {gen_topics['wall_s']:.1f} s wall, "
             f"{gen_topics['cpu_s']:.1f} CPU s ({gen_topics['generator_cpu_s']:.1f} generator + "
             f"{gen_topics['broker_cpu_s']:.1f} broker)\n")
    L.append("events/s = events ÷ wall seconds; events/s/core = events ÷ CPU seconds "
             "(user+sys). Basin: the `basin pipeline run` process plus the broker's CPU during "
             "the run. Flink: the Python + JVM process tree from job submission to the job's end "
             "(JVM start and planning left out). Ratio = Basin ÷ Flink, events/s/core.\n")
    L.append("| query | events | Basin events/s | Basin events/s/core | Flink events/s | "
             "Flink events/s/core | ratio | Basin ev/s/core, gen counted | "
             "Flink ev/s/core, gen counted | ratio, gen counted | rows out Basin | "
             "rows out Flink | check |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        L.append(f"| {r['query']} | {n:,} | {fmt_k(r['basin_eps'])} | {fmt_k(r['basin_eps_core'])} | "
                 f"{fmt_k(r['flink_eps'])} | {fmt_k(r['flink_eps_core'])} | {fmt_ratio(r['ratio_core'])} | "
                 f"{fmt_k(r['basin_eps_core_gen'])} | {fmt_k(r['flink_eps_core_gen'])} | "
                 f"{fmt_ratio(r['ratio_core_gen'])} | {fmt_int(r['basin_rows_out'])} | "
                 f"{fmt_int(r['flink_rows_out'])} | {r['check']} |")
    L.append("")
    L.append("Wall and CPU seconds per run (other = CPU the rest of the machine used "
             "meanwhile, from /proc/stat):\n")
    L.append("| query | Basin wall s | Basin CPU s (pipeline + broker) | Basin other CPU s | "
             "Flink job wall s | Flink job CPU s | Flink process wall s / CPU s (with JVM start) | "
             "Flink other CPU s |")
    L.append("|---|---|---|---|---|---|---|---|")
    for r in results:
        b, f = r["basin"], r["flink"]
        bw = bc = bo = fw = fc = fp = fo = "—"
        if b and b.get("ok"):
            bw = f"{b['wall_s']:.2f}"
            bc = f"{b['cpu_s']:.2f} ({b['pipeline_cpu_s']:.2f} + {b['broker_cpu_s']:.2f})"
            bo = f"{b['other_cpu_s']:.1f}"
        if f and f.get("ok"):
            fw = f"{f['job_wall_s']:.2f}"
            fc = f"{f['job_cpu_s']:.2f}"
            fp = f"{f['process_wall_s']:.1f} / {f['process_cpu_s']:.1f}"
            fo = f"{f['other_cpu_s']:.1f}"
        L.append(f"| {r['query']} | {bw} | {bc} | {bo} | {fw} | {fc} | {fp} | {fo} |")
    L.append("")
    for r in results:
        if r.get("updating"):
            b, f = r["basin"], r["flink"]
            streamed = f"Basin streamed {b['rows_out']:,} upserts" if b and b.get("ok") else ""
            ch = f["changes"]
            L.append(f"- {r['query']} updates its rows, so rows out are the final rows: Flink's "
                     f"inserts − deletes, and the same Basin file run in batch mode. The changelogs "
                     f"differ by design ({streamed + '; ' if streamed else ''}Flink "
                     f"{ch['insert']:,} inserts, {ch['update_after']:,} updates, {ch['delete']:,} deletes).")
    for r in results:
        if r.get("proctime"):
            L.append(f"- {r['query']} windows processing time (PROCTIME()), so the rows out depend "
                     "on when each engine read each bid and are not compared; both count every bid once.")
    notes = [r for r in results if r.get("flink_skipped")]
    for r in notes:
        L.append(f"- {r['query']}: Flink skipped: {r['flink_skipped']}.")
    for r in results:
        for side in ("basin", "flink"):
            x = r[side]
            if x is not None and not x.get("ok"):
                err = " ".join((x.get("error") or "").split())[-300:]
                L.append(f"- {r['query']}: {side} failed (exit {x.get('exit')}): `{err}`")
        b = r["basin"]
        if b and b.get("ok") and b.get("late_rows"):
            L.append(f"- {r['query']}: Basin dropped {b['late_rows']:,} late rows.")
    L.append("")
    return "\n".join(L)


if __name__ == "__main__":
    main()
