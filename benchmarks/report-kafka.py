#!/usr/bin/env python3
"""Turn the JSON lines of one run-kafka.sh run into the Markdown report.

Reads the file named by $RAW (one kafka-bench JSON line per measurement, or a
{"failed": true, ...} line per failed invocation) and the run's metadata from
the environment, writes $OUT_MD and prints it to stdout.
"""

import json
import os
import platform
import shlex
import subprocess

ENV = os.environ
DISK = float(ENV["DISK_REF"])
SIZES = [100, 1000]
PARTS = [1, 6]


def load():
    rows = []
    with open(ENV["RAW"]) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def failure_case(row):
    """Recover test/size/partitions/acks of a failed invocation from its args."""
    args = shlex.split(row.get("args", ""))
    opts = {}
    for i, a in enumerate(args[:-1]):
        if a.startswith("--"):
            opts[a[2:]] = args[i + 1]
    tests = opts.get("tests", "produce,consume,e2e").split(",")
    return (tests, int(opts.get("record-size", 100)), int(opts.get("partitions", 1)), opts.get("acks", "1"),
            int(opts.get("fetch-wait-ms", 500)))


def find(rows, label, test, size, parts, acks, fetch_wait=500):
    for r in rows:
        if r.get("failed"):
            tests, s, p, a, w = failure_case(r)
            if r["label"] == label and test in tests and (s, p, a, w) == (size, parts, acks, fetch_wait):
                return r
        elif (r.get("label"), r.get("test"), r.get("record_size"), r.get("partitions"), r.get("acks"),
              r.get("fetch_wait_ms")) == (label, test, size, parts, acks, fetch_wait):
            return r
    return None


def problem(r):
    """Why a measurement cannot be trusted, or None."""
    if r is None:
        return "not run"
    if r.get("failed"):
        return "FAILED: " + r.get("error", "")[:160]
    if r.get("errors"):
        return f"{r['errors']} errors ({r.get('first_error') or 'see log'})"
    if r.get("complete") is False:
        return f"incomplete: {r.get('records')} of {r.get('expected', r.get('sent'))} records"
    return None


def fmt_rate(r):
    p = problem(r)
    if p:
        return p
    return f"{r['records_per_sec'] / 1e3:,.0f}k rec/s · {r['mb_per_sec']:.1f} MB/s"


def fmt_ms(r, key):
    p = problem(r)
    if p:
        return p
    return f"{r[key]:.2f} ms"


def size_name(size):
    return "100 B" if size == 100 else "1 KB"


def check(ok):
    return "✅" if ok else "❌"


def main():
    rows = load()
    table = []  # (case, basin, tansu, ratio, disk fraction, targets)
    met, total = 0, 0
    disk_rows = []

    def add_throughput(case, b, t, disk_target):
        nonlocal met, total
        ratio = None
        if not problem(b) and not problem(t):
            ratio = b["records_per_sec"] / t["records_per_sec"]
        frac = None if problem(b) else b["mb_per_sec"] / DISK
        targets = []
        total += 1
        ok2 = ratio is not None and ratio >= 2
        met += ok2
        targets.append(f"2×: {check(ok2)}")
        if disk_target:
            okd = frac is not None and frac >= 0.5
            disk_rows.append((case, frac, okd))
            targets.append(f"½ disk: {check(okd)}")
        table.append((
            case, fmt_rate(b), fmt_rate(t),
            f"{ratio:.2f}×" if ratio is not None else "—",
            f"{frac:.2f}" if frac is not None else "—",
            "; ".join(targets),
        ))

    for size in SIZES:
        for parts in PARTS:
            for acks in ["1", "all"]:
                b = find(rows, "basin", "produce", size, parts, acks)
                t = find(rows, "tansu", "produce", size, parts, acks)
                case = f"produce {size_name(size)}, {parts} partition{'s' if parts > 1 else ''}, acks={acks}"
                add_throughput(case, b, t, disk_target=(size == 1000 and acks == "1"))
    for size in SIZES:
        for parts in PARTS:
            b = find(rows, "basin", "consume", size, parts, "1")
            t = find(rows, "tansu", "consume", size, parts, "1")
            case = f"consume {size_name(size)}, {parts} partition{'s' if parts > 1 else ''}"
            add_throughput(case, b, t, disk_target=False)
    e2e_size = int(ENV.get("E2E_SIZE", 1000))
    for acks in ["1", "all"]:
        b = find(rows, "basin", "e2e", e2e_size, 1, acks)
        t = find(rows, "tansu", "e2e", e2e_size, 1, acks)
        for key, name in [("p50_ms", "p50"), ("p99_ms", "p99")]:
            ratio = None
            if not problem(b) and not problem(t) and b[key] > 0:
                ratio = t[key] / b[key]
            total += 1
            ok2 = ratio is not None and ratio >= 2
            met += ok2
            table.append((
                f"e2e latency {name}, {size_name(e2e_size)}, 1 partition, acks={acks}, "
                f"{ENV['E2E_RATE']} rec/s",
                fmt_ms(b, key), fmt_ms(t, key),
                f"{ratio:.2f}× (Tansu÷Basin)" if ratio is not None else "—",
                "—", f"2×: {check(ok2)}",
            ))

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        fs = subprocess.run(["df", "-PT", ENV["RAW"]], capture_output=True, text=True).stdout.splitlines()[1].split()
        fs = f"{fs[0]} ({fs[1]}, mounted on {fs[6]})"
    except (IndexError, OSError):
        fs = "unknown"

    out = []
    out.append(f"# Kafka benchmark: Basin vs Tansu ({ENV['DATE']})\n")
    out.append("Produced by `bash benchmarks/run-kafka.sh` (see `benchmarks/README.md`). "
               "Raw measurements: the `.jsonl` file next to this one.\n")
    out.append(f"- Basin: commit `{ENV['GIT_REV']}` (+{ENV['GIT_DIRTY']} uncommitted paths under crates/), "
               f"release build, `flush.policy={ENV['BASIN_FLUSH']}` for every row including acks=all "
               "(a single node acknowledges acks=all once the leader has appended; no fsync before the ack)")
    out.append(f"- Tansu: {ENV['TANSU_VERSION']}, `--storage-engine sqlite://tansu.db` "
               "(libsql, WAL journal, `synchronous=normal`: the fastest durable engine of this build; "
               "`memory://` is faster but keeps nothing, `s3://` needs an object store)")
    out.append(f"- Machine: {os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GiB RAM, Linux {platform.release()}; "
               f"load average {ENV['LOAD_START']} at start, {ENV['LOAD_END']} at end "
               "(other builds may share the 2 cores)")
    out.append(f"- Disk {fs}: sequential write {ENV['DISK_DIRECT']} MB/s with `dd bs=1M count=1024 oflag=direct`, "
               f"{ENV['DISK_FDATASYNC']} MB/s with `conv=fdatasync`; the last column divides by the larger, "
               f"{ENV['DISK_REF']} MB/s (MB = 10^6 bytes everywhere)")
    out.append(f"- Producer cells: {int(ENV['RECORDS_100']):,} records of 100 B or {int(ENV['RECORDS_1K']):,} of 1 KB, "
               f"capped at {ENV['CELL_SECONDS']} s; linger.ms=5, batch.size=1000000, no compression, "
               "no idempotence, records round-robin over the partitions; consumer cells read the acks=1 topic "
               "from the beginning (fetch.queue.backoff.ms=1, see kafka-bench/src/client.rs); e2e: one producer (linger.ms=0) at a fixed rate for "
               f"{ENV['E2E_SECONDS']} s, consumer with fetch.wait.max.ms=500 in the same process\n")
    out.append("| case | Basin | Tansu | ratio Basin/Tansu | Basin MB/s ÷ disk | targets |")
    out.append("|---|---|---|---|---|---|")
    for r in table:
        out.append("| " + " | ".join(r) + " |")
    out.append("")
    out.append(f"**2× Tansu:** met on {met} of {total} rows.  ")
    if disk_rows:
        parts = ", ".join(f"{c.split(', acks')[0].replace('produce ', '')}: {f:.2f}" if f is not None else c
                          for c, f, _ in disk_rows)
        out.append(f"**1 KB acks=1 ≥ ½ disk bandwidth:** {sum(ok for *_, ok in disk_rows)} of {len(disk_rows)} "
                   f"rows ({parts}).\n")

    if ENV.get("EXTRAS") == "1":
        out.append("## Reference rows (not part of the targets)\n")
        out.append("Basin with `flush.policy=every-batch` (fsync before every produce response) for acks=all, "
                   "and Tansu's non-durable `memory://` engine (dynostore on an in-memory object store) "
                   "for acks=1, next to the main run's numbers.\n")
        out.append("| case | Basin every-batch | Basin " + ENV["BASIN_FLUSH"] + " | Tansu sqlite | Tansu memory |")
        out.append("|---|---|---|---|---|")
        for size in SIZES:
            for parts in PARTS:
                out.append(f"| produce {size_name(size)}, {parts} partition{'s' if parts > 1 else ''}, acks=all | "
                           f"{fmt_rate(find(rows, 'basin-every-batch', 'produce', size, parts, 'all'))} | "
                           f"{fmt_rate(find(rows, 'basin', 'produce', size, parts, 'all'))} | "
                           f"{fmt_rate(find(rows, 'tansu', 'produce', size, parts, 'all'))} | — |")
            out.append(f"| produce {size_name(size)}, 6 partitions, acks=1 | — | "
                       f"{fmt_rate(find(rows, 'basin', 'produce', size, 6, '1'))} | "
                       f"{fmt_rate(find(rows, 'tansu', 'produce', size, 6, '1'))} | "
                       f"{fmt_rate(find(rows, 'tansu-memory', 'produce', size, 6, '1'))} |")
        out.append("")
        b = find(rows, "basin", "e2e", e2e_size, 1, "1", fetch_wait=10)
        t = find(rows, "tansu", "e2e", e2e_size, 1, "1", fetch_wait=10)
        out.append("End-to-end latency with the consumer's `fetch.wait.max.ms=10` instead of 500 "
                   "(a broker that holds a waiting fetch until its deadline, instead of answering "
                   "when data arrives, looks much better here):\n")
        out.append("| case | Basin | Tansu |")
        out.append("|---|---|---|")
        for key, name in [("p50_ms", "p50"), ("p99_ms", "p99")]:
            out.append(f"| e2e {name}, {size_name(e2e_size)}, 1 partition, acks=1, fetch.wait.max.ms=10 | "
                       f"{fmt_ms(b, key)} | {fmt_ms(t, key)} |")
        out.append("")

    failures = [r for r in rows if r.get("failed")]
    if failures:
        out.append("## Failures\n")
        for r in failures:
            out.append(f"- {r['label']} `{r.get('args', '')}`: exit {r.get('exit')}: {r.get('error', '')}")
        out.append("")

    text = "\n".join(out) + "\n"
    with open(ENV["OUT_MD"], "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
