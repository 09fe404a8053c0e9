"""Producer process for test_crash.py (run as a subprocess, not collected by pytest).

Sends `crash-<seq>` values to partition seq % partitions with acks=all and
enable.idempotence for `--seconds` seconds at a bounded rate, then flushes.
Each acknowledged record is appended to `--acks` as "partition<TAB>offset<TAB>value"
and the file is flushed per line, so whatever was acknowledged before a crash
is on disk. Failed deliveries go to `--errors`.
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
    ap.add_argument("--acks", required=True)
    ap.add_argument("--errors", required=True)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rate", type=int, default=4000, help="records per second, at most")
    ap.add_argument("--flush-timeout", type=float, default=45.0)
    args = ap.parse_args()

    acks = open(args.acks, "w", buffering=1)
    errors = open(args.errors, "w", buffering=1)
    fatal: list[str] = []

    def on_delivery(err, msg):
        if err is None:
            acks.write(f"{msg.partition()}\t{msg.offset()}\t{msg.value().decode()}\n")
            acks.flush()
        else:
            errors.write(f"{msg.value().decode()}\t{err}\n")
            errors.flush()

    def on_error(err):
        errors.write(f"-\t{err}\n")
        errors.flush()
        if err.fatal():
            fatal.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "batch.num.messages": 200,
            "message.timeout.ms": 40000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "retry.backoff.ms": 100,
            "error_cb": on_error,
        }
    )

    start = time.monotonic()
    seq = 0
    while not fatal:
        elapsed = time.monotonic() - start
        if elapsed >= args.seconds:
            break
        if seq >= elapsed * args.rate:
            producer.poll(0.005)
            continue
        value = f"crash-{seq:08d}".encode()
        try:
            producer.produce(args.topic, value=value, partition=seq % args.partitions, on_delivery=on_delivery)
        except BufferError:
            producer.poll(0.05)
            continue
        except KafkaException as e:
            errors.write(f"{value.decode()}\tproduce: {e}\n")
            break
        seq += 1
        producer.poll(0)

    remaining = producer.flush(args.flush_timeout)
    print(f"produced={seq} undelivered={remaining} fatal={fatal}", file=sys.stderr, flush=True)
    acks.close()
    errors.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
