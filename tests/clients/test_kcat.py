"""kcat (Debian's, on librdkafka 2.0.x): metadata, and 100,000 records in and out."""

from __future__ import annotations

import json
import random
import shutil
import subprocess

import pytest

from helpers import create_topic

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat is not installed (scripts/test.sh installs it)")

N_RECORDS = 100_000


def kcat(*args: str, stdin=None, timeout: float = 120.0) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [KCAT, *args],
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"kcat {' '.join(args)} exited {proc.returncode}\n"
        f"stderr:\n{proc.stderr.decode(errors='replace')[-4000:]}"
    )
    return proc


def test_kcat_lists_broker_and_topic(broker):
    create_topic(broker.bootstrap, "kcat-meta", partitions=3)

    md = json.loads(kcat("-b", broker.bootstrap, "-L", "-J", timeout=30).stdout)
    brokers = md["brokers"]
    assert [b["name"] for b in brokers] == [broker.bootstrap], md
    broker_id = brokers[0]["id"]
    topics = {t["topic"]: t for t in md["topics"]}
    assert "kcat-meta" in topics, md
    topic = topics["kcat-meta"]
    assert topic.get("error") in (None, ""), topic
    parts = sorted(topic["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == [0, 1, 2]
    for p in parts:
        assert p["leader"] == broker_id, p
        assert p.get("error") in (None, ""), p

    text = kcat("-b", broker.bootstrap, "-L", "-t", "kcat-meta", timeout=30).stdout.decode()
    assert "1 brokers:" in text, text
    assert f"at {broker.bootstrap}" in text, text
    assert 'topic "kcat-meta" with 3 partitions:' in text, text


def test_kcat_produce_consume_100k(broker, tmp_path):
    create_topic(broker.bootstrap, "kcat-bulk", partitions=1)

    rng = random.Random(20261122)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    values = [
        f"rec-{i:06d}-" + "".join(rng.choices(alphabet, k=rng.randint(0, 40)))
        for i in range(N_RECORDS)
    ]
    src = tmp_path / "records.txt"
    src.write_text("\n".join(values) + "\n")

    with open(src, "rb") as f:
        kcat(
            "-b", broker.bootstrap, "-P", "-t", "kcat-bulk", "-p", "0",
            "-X", "acks=all", "-X", "linger.ms=5",
            stdin=f,
            timeout=180,
        )

    out = kcat(
        "-b", broker.bootstrap, "-C", "-t", "kcat-bulk", "-p", "0",
        "-o", "beginning", "-e", "-q", "-f", "%o\\t%s\\n",
        timeout=180,
    ).stdout.decode()
    lines = out.split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    assert len(lines) == N_RECORDS, f"consumed {len(lines)} records, produced {N_RECORDS}"
    offsets = []
    consumed = []
    for line in lines:
        off, _, val = line.partition("\t")
        offsets.append(int(off))
        consumed.append(val)
    assert offsets == list(range(N_RECORDS)), "offsets are not 0..N-1 in order"
    if consumed != values:
        first = next(i for i, (a, b) in enumerate(zip(consumed, values, strict=True)) if a != b)
        pytest.fail(f"first mismatch at offset {first}: {consumed[first]!r} != {values[first]!r}")
