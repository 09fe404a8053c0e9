"""Shared helpers for the client-compatibility suite (no fixtures here).

Topics are created through the Kafka protocol (CreateTopics via
confluent-kafka's AdminClient), so the tests do not depend on the CLI.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

DEFAULT_TIMEOUT_S = 30.0


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    config: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> None:
    """CreateTopics, then wait until Metadata shows every partition with a leader."""
    admin = admin_client(bootstrap)
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    futures[name].result(timeout=timeout)
    wait_for_topic(bootstrap, name, partitions, timeout=timeout, admin=admin)


def wait_for_topic(
    bootstrap: str,
    name: str,
    partitions: int,
    timeout: float = DEFAULT_TIMEOUT_S,
    admin: AdminClient | None = None,
) -> None:
    admin = admin or admin_client(bootstrap)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = admin.list_topics(topic=name, timeout=5)
        topic = md.topics.get(name)
        last = topic
        if (
            topic is not None
            and topic.error is None
            and len(topic.partitions) == partitions
            and all(p.leader >= 0 for p in topic.partitions.values())
        ):
            return
        time.sleep(0.1)
    raise AssertionError(f"topic {name!r} not ready with {partitions} partitions: {last!r}")


@dataclass
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list = field(default_factory=list)


def consume_all(
    bootstrap: str,
    topic: str,
    partitions: int,
    expected: int | None = None,
    timeout: float = 60.0,
    extra_config: dict | None = None,
) -> list[Record]:
    """Read every partition of `topic` from the beginning up to its end.

    Uses explicit assignment (no group rebalance). Stops once every partition
    has reported end-of-partition after its last message and at least
    `expected` records arrived; fails after `timeout` seconds.
    """
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": f"reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "socket.timeout.ms": 10000,
    }
    conf.update(extra_config or {})
    consumer = Consumer(conf)
    records: list[Record] = []
    at_eof: set[int] = set()
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_eof.add(msg.partition())
                        continue
                    raise AssertionError(f"consumer error: {err}")
                at_eof.discard(msg.partition())
                records.append(
                    Record(msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers() or [])
                )
            if len(at_eof) == partitions and (expected is None or len(records) >= expected):
                return records
        raise AssertionError(
            f"timed out after {timeout}s reading {topic!r}: got {len(records)} records"
            f" (expected {expected}), partitions at end: {sorted(at_eof)}"
        )
    finally:
        consumer.close()


def by_partition(records: list[Record]) -> dict[int, list[Record]]:
    out: dict[int, list[Record]] = {}
    for r in records:
        out.setdefault(r.partition, []).append(r)
    return out
