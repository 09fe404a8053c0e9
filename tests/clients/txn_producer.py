"""Transactional producer process for test_transactions.py (run as a
subprocess, not collected by pytest).

Runs transactions one after another until killed or `--seconds` pass:
transaction <n> produces `--records` values `txn-<n>-<i>` over the
partitions, waits `--open-ms` with the transaction open, then commits it, or
aborts it when n % 3 == 2. Progress goes to `--log`, one line per event,
flushed per line: `begin <n>`, `flushed <n>` (its records are in the
log), `ending <n> commit|abort` (just before
EndTxn) and `committed <n>` / `aborted <n>` (once the broker answered). On
a fatal or unexpected error the process writes `error <text>` and exits 1.
"""

from __future__ import annotations

import argparse
import sys
import time

from confluent_kafka import KafkaException, Producer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--transactional-id", default="crash-txn")
    ap.add_argument("--records", type=int, default=30)
    ap.add_argument("--open-ms", type=int, default=50)
    ap.add_argument("--timeout-ms", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()

    log = open(args.log, "w", buffering=1)

    def note(text: str) -> None:
        log.write(text + "\n")
        log.flush()

    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "transactional.id": args.transactional_id,
            "transaction.timeout.ms": args.timeout_ms,
            "linger.ms": 2,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
        }
    )
    try:
        producer.init_transactions(30)
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < args.seconds:
            producer.begin_transaction()
            note(f"begin {n}")
            for i in range(args.records):
                producer.produce(args.topic, value=f"txn-{n}-{i}".encode(), partition=i % args.partitions)
            producer.flush(30)
            note(f"flushed {n}")
            time.sleep(args.open_ms / 1000)
            if n % 3 == 2:
                note(f"ending {n} abort")
                producer.abort_transaction(30)
                note(f"aborted {n}")
            else:
                note(f"ending {n} commit")
                producer.commit_transaction(30)
                note(f"committed {n}")
            n += 1
    except KafkaException as e:
        note(f"error {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
