"""Kafka transactions with confluent-kafka (librdkafka 2.x): transactional
producers that commit and abort, read by read_committed and read_uncommitted
consumers; offsets sent to a transaction; and crash safety: kill -9 of the
broker with a transaction open, after which read_committed readers never see
uncommitted records and every committed transaction is there, whole."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from helpers import consume_all, create_topic

HERE = Path(__file__).resolve().parent
PARTITIONS = 3
COMMITTED = {"isolation.level": "read_committed"}
UNCOMMITTED = {"isolation.level": "read_uncommitted"}


def txn_producer(bootstrap: str, txn_id: str, **conf) -> Producer:
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 2, **conf})
    p.init_transactions(30)
    return p


def produce_values(p: Producer, topic: str, values: list[str]) -> None:
    for i, v in enumerate(values):
        p.produce(topic, value=v.encode(), key=v.encode(), partition=i % PARTITIONS)
    assert p.flush(30) == 0


def values_of(records) -> list[str]:
    return sorted(r.value.decode() for r in records)


def named(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(n)]


def test_transactional_commit_and_abort_with_read_committed(broker):
    topic = "txn-basic"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    p = txn_producer(broker.bootstrap, "basic")
    p.begin_transaction()
    produce_values(p, topic, named("first", 30))
    p.commit_transaction(30)
    p.begin_transaction()
    produce_values(p, topic, named("aborted", 21))
    p.abort_transaction(30)
    p.begin_transaction()
    produce_values(p, topic, named("second", 9))
    p.commit_transaction(30)

    committed = consume_all(broker.bootstrap, topic, PARTITIONS, expected=39, extra_config=COMMITTED)
    assert values_of(committed) == sorted(named("first", 30) + named("second", 9))
    everything = consume_all(broker.bootstrap, topic, PARTITIONS, expected=60, extra_config=UNCOMMITTED)
    assert values_of(everything) == sorted(named("first", 30) + named("aborted", 21) + named("second", 9))
    # Control markers take offsets but are never handed to the application.
    assert all(r.value is not None for r in everything)
    assert max(r.offset for r in everything) > len(everything) // PARTITIONS


def test_open_transaction_is_invisible_to_read_committed(broker):
    topic = "txn-open"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    p = txn_producer(broker.bootstrap, "open")
    p.begin_transaction()
    produce_values(p, topic, named("pending", 6))
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "probe", **COMMITTED})
    lso = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
    c.close()
    assert lso == (0, 0), "the last stable offset waits for the open transaction"
    assert consume_all(broker.bootstrap, topic, PARTITIONS, extra_config=COMMITTED) == []
    p.commit_transaction(30)
    committed = consume_all(broker.bootstrap, topic, PARTITIONS, expected=6, extra_config=COMMITTED)
    assert values_of(committed) == named("pending", 6)


def test_send_offsets_to_transaction(broker):
    topic = "txn-sink"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    create_topic(broker.bootstrap, "txn-source", partitions=1)
    group = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "etl", **COMMITTED})
    p = txn_producer(broker.bootstrap, "etl")

    def committed_offset() -> int:
        tp = group.committed([TopicPartition("txn-source", 0)], timeout=10)[0]
        return tp.offset

    for offset, commit in [(10, True), (20, False), (30, True)]:
        p.begin_transaction()
        produce_values(p, topic, named(f"out{offset}", 3))
        p.send_offsets_to_transaction(
            [TopicPartition("txn-source", 0, offset)], group.consumer_group_metadata(), 30
        )
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
        assert committed_offset() == (offset if commit else 10)
    group.close()


def test_kill9_with_an_open_transaction(broker):
    topic = "txn-crash-open"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    p = txn_producer(broker.bootstrap, "crash-open")
    for t in range(5):
        p.begin_transaction()
        produce_values(p, topic, named(f"c{t}", 20))
        p.commit_transaction(30)
    p.begin_transaction()
    produce_values(p, topic, named("open", 20))

    broker.kill9()
    broker.start()

    committed = consume_all(broker.bootstrap, topic, PARTITIONS, expected=100, extra_config=COMMITTED)
    expected = sorted(v for t in range(5) for v in named(f"c{t}", 20))
    assert values_of(committed) == expected
    everything = consume_all(broker.bootstrap, topic, PARTITIONS, expected=120, extra_config=UNCOMMITTED)
    assert values_of(everything) == sorted(expected + named("open", 20)), "the open records are in the log"

    # A new instance with the same transactional id aborts the open
    # transaction and fences the old one.
    fresh = txn_producer(broker.bootstrap, "crash-open")
    with pytest.raises(KafkaException):
        p.commit_transaction(15)
    fresh.begin_transaction()
    produce_values(fresh, topic, named("after", 10))
    fresh.commit_transaction(30)
    committed = consume_all(broker.bootstrap, topic, PARTITIONS, expected=110, extra_config=COMMITTED)
    assert values_of(committed) == sorted(expected + named("after", 10))


def read_log(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def stable_everywhere(bootstrap: str, topic: str) -> bool:
    """True once every partition's last stable offset reached its high watermark."""
    marks = {}
    for name, conf in (("committed", COMMITTED), ("uncommitted", UNCOMMITTED)):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:6]}", **conf})
        marks[name] = [c.get_watermark_offsets(TopicPartition(topic, q), timeout=10, cached=False)[1] for q in range(PARTITIONS)]
        c.close()
    return marks["committed"] == marks["uncommitted"]


def test_kill9_during_a_stream_of_transactions(broker, tmp_path):
    """A producer process runs transactions (every third aborted) until the
    broker is killed at a moment when one is likely open. After the restart
    the broker aborts the open transaction once its timeout passes; then
    read_committed shows every transaction whose commit was acknowledged,
    whole and once, nothing of an aborted or never-committed one, and at
    most the one whose EndTxn was in flight."""
    topic = "txn-crash-stream"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    log_path = tmp_path / "txn.log"
    out_path = tmp_path / "txn-producer.out"
    records = 30
    with open(out_path, "wb") as out:
        producer = subprocess.Popen(
            [
                sys.executable, str(HERE / "txn_producer.py"),
                "--bootstrap", broker.bootstrap, "--topic", topic,
                "--partitions", str(PARTITIONS), "--log", str(log_path),
                "--records", str(records), "--open-ms", "80", "--timeout-ms", "4000",
            ],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert producer.poll() is None, f"producer exited early:\n{out_path.read_text()}\n{log_path.read_text()}"
            events = read_log(log_path)
            done = sum(1 for e in events if e[0] in ("committed", "aborted"))
            # Kill while a transaction is open: its records are written, its
            # EndTxn not sent (the producer waits 80 ms in between).
            if done >= 6 and events and events[-1][0] == "flushed":
                open_txn = int(events[-1][1])
                break
            time.sleep(0.01)
        else:
            raise AssertionError(f"the producer made no progress:\n{log_path.read_text()}")
        broker.kill9()
    finally:
        producer.kill()
        producer.wait(timeout=10)

    broker.start()
    deadline = time.monotonic() + 30
    while not stable_everywhere(broker.bootstrap, topic):
        assert time.monotonic() < deadline, "the open transaction was not aborted after its timeout"
        time.sleep(0.3)

    events = read_log(log_path)
    acked_commits = {int(e[1]) for e in events if e[0] == "committed"}
    acked_aborts = {int(e[1]) for e in events if e[0] == "aborted"}
    commit_attempts = {int(e[1]) for e in events if e[0] == "ending" and e[2] == "commit"}
    assert acked_commits, "no transaction committed before the kill"
    assert acked_aborts, "no transaction aborted before the kill"
    everything = consume_all(broker.bootstrap, topic, PARTITIONS, extra_config=UNCOMMITTED, timeout=60)
    assert any(r.value.decode().startswith(f"txn-{open_txn}-") for r in everything), (
        "the transaction open at the kill has records in the log"
    )

    committed = consume_all(broker.bootstrap, topic, PARTITIONS, extra_config=COMMITTED, timeout=60)
    per_txn = Counter(int(r.value.decode().split("-")[1]) for r in committed)
    values = [r.value.decode() for r in committed]
    assert len(values) == len(set(values)), "a record was read twice"
    context = f"acked commits {sorted(acked_commits)}, acked aborts {sorted(acked_aborts)}, seen {dict(per_txn)}"
    assert acked_commits <= set(per_txn), "a committed transaction is missing: " + context
    assert set(per_txn) <= commit_attempts, "a transaction never committed is visible: " + context
    assert not (set(per_txn) & acked_aborts), "an aborted transaction is visible: " + context
    assert all(n == records for n in per_txn.values()), "a transaction is visible in part: " + context
