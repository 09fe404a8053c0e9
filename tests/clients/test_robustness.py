"""Malformed frames on raw sockets: the broker drops (or answers) the bad
connection, stays up, and serves a normal client afterwards."""

from __future__ import annotations

import random
import socket
import struct
import time

from confluent_kafka import Producer

from helpers import consume_all, create_topic

READ_TIMEOUT_S = 10.0


def connect(broker) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", broker.port), timeout=READ_TIMEOUT_S)
    s.settimeout(READ_TIMEOUT_S)
    return s


def outcome_after(sock: socket.socket) -> str:
    """'closed' if the broker closed the connection, 'answered' if it sent bytes.

    Raises if it did neither within READ_TIMEOUT_S.
    """
    try:
        data = sock.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        return "closed"
    except socket.timeout:
        raise AssertionError(f"broker neither answered nor closed within {READ_TIMEOUT_S}s") from None
    return "answered" if data else "closed"


def send_and_expect_drop_or_error(broker, payload: bytes) -> str:
    with connect(broker) as s:
        try:
            s.sendall(payload)
        except (ConnectionResetError, BrokenPipeError):
            return "closed"
        return outcome_after(s)


def assert_broker_works(broker, topic: str) -> None:
    assert broker.is_running(), "broker process died\n" + broker.log_tail()
    create_topic(broker.bootstrap, topic, partitions=1)
    delivered = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(10):
        p.produce(topic, value=f"ok-{i}".encode(), on_delivery=lambda err, msg: delivered.append(err))
    assert p.flush(30) == 0
    assert delivered == [None] * 10, delivered
    records = consume_all(broker.bootstrap, topic, 1, expected=10, timeout=30)
    assert [r.value for r in records] == [f"ok-{i}".encode() for i in range(10)]


def test_garbage_frames(broker):
    rng = random.Random(0xBA5111)
    outcomes = []
    for _ in range(20):
        body = rng.randbytes(rng.randint(8, 256))
        outcomes.append(send_and_expect_drop_or_error(broker, struct.pack(">i", len(body)) + body))
    # A plausible header (ApiVersions v3, correlation id 7) followed by garbage.
    body = struct.pack(">hhi", 18, 3, 7) + rng.randbytes(40)
    outcomes.append(send_and_expect_drop_or_error(broker, struct.pack(">i", len(body)) + body))
    # An unknown API key with a well-formed header.
    body = struct.pack(">hhih", 32000, 0, 8, -1)
    outcomes.append(send_and_expect_drop_or_error(broker, struct.pack(">i", len(body)) + body))
    assert set(outcomes) <= {"closed", "answered"}
    assert_broker_works(broker, "after-garbage")
    assert "panicked" not in broker.log_text(), broker.log_tail()


def test_oversized_and_negative_length_prefix(broker):
    for prefix in (0x7FFFFFFF, 1 << 30, -1, -0x80000000):
        outcome = send_and_expect_drop_or_error(broker, struct.pack(">i", prefix) + b"\x00\x12\x00\x03" * 4)
        assert outcome in ("closed", "answered"), f"length prefix {prefix}: {outcome}"
    # A frame that promises more than it sends, then the client vanishes.
    with connect(broker) as s:
        s.sendall(struct.pack(">i", 1000) + b"\x00\x12\x00\x03partial")
    time.sleep(0.2)
    assert_broker_works(broker, "after-oversized")
    assert "panicked" not in broker.log_text(), broker.log_tail()


def test_random_bodies_for_every_api_key(broker):
    """Well-formed headers for API keys 0..74 with random bodies (a tiny fuzz
    pass over every request decoder). A decodable request may legitimately be
    answered or held (a Fetch with a long max wait), so this only checks that
    the broker survives, does not panic, and still serves clients."""
    rng = random.Random(74)
    socks = []
    try:
        for api_key in range(75):
            for _ in range(3):
                version = rng.randint(0, 13)
                header = struct.pack(">hhih", api_key, version, rng.randint(0, 1 << 30), -1)
                body = header + rng.randbytes(rng.randint(0, 200))
                s = connect(broker)
                socks.append(s)
                try:
                    s.sendall(struct.pack(">i", len(body)) + body)
                except (ConnectionResetError, BrokenPipeError):
                    pass
        time.sleep(2)
        assert broker.is_running(), "broker died\n" + broker.log_tail()
        assert_broker_works(broker, "after-fuzz")
    finally:
        for s in socks:
            s.close()
    time.sleep(0.5)
    assert broker.is_running(), "broker died after the fuzz connections closed\n" + broker.log_tail()
    assert "panicked" not in broker.log_text(), broker.log_tail()
