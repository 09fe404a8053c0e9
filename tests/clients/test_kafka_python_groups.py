"""kafka-python consumer groups: partition split, rebalance on leave, and
resuming from committed offsets across a broker restart."""

from __future__ import annotations

import sys
import threading
import time
import traceback

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from helpers import create_topic

GROUP_CONF = dict(
    auto_offset_reset="earliest",
    enable_auto_commit=False,
    session_timeout_ms=10000,
    heartbeat_interval_ms=1000,
    max_poll_interval_ms=30000,
    request_timeout_ms=40000,
)


def new_consumer(bootstrap: str, group: str, client_id: str, **extra) -> KafkaConsumer:
    conf = dict(GROUP_CONF)
    conf.update(extra)
    return KafkaConsumer(bootstrap_servers=[bootstrap], group_id=group, client_id=client_id, **conf)


class Member(threading.Thread):
    """One group member polling in its own thread (KafkaConsumer is not thread-safe)."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str):
        super().__init__(name=name, daemon=True)
        self.consumer = new_consumer(bootstrap, group, name)
        self.topic = topic
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self._assignment: frozenset[int] = frozenset()
        self.error: str | None = None

    def run(self) -> None:
        try:
            self.consumer.subscribe([self.topic])
            while not self.stop_event.is_set():
                self.consumer.poll(timeout_ms=200)
                with self.lock:
                    self._assignment = frozenset(tp.partition for tp in self.consumer.assignment())
        except Exception:  # noqa: BLE001 - reported by the test
            self.error = traceback.format_exc()
        finally:
            try:
                self.consumer.close(autocommit=False, timeout_ms=10000)
            except Exception:  # noqa: BLE001
                if self.error is None:
                    self.error = traceback.format_exc()

    @property
    def assignment(self) -> frozenset[int]:
        with self.lock:
            return self._assignment

    def shutdown(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} did not close within {timeout}s"


def wait_until(cond, timeout: float, what, members=()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in members:
            assert m.error is None, f"{m.name} failed:\n{m.error}"
        if cond():
            return
        time.sleep(0.1)
    stacks = sys._current_frames()
    dump = "".join(
        f"\n--- stack of {m.name} ---\n" + "".join(traceback.format_stack(stacks[m.ident]))
        for m in members
        if m.ident in stacks
    )
    pytest.fail(f"timed out after {timeout}s waiting for {what() if callable(what) else what}{dump}")


def test_group_splits_partitions_and_rebalances_on_leave(broker):
    topic = "kp-group"
    create_topic(broker.bootstrap, topic, partitions=4)

    a = Member(broker.bootstrap, "kp-group-1", topic, "member-a")
    b = Member(broker.bootstrap, "kp-group-1", topic, "member-b")
    a.start()
    b.start()
    try:
        def split_evenly():
            return (
                len(a.assignment) == 2
                and len(b.assignment) == 2
                and a.assignment | b.assignment == {0, 1, 2, 3}
            )

        wait_until(
            split_evenly,
            60,
            lambda: f"a 2/2 split, have a={sorted(a.assignment)} b={sorted(b.assignment)}",
            members=(a, b),
        )

        a.shutdown()
        assert a.error is None, a.error
        wait_until(
            lambda: b.assignment == {0, 1, 2, 3},
            60,
            lambda: f"b to own all 4 partitions after a left, b={sorted(b.assignment)}",
            members=(b,),
        )
    finally:
        for m in (a, b):
            if m.is_alive():
                m.shutdown()
    assert b.error is None, b.error


N_RESUME = 2000
PARTITIONS = 4


def produce_numbered(bootstrap: str, topic: str, n: int) -> None:
    producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all", linger_ms=5)
    try:
        futures = [
            producer.send(topic, value=f"v-{i:05d}".encode(), key=f"k-{i}".encode(), partition=i % PARTITIONS)
            for i in range(n)
        ]
        producer.flush(timeout=60)
        for f in futures:
            f.get(timeout=30)
    finally:
        producer.close(timeout=10)


def poll_records(consumer: KafkaConsumer, sink: list, until, timeout: float, commit: bool = False) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until():
        batch = consumer.poll(timeout_ms=500)
        for tp, msgs in batch.items():
            for m in msgs:
                sink.append((tp.partition, m.offset, m.value.decode()))
        if commit and batch:
            consumer.commit(timeout_ms=30000)  # synchronous, after processing each batch


@pytest.mark.parametrize("how", ["restart", "kill9"])
def test_group_resumes_from_committed_offsets_after_restart(broker, how):
    topic = "kp-resume"
    group = f"kp-resume-{how}"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    produce_numbered(broker.bootstrap, topic, N_RESUME)
    all_values = {f"v-{i:05d}" for i in range(N_RESUME)}

    before: list[tuple[int, int, str]] = []
    first = new_consumer(broker.bootstrap, group, "resume-1", max_poll_records=50)
    try:
        first.subscribe([topic])
        poll_records(first, before, lambda: len(before) >= N_RESUME // 2, timeout=60, commit=True)
        assert len(before) >= N_RESUME // 2, f"only {len(before)} records before the restart"
        assert len(before) < N_RESUME, "the first consumer read everything; nothing left to resume"
        first.commit(timeout_ms=30000)  # again, explicitly: positions of everything returned by poll()
        last = {}
        for p, off, _ in before:
            last[p] = max(last.get(p, -1), off)
        for p, off in last.items():
            committed = first.committed(TopicPartition(topic, p), timeout_ms=10000)
            assert committed == off + 1, f"partition {p}: committed {committed}, consumed up to {off}"
    finally:
        first.close(autocommit=False, timeout_ms=10000)

    if how == "restart":
        broker.restart()
    else:
        broker.kill9()
        broker.start()

    after: list[tuple[int, int, str]] = []
    second = new_consumer(broker.bootstrap, group, "resume-2", max_poll_records=500)
    try:
        second.subscribe([topic])
        poll_records(second, after, lambda: len(before) + len(after) >= N_RESUME, timeout=60)
        # Keep polling briefly so that repeats past the end would show up.
        poll_records(second, after, lambda: False, timeout=2)
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = {tp.partition: off for tp, off in second.end_offsets(tps).items()}
    finally:
        second.close(autocommit=False, timeout_ms=10000)

    before_vals = [v for _, _, v in before]
    after_vals = [v for _, _, v in after]
    repeated = set(before_vals) & set(after_vals)
    assert not repeated, f"{len(repeated)} records delivered both before and after, e.g. {sorted(repeated)[:5]}"
    assert len(set(before_vals)) == len(before_vals), "duplicates before the restart"
    assert len(set(after_vals)) == len(after_vals), "duplicates after the restart"
    missing = all_values - set(before_vals) - set(after_vals)
    assert not missing, (
        f"{len(missing)} records never delivered, e.g. {sorted(missing)[:5]}; "
        f"end offsets (high watermarks) after the {how}: {ends}, expected {N_RESUME // PARTITIONS} each"
    )
    assert len(before_vals) + len(after_vals) == N_RESUME

    # Per partition, the second consumer starts exactly where the first stopped.
    for p in range(PARTITIONS):
        offs = [o for q, o, _ in before if q == p] + [o for q, o, _ in after if q == p]
        assert offs == list(range(N_RESUME // PARTITIONS)), f"partition {p}: offsets not contiguous"
