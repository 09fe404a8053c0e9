#!/usr/bin/env python3
"""The table of a run-flow.sh run: per shape, Basin's best run over SQLite
and over PostgreSQL beside Airflow's, in ms per task, with the issue's
targets (under 10 ms per sequential task; a 1,000-task fan-out in under
2 s)."""

import json
import os
import sys


def main(path, commit):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    cpu = os.cpu_count()
    print(f"# Orchestrator overhead: Basin vs Apache Airflow ({os.path.basename(path)[5:15]})\n")
    print(f"Basin at `{commit}` (flow-bench, release); Airflow "
          f"{next((r['version'] for r in rows if r['peer'] == 'airflow'), '—')} "
          f"(LocalExecutor, PostgreSQL, parallelism 32). {cpu} cores. Every task is a "
          "shell command `true`. Wall time: the scheduler starting the run to its end.\n")
    print("| shape | tasks | Basin SQLite: wall s · ms/task | Basin PostgreSQL: wall s · ms/task "
          "| Airflow: wall s · ms/task | Airflow ÷ Basin SQLite | target |")
    print("|---|---|---|---|---|---|---|")
    for shape in shapes:
        def best(pred):
            c = [r for r in rows if r["shape"] == shape and pred(r)]
            return min(c, key=lambda r: r["per_task_ms"]) if c else None
        lite = best(lambda r: r["peer"] == "basin" and r["metadata"] == "sqlite")
        pg = best(lambda r: r["peer"] == "basin" and r["metadata"] == "postgres")
        af = best(lambda r: r["peer"] == "airflow")
        cell = lambda r: "—" if r is None else (
            f"{r['wall_s']:.2f} · {r['per_task_ms']:.1f}"
            + (f" (capped: {r['tasks_done']} of {r['tasks']} done)" if r.get("capped") else "")
            + ("" if r["state"] in ("success", "capped") else f" ({r['state']})"))
        ratio = f"{af['per_task_ms'] / lite['per_task_ms']:.0f}×" if af and lite else "—"
        if shape.startswith("chain"):
            target = f"< 10 ms/task: {'✅' if lite and lite['per_task_ms'] < 10 else '❌'}"
        else:
            target = f"< 2 s: {'✅' if lite and lite['wall_s'] < 2 else '❌'}"
        tasks = (lite or pg or af)["tasks"]
        print(f"| {shape} | {tasks:,} | {cell(lite)} | {cell(pg)} | {cell(af)} | {ratio} | {target} |")
    print("\nBasin rows are the best of the runs in the `.jsonl` beside this file; "
          "Airflow ran each shape once.")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "?")
