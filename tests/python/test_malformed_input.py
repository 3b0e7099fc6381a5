"""Bad bytes over TCP get Kafka error codes or a closed connection, never a
crash, and a well-behaved client on another connection is unaffected."""
import struct

import pytest

from clients import consume, create_topic, produce_all, producer
from kafka_raw import (
    Conn, create_topics_v2, parse_create_topics_v2_response, parse_produce_v3_response,
    produce_v3, record_batch, request,
)

CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
UNSUPPORTED_VERSION = 35
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_CONFIG = 40
INVALID_RECORD = 87


@pytest.fixture
def healthy(broker, topic_name):
    """A well-behaved producer/consumer pair used before and after each abuse."""
    create_topic(broker, topic_name)
    p = producer(broker)
    sent = []

    def check():
        v = b"ok-%d" % len(sent)
        produce_all(p, topic_name, [(None, v)])
        sent.append(v)
        got = consume(broker, topic_name, len(sent))
        assert [m.value() for m in got] == sent
    check()
    yield check
    check()
    assert broker.proc.poll() is None, broker.log()


def test_oversized_and_negative_frames_close_the_connection(broker, healthy):
    for size in (0x7FFFFFFF, 200 * 1024 * 1024, -5):
        c = Conn(broker.bootstrap)
        c.send(struct.pack(">i", size) + b"\x00" * 16)
        assert c.closed_by_peer()
        c.close()
        healthy()


def test_unknown_api_key_closes_and_bad_version_is_reported(broker, healthy):
    c = Conn(broker.bootstrap)
    c.send(request(9999, 0, b""))
    assert c.recv_frame() is None
    c.close()
    healthy()
    # ApiVersions at a version the broker does not know: answered with
    # UNSUPPORTED_VERSION in a v0 body listing what it supports.
    c = Conn(broker.bootstrap)
    c.send(request(18, 99, b"", correlation_id=42))
    corr, body = c.recv_frame()
    assert corr == 42
    (err,) = struct.unpack_from(">h", body, 0)
    assert err == UNSUPPORTED_VERSION
    (n,) = struct.unpack_from(">i", body, 2)
    keys = {struct.unpack_from(">h", body, 6 + 6 * i)[0] for i in range(n)}
    assert {0, 1, 3, 18, 19}.issubset(keys)
    c.close()
    # A produce at an unsupported version closes the connection.
    c = Conn(broker.bootstrap)
    c.send(request(0, 99, b"\x00" * 10))
    assert c.recv_frame() is None
    c.close()
    healthy()


def test_truncated_and_garbage_bodies_close_the_connection(broker, healthy):
    full = request(3, 1, struct.pack(">i", 1) + b"\x00\x05hello")
    bad = full[:4] + full[4:]
    # declared length says more than the body holds: wrong length field
    truncated = struct.pack(">i", len(bad) - 4) + bad[4:-3]
    for payload in [truncated + b"", request(3, 1, b"\xff\xff\xff\x7f"), request(0, 3, b"\x01")]:
        c = Conn(broker.bootstrap, timeout=5)
        c.send(payload)
        # either an error response or a closed connection, then nothing more
        try:
            c.recv_frame()
        except OSError:
            pass
        c.close()
        healthy()


def test_corrupt_batches_get_record_errors(broker, healthy, topic_name):
    c = Conn(broker.bootstrap)
    good = record_batch([b"a", b"b", b"c"])

    # bad crc: flip a byte inside the records
    bad_crc = bytearray(good)
    bad_crc[-2] ^= 0xFF
    c.send(request(0, 3, produce_v3(topic_name, 0, bytes(bad_crc)), correlation_id=7))
    corr, body = c.recv_frame()
    assert corr == 7
    [(_, _, err, _)] = parse_produce_v3_response(body)
    assert err == CORRUPT_MESSAGE

    # truncated batch: length field says more than present
    c.send(request(0, 3, produce_v3(topic_name, 0, good[:-5]), correlation_id=8))
    _, body = c.recv_frame()
    [(_, _, err, _)] = parse_produce_v3_response(body)
    assert err in (CORRUPT_MESSAGE, INVALID_RECORD)

    # record count that does not match the records (crc recomputed so only
    # the count is wrong)
    wrong_count = bytearray(good)
    struct.pack_into(">i", wrong_count, 57, 7)
    fix_crc(wrong_count)
    c.send(request(0, 3, produce_v3(topic_name, 0, bytes(wrong_count)), correlation_id=9))
    _, body = c.recv_frame()
    [(_, _, err, _)] = parse_produce_v3_response(body)
    assert err in (CORRUPT_MESSAGE, INVALID_RECORD)

    # unknown partition
    c.send(request(0, 3, produce_v3(topic_name, 99, good), correlation_id=10))
    _, body = c.recv_frame()
    [(_, _, err, _)] = parse_produce_v3_response(body)
    assert err == UNKNOWN_TOPIC_OR_PARTITION
    c.close()
    healthy()


def test_invalid_create_topics(broker, healthy):
    c = Conn(broker.bootstrap)
    cases = [
        (create_topics_v2("bad name!", 1), INVALID_TOPIC_EXCEPTION),
        (create_topics_v2("a" * 250, 1), INVALID_TOPIC_EXCEPTION),
        (create_topics_v2("..", 1), INVALID_TOPIC_EXCEPTION),
        (create_topics_v2("neg-partitions", -7), INVALID_PARTITIONS),
        (create_topics_v2("zero-partitions", 0), INVALID_PARTITIONS),
        (create_topics_v2("bad-rf", 1, replication=0), INVALID_REPLICATION_FACTOR),
        (create_topics_v2("bad-config", 1, configs=[("retention.ms", "soon")]), INVALID_CONFIG),
        (create_topics_v2("bad-policy", 1, configs=[("cleanup.policy", "compact")]), INVALID_CONFIG),
    ]
    for i, (body, code) in enumerate(cases):
        c.send(request(19, 2, body, correlation_id=100 + i))
        corr, resp = c.recv_frame()
        assert corr == 100 + i
        [(_, err, msg)] = parse_create_topics_v2_response(resp)
        assert err == code, (body, err, msg)
        assert msg, "an error message explains the code"
    c.close()
    healthy()


def fix_crc(batch):
    from kafka.record._crc32c import crc as crc32c
    struct.pack_into(">I", batch, 17, crc32c(bytes(batch[21:])))
