"""confluent-kafka (librdkafka 2.x): idempotent producer, compression codecs,
and a consumer with the default isolation level (read_committed)."""

from __future__ import annotations

import random
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from helpers import by_partition, consume_all, create_topic


def produce(bootstrap: str, topic: str, items, conf: dict, timeout: float = 60.0):
    """Produce (partition, key, value, headers) items; return delivery reports in order of arrival."""
    reports = []

    def on_delivery(err, msg):
        reports.append((err, msg.partition(), msg.offset(), msg.value()))

    producer = Producer({"bootstrap.servers": bootstrap, **conf})
    for partition, key, value, headers in items:
        while True:
            try:
                producer.produce(
                    topic, value=value, key=key, partition=partition, headers=headers, on_delivery=on_delivery
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(timeout)
    assert remaining == 0, f"{remaining} records still undelivered after {timeout}s"
    return reports


def test_idempotent_producer_exactly_once_in_order(broker):
    topic = "cf-idem"
    partitions = 3
    n = 6000
    create_topic(broker.bootstrap, topic, partitions=partitions)
    items = [(i % partitions, f"k{i}".encode(), f"idem-{i:06d}".encode(), None) for i in range(n)]
    reports = produce(
        broker.bootstrap,
        topic,
        items,
        {"enable.idempotence": True, "acks": "all", "linger.ms": 5, "batch.num.messages": 500},
    )

    errors = [r for r in reports if r[0] is not None]
    assert not errors, f"{len(errors)} failed deliveries, first: {errors[0]}"
    assert len(reports) == n
    acked_offset = {value: offset for _, _, offset, value in reports}
    assert len(acked_offset) == n

    records = consume_all(broker.bootstrap, topic, partitions, expected=n)
    values = [r.value for r in records]
    assert len(values) == n, f"consumed {len(values)} records, produced {n}"
    assert len(set(values)) == n, "duplicates in the log"
    parts = by_partition(records)
    for p in range(partitions):
        expected = [v for q, _, v, _ in items if q == p]
        got = [r.value for r in parts.get(p, [])]
        assert got == expected, f"partition {p}: order or content differs"
        for r in parts[p]:
            acked_at = acked_offset[r.value]
            assert acked_at == r.offset, f"{r.value!r}: acked at {acked_at}, stored at {r.offset}"


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_roundtrip(broker, codec):
    topic = f"cf-{codec}"
    create_topic(broker.bootstrap, topic, partitions=1)
    rng = random.Random(f"basin-{codec}")
    words = ["basin", "kafka", "record", "batch", "segment", "offset", "partition", "zone"]
    items = []
    for i in range(3000):
        if i % 10 == 0:
            value = rng.randbytes(rng.randint(0, 300))  # incompressible and binary
        else:
            value = (f"{i:06d} " + " ".join(rng.choices(words, k=rng.randint(1, 60)))).encode()
        key = None if i % 7 == 0 else f"key-{i % 50}".encode()
        headers = [("codec", codec.encode()), ("i", str(i).encode())] if i % 3 == 0 else None
        items.append((0, key, value, headers))
    items.append((0, b"empty", b"", None))
    items.append((0, b"big", b"x" * 200_000, None))

    reports = produce(
        broker.bootstrap,
        topic,
        items,
        {"compression.type": codec, "acks": "all", "linger.ms": 20, "batch.num.messages": 1000},
    )
    errors = [r for r in reports if r[0] is not None]
    assert not errors, f"{len(errors)} failed deliveries, first: {errors[0]}"

    records = consume_all(broker.bootstrap, topic, 1, expected=len(items))
    assert len(records) == len(items)
    assert [r.offset for r in records] == list(range(len(items)))
    for r, (_, key, value, headers) in zip(records, items, strict=True):
        assert r.key == key, f"offset {r.offset}: key"
        assert (r.value or b"") == value, f"offset {r.offset}: value differs"
        assert [(k, v) for k, v in r.headers] == (headers or []), f"offset {r.offset}: headers"


@pytest.mark.parametrize("isolation", [None, "read_uncommitted"])
def test_consumer_isolation_level(broker, isolation):
    """librdkafka defaults to isolation.level=read_committed: it must see plain (non-transactional) records."""
    topic = "cf-isolation"
    create_topic(broker.bootstrap, topic, partitions=2)
    n = 500
    items = [(i % 2, None, f"iso-{i}".encode(), None) for i in range(n)]
    reports = produce(broker.bootstrap, topic, items, {"acks": "all"})
    assert all(r[0] is None for r in reports)

    extra = {} if isolation is None else {"isolation.level": isolation}
    records = consume_all(broker.bootstrap, topic, 2, expected=n, extra_config=extra)
    assert sorted(r.value for r in records) == sorted(v for _, _, v, _ in items)
    for p, recs in by_partition(records).items():
        assert [r.offset for r in recs] == list(range(n // 2)), f"partition {p}"


def test_subscribe_commit_and_committed_offsets(broker):
    """A librdkafka group member (subscribe) reads everything and commits; a
    second member of the same group then has nothing left to read."""
    topic = "cf-group"
    create_topic(broker.bootstrap, topic, partitions=3)
    n = 900
    items = [(i % 3, None, f"grp-{i}".encode(), None) for i in range(n)]
    assert all(r[0] is None for r in produce(broker.bootstrap, topic, items, {"acks": "all"}))

    def member():
        return Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "cf-group-1",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 1000,
            }
        )

    c = member()
    got = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            for msg in c.consume(num_messages=500, timeout=0.5):
                if msg.error() is not None:
                    assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                    continue
                got.append(msg.value())
        assert len(got) == n, f"consumed {len(got)} of {n}"
        c.commit(asynchronous=False)
        committed = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
        assert sorted((tp.partition, tp.offset) for tp in committed) == [(0, n // 3), (1, n // 3), (2, n // 3)]
    finally:
        c.close()
    assert sorted(got) == sorted(v for _, _, v, _ in items)

    c2 = member()
    try:
        committed = c2.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
        assert [tp.offset for tp in committed] == [n // 3] * 3
        c2.subscribe([topic])
        extra = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            for msg in c2.consume(num_messages=500, timeout=0.5):
                if msg.error() is None:
                    extra.append(msg.value())
        assert not extra, f"{len(extra)} records re-delivered after commit"
        assert c2.assignment(), "second member never got an assignment"
    finally:
        c2.close()
