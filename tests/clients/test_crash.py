"""Crash safety: kill -9 the broker while an idempotent acks=all producer is
sending to a topic with flush.messages=1 (flush policy every-batch); after a
restart every acknowledged record is there exactly once, in order."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import ConfigResource

from helpers import admin_client, by_partition, consume_all, create_topic

HERE = Path(__file__).resolve().parent
PARTITIONS = 3


def read_acks(path: Path) -> list[tuple[int, int, str]]:
    out = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 3:  # a torn last line cannot happen (line-buffered), but be safe
            out.append((int(parts[0]), int(parts[1]), parts[2]))
    return out


def test_kill9_keeps_every_acknowledged_record(broker, tmp_path):
    topic = "crash"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS, config={"flush.messages": "1"})
    admin = admin_client(broker.bootstrap)
    futures = admin.describe_configs([ConfigResource("topic", topic)])
    configs = {k: v.value for k, v in next(iter(futures.values())).result(timeout=30).items()}
    assert configs.get("flush.messages") == "1", configs
    if "flush.policy" in configs:
        assert configs["flush.policy"] == "every-batch", configs

    acks_path = tmp_path / "acks.tsv"
    errors_path = tmp_path / "errors.tsv"
    producer_log = tmp_path / "producer.log"
    with open(producer_log, "wb") as log:
        producer = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "crash_producer.py"),
                "--bootstrap", broker.bootstrap,
                "--topic", topic,
                "--partitions", str(PARTITIONS),
                "--acks", str(acks_path),
                "--errors", str(errors_path),
                "--seconds", "6",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        started = time.monotonic()
        deadline = started + 30
        while time.monotonic() < deadline:
            assert producer.poll() is None, f"producer exited early:\n{producer_log.read_text()}"
            if time.monotonic() - started >= 2.0 and len(read_acks(acks_path)) > 0:
                break
            time.sleep(0.05)
        acked_at_kill = len(read_acks(acks_path))
        assert acked_at_kill > 0, "no record was acknowledged within 30s"

        broker.kill9()
        time.sleep(0.3)
        broker.start()

        producer.wait(timeout=120)
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait(timeout=10)

    acks = read_acks(acks_path)
    errors = errors_path.read_text() if errors_path.exists() else ""
    context = (
        f"acked before kill: {acked_at_kill}, acked in all: {len(acks)}\n"
        f"producer output:\n{producer_log.read_text()[-3000:]}\n"
        f"delivery errors (first lines):\n{errors[:3000]}"
    )
    assert producer.returncode == 0, context
    acked_values = [v for _, _, v in acks]
    assert len(set(acked_values)) == len(acked_values), "a record was acknowledged twice\n" + context

    records = consume_all(broker.bootstrap, topic, PARTITIONS, expected=len(acks), timeout=90)
    stored: dict[str, list[tuple[int, int]]] = {}
    for r in records:
        stored.setdefault(r.value.decode(), []).append((r.partition, r.offset))

    dups = {v: locs for v, locs in stored.items() if len(locs) > 1}
    assert not dups, f"{len(dups)} values stored more than once, e.g. {list(dups.items())[:5]}\n{context}"
    missing = [v for v in acked_values if v not in stored]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:5]}\n{context}"
    for p, off, v in acks:
        (sp, so), = stored[v]
        assert sp == p, f"{v}: acknowledged on partition {p}, stored on {sp}\n{context}"
        if off >= 0:
            assert so == off, f"{v}: acknowledged at offset {off}, stored at {so}\n{context}"

    # Per partition, acknowledged values appear in the order they were sent.
    acked_set = set(acked_values)
    for p, recs in by_partition(records).items():
        in_log = [r.value.decode() for r in recs if r.value.decode() in acked_set]
        assert in_log == sorted(in_log), f"partition {p}: acknowledged records out of order\n{context}"
        offsets = [r.offset for r in recs]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), f"partition {p}: offsets"

    assert "fatal=[]" in producer_log.read_text(), (
        "the idempotent producer hit a fatal error after the restart "
        "(producer state lost or sequence mismatch?)\n" + context
    )


def test_acknowledged_records_readable_after_kill9_without_new_writes(broker):
    """Acked records must be readable right after a crash restart, before any
    new write moves the high watermark."""
    topic = "crash-idle"
    n = 3000
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS, config={"flush.messages": "1"})
    acked = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    for i in range(n):
        p.produce(
            topic,
            value=f"idle-{i:06d}".encode(),
            partition=i % PARTITIONS,
            on_delivery=lambda err, msg: acked.append(msg.value().decode()) if err is None else None,
        )
        p.poll(0)
    assert p.flush(60) == 0
    assert len(acked) == n
    del p

    broker.kill9()
    broker.start()

    try:
        records = consume_all(broker.bootstrap, topic, PARTITIONS, expected=n, timeout=30)
    except AssertionError as e:
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "hw-probe"})
        marks = {q: c.get_watermark_offsets(TopicPartition(topic, q), timeout=10) for q in range(PARTITIONS)}
        c.close()
        raise AssertionError(f"{e}\n(low, high) watermarks after the restart: {marks}") from None
    values = [r.value.decode() for r in records]
    assert sorted(values) == sorted(acked)
    for q, recs in by_partition(records).items():
        assert [r.value.decode() for r in recs] == [f"idle-{i:06d}" for i in range(q, n, PARTITIONS)]
