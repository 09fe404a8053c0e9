#!/usr/bin/env python3
"""Run one Nexmark query on Apache Flink (PyFlink, local mode) and print one
JSON line with its timings, CPU and output row counts.

Runs in the PyFlink venv (benchmarks/run-nexmark.sh makes it). The pipeline:
the statements of the sources file (tables over the JSON-lines files, the
count_char UDF), then the query file: every statement but the last is run
as is (CREATE VIEW, ...), the last one is a SELECT whose rows go to the
counting blackhole sink (java/: Flink's blackhole plus one counter per row
kind). TableEnvironment in streaming mode, parallelism 1, exactly-once
checkpoints to a local folder every CHECKPOINT_INTERVAL, hashmap state
backend.

CPU is user+sys of this process and every descendant (the JVM that py4j
starts), read from /proc: once the JVM is up and the statements are
planned ("before"), and once the job has finished ("after"). The job's
figures are after - before; the process's are everything up to "after".
"""
import argparse
import json
import os
import re
import sys
import time

T_PROCESS = time.time()
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """utime+stime+cutime+cstime of pid, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime..cstime are fields 14..17.
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def descendants(root):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu():
    pids = descendants(os.getpid())
    return sum(proc_cpu(p) for p in pids), len(pids)


def statements(text):
    """Split SQL text on semicolons outside quotes and comments."""
    out, cur, i, n = [], [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if c == "'":
            j = i + 1
            while j < n:
                if text[j] == "'" and j + 1 < n and text[j + 1] == "'":
                    j += 2
                    continue
                if text[j] == "'":
                    break
                j += 1
            cur.append(text[i:j + 1])
            i = j + 1
            continue
        if c == ";":
            s = "".join(cur).strip()
            if s:
                out.append(s)
            cur = []
        else:
            cur.append(c)
        i += 1
    s = "".join(cur).strip()
    if s:
        out.append(s)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", required=True)
    ap.add_argument("--query", required=True)
    ap.add_argument("--data", required=True, help="folder of person/auction/bid .jsonl")
    ap.add_argument("--jar", required=True, help="counting sink + count_char jar")
    ap.add_argument("--work", required=True, help="folder for checkpoints and counts")
    ap.add_argument("--parallelism", type=int, default=1)
    ap.add_argument("--checkpoint-interval", default="10s")
    ap.add_argument("--state-backend", default="hashmap")
    args = ap.parse_args()

    from pyflink.table import EnvironmentSettings, TableEnvironment, TableDescriptor, Schema

    os.makedirs(args.work, exist_ok=True)
    ckpt_dir = os.path.join(args.work, "checkpoints")
    count_path = os.path.join(args.work, "counts")

    settings = EnvironmentSettings.new_instance().in_streaming_mode().build()
    t_env = TableEnvironment.create(settings)
    conf = t_env.get_config()
    for k, v in {
        "parallelism.default": str(args.parallelism),
        "execution.checkpointing.interval": args.checkpoint_interval,
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.storage": "filesystem",
        "execution.checkpointing.dir": "file://" + os.path.abspath(ckpt_dir),
        "state.backend.type": args.state_backend,
        "pipeline.jars": "file://" + os.path.abspath(args.jar),
        "pipeline.name": "nexmark-" + os.path.splitext(os.path.basename(args.query))[0],
    }.items():
        conf.set(k, v)

    sources = open(args.sources).read().replace("${DATA_DIR}", os.path.abspath(args.data))
    for st in statements(sources):
        t_env.execute_sql(st)
    query_stmts = statements(open(args.query).read())
    if not query_stmts:
        sys.exit(f"{args.query}: no statement")
    for st in query_stmts[:-1]:
        t_env.execute_sql(st)
    table = t_env.sql_query(query_stmts[-1])
    schema = Schema.new_builder().from_row_data_type(
        table.get_schema().to_row_data_type()).build()
    t_env.create_temporary_table(
        "nexmark_sink",
        TableDescriptor.for_connector("basin-counting-blackhole")
        .schema(schema)
        .option("path", os.path.abspath(count_path))
        .build())
    plan = table.explain()

    cpu_before, _ = tree_cpu()
    t_before = time.time()
    result = table.execute_insert("nexmark_sink")
    result.wait()
    t_after = time.time()
    cpu_after, nprocs = tree_cpu()

    counts = {"insert": 0, "update_before": 0, "update_after": 0, "delete": 0}
    files = [f for f in os.listdir(args.work) if re.fullmatch(r"counts\.\d+", f)]
    for f in files:
        for kv in open(os.path.join(args.work, f)).read().split():
            k, v = kv.split("=")
            counts[k] += int(v)
    # Flink keeps the last completed checkpoint, chk-N: N checkpoints were taken.
    last_ckpt = 0
    if os.path.isdir(ckpt_dir):
        for _, dirs, _ in os.walk(ckpt_dir):
            for d in dirs:
                if re.fullmatch(r"chk-\d+", d):
                    last_ckpt = max(last_ckpt, int(d[4:]))
    print(json.dumps({
        "job_wall_s": t_after - t_before,
        "job_cpu_s": cpu_after - cpu_before,
        "process_wall_s": t_after - T_PROCESS,
        "process_cpu_s": cpu_after,
        "processes": nprocs,
        "count_files": len(files),
        "rows_out": counts["insert"] + counts["update_after"],
        "changes": counts,
        "last_checkpoint": last_ckpt,
        "plan": plan,
    }), flush=True)


if __name__ == "__main__":
    main()
