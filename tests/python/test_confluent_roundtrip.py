"""Round trips through librdkafka (confluent-kafka) against the real broker."""
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from clients import consume, create_topic, produce_all, producer


def test_keys_headers_timestamps_and_null_values(broker, topic_name):
    create_topic(broker, topic_name)
    now = int(time.time() * 1000)
    msgs = [
        (b"VIN00000000000001", b"report-1", [("kind", b"realtime")], now - 1000),
        (None, b"no-key", None, now - 500),
        (b"VIN00000000000002", None, [("a", b"1"), ("b", None)], now),
        (b"", b"", None, now + 1),
    ]
    reports = produce_all(producer(broker), topic_name, msgs)
    assert [o for _, o in reports] == [0, 1, 2, 3]
    got = consume(broker, topic_name, len(msgs))
    assert [(m.key(), m.value()) for m in got] == [(k, v) for k, v, _, _ in msgs]
    assert got[0].headers() == [("kind", b"realtime")]
    assert got[2].headers() == [("a", b"1"), ("b", None)]
    assert [m.timestamp()[1] for m in got] == [t for _, _, _, t in msgs]
    assert [m.offset() for m in got] == [0, 1, 2, 3]


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_compression_codecs(broker, topic_name, codec):
    create_topic(broker, topic_name, partitions=2)
    msgs = [(f"VIN{i:014d}".encode(), (f"payload-{i}-" * 20).encode()) for i in range(500)]
    produce_all(producer(broker, **{"compression.type": codec}), topic_name, msgs)
    got = consume(broker, topic_name, len(msgs))
    assert sorted((m.key(), m.value()) for m in got) == sorted(msgs)


def test_one_mib_messages(broker, topic_name):
    create_topic(broker, topic_name, config={"max.message.bytes": str(2 * 1024 * 1024)})
    big = [(b"k%d" % i, bytes([i]) * (1024 * 1024)) for i in range(5)]
    produce_all(producer(broker, **{"message.max.bytes": 2 * 1024 * 1024}), topic_name, big)
    got = consume(broker, topic_name, len(big), **{"fetch.message.max.bytes": 2 * 1024 * 1024})
    assert [(m.key(), m.value()) for m in got] == big


def test_hundred_thousand_small_messages_in_order(broker, topic_name):
    create_topic(broker, topic_name)
    n = 100_000
    msgs = [(None, b"%d" % i) for i in range(n)]
    produce_all(producer(broker, **{"linger.ms": 20}), topic_name, msgs)
    got = consume(broker, topic_name, n, timeout=120)
    assert len(got) == n
    assert [int(m.value()) for m in got] == list(range(n))
    assert [m.offset() for m in got] == list(range(n))


def test_consume_from_latest_and_from_timestamp(broker, topic_name):
    create_topic(broker, topic_name)
    base = int(time.time() * 1000) - 100_000
    first = [(None, b"old-%d" % i, None, base + i * 1000) for i in range(10)]
    produce_all(producer(broker), topic_name, first)

    # offsets_for_times: first offset whose timestamp >= the asked time
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ts"})
    try:
        [tp] = c.offsets_for_times([TopicPartition(topic_name, 0, base + 4500)], timeout=10)
        assert tp.offset == 5
        [tp] = c.offsets_for_times([TopicPartition(topic_name, 0, base + 10**9)], timeout=10)
        assert tp.offset == -1  # no such message: end
        lo, hi = c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)
        assert (lo, hi) == (0, 10)
    finally:
        c.close()
    got = consume(broker, topic_name, 5, offset=5)
    assert [m.value() for m in got] == [b"old-%d" % i for i in range(5, 10)]

    # from latest: only what is produced after the assignment
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "latest",
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic_name, 0, -1)])
        deadline = time.time() + 10
        while time.time() < deadline:  # let the consumer resolve "latest" first
            c.poll(0.2)
            pos = c.position([TopicPartition(topic_name, 0)])[0].offset
            if pos >= 0:
                break
        produce_all(producer(broker), topic_name, [(None, b"new")])
        got = []
        deadline = time.time() + 20
        while not got and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m)
        assert [m.value() for m in got] == [b"new"]
        assert got[0].offset() == 10
    finally:
        c.close()


def test_auto_create_on_produce_and_metadata(broker, topic_name):
    p = producer(broker)
    reports = produce_all(p, topic_name, [(None, b"x")])
    assert reports == [(0, 0)]
    md = p.list_topics(timeout=10)
    assert topic_name in md.topics
    assert md.topics[topic_name].error is None
    assert list(md.brokers) == [1]
