"""Topic configs that are accepted are enforced."""
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from clients import admin, consume, create_topic, produce_all, producer


def low_watermark(broker, topic, partition=0):
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "wm"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def test_time_retention_trims_old_batches(make_broker, topic_name):
    b = make_broker("--set", "log_retention_check_interval=200ms")
    create_topic(b, topic_name, config={"retention.ms": "60000"})
    now = int(time.time() * 1000)
    old = [(None, b"old-%d" % i, None, now - 3_600_000) for i in range(5)]
    p = producer(b, **{"linger.ms": 0})
    produce_all(p, topic_name, old[:3])
    produce_all(p, topic_name, old[3:])
    produce_all(p, topic_name, [(None, b"new", None, now)])
    deadline = time.time() + 20
    while time.time() < deadline and low_watermark(b, topic_name)[0] < 5:
        time.sleep(0.2)
    assert low_watermark(b, topic_name) == (5, 6)
    assert [m.value() for m in consume(b, topic_name, 1)] == [b"new"]


def test_size_retention_keeps_at_most_the_limit(make_broker, topic_name):
    b = make_broker("--set", "log_retention_check_interval=200ms")
    create_topic(b, topic_name, config={"retention.bytes": "4000", "retention.ms": "-1"})
    p = producer(b, **{"linger.ms": 0})
    for i in range(10):  # ten batches of one ~1 KB record each
        produce_all(p, topic_name, [(None, bytes([i]) * 1000)])
    deadline = time.time() + 20
    while time.time() < deadline and low_watermark(b, topic_name)[0] == 0:
        time.sleep(0.2)
    lo, hi = low_watermark(b, topic_name)
    assert hi == 10
    assert 5 <= lo <= 7, (lo, hi)  # about 4000 bytes of ~1070-byte batches remain


def test_max_message_bytes_is_enforced(broker, topic_name):
    create_topic(broker, topic_name, config={"max.message.bytes": "2000"})
    p = producer(broker, **{"linger.ms": 0, "message.max.bytes": 10_000_000})
    with pytest.raises(AssertionError) as e:
        produce_all(p, topic_name, [(None, b"x" * 5000)])
    assert "MSG_SIZE_TOO_LARGE" in str(e.value)
    produce_all(p, topic_name, [(None, b"y" * 100)])


def test_log_append_time_stamps_the_broker_clock(broker, topic_name):
    create_topic(broker, topic_name, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    produce_all(producer(broker), topic_name, [(None, b"v", None, 1_000)])
    [m] = consume(broker, topic_name, 1)
    kind, ts = m.timestamp()
    assert kind == 2  # TIMESTAMP_LOG_APPEND_TIME
    assert before - 5_000 <= ts <= int(time.time() * 1000) + 5_000


def test_create_time_bounds_reject_far_timestamps(broker, topic_name):
    create_topic(broker, topic_name, config={"message.timestamp.before.max.ms": "60000"})
    p = producer(broker, **{"linger.ms": 0})
    with pytest.raises(AssertionError) as e:
        produce_all(p, topic_name, [(None, b"ancient", None, 1_000)])
    assert "INVALID_TIMESTAMP" in str(e.value)
    produce_all(p, topic_name, [(None, b"now")])


def test_unsupported_policy_is_rejected(broker, topic_name):
    create_topic(broker, topic_name)
    from confluent_kafka.admin import ConfigResource
    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name, set_config={"cleanup.policy": "compact"})
    a = admin(broker)  # keep the client alive until the future completes
    with pytest.raises(KafkaException) as e:
        a.alter_configs([res])[res].result(30)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG
