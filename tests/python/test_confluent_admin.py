"""Admin operations through confluent-kafka's AdminClient."""
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic,
)

from clients import admin, consume, create_topic, produce_all, producer


def describe_topic_configs(a, name):
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    return a.describe_configs([res])[res].result(timeout=30)


def test_create_describe_alter_add_partitions_delete_records_delete(broker, topic_name):
    a = admin(broker)
    a.create_topics([NewTopic(topic_name, 3, 1, config={"retention.ms": "86400000",
                                                        "cleanup.policy": "delete"})])[topic_name].result(30)
    md = a.list_topics(topic_name, timeout=10)
    assert len(md.topics[topic_name].partitions) == 3

    cfg = describe_topic_configs(a, topic_name)
    assert cfg["retention.ms"].value == "86400000"
    assert cfg["retention.ms"].source == ConfigResource.Type.TOPIC or not cfg["retention.ms"].is_default
    assert cfg["max.message.bytes"].is_default

    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("retention.ms", "172800000", incremental_operation=AlterConfigOpType.SET),
    ])
    a.incremental_alter_configs([res])[res].result(30)
    assert describe_topic_configs(a, topic_name)["retention.ms"].value == "172800000"

    a.create_partitions([NewPartitions(topic_name, 5)])[topic_name].result(30)
    assert len(a.list_topics(topic_name, timeout=10).topics[topic_name].partitions) == 5

    produce_all(producer(broker), topic_name, [(None, b"%d" % i) for i in range(10)], partition=0)
    fut = a.delete_records([TopicPartition(topic_name, 0, 6)])
    [(tp, f)] = list(fut.items())
    assert f.result(30).low_watermark == 6
    got = consume(broker, topic_name, 4, partitions=[0])
    assert [m.value() for m in got] == [b"6", b"7", b"8", b"9"]

    a.delete_topics([topic_name])[topic_name].result(30)
    deadline = time.time() + 10
    while topic_name in a.list_topics(timeout=10).topics and time.time() < deadline:
        time.sleep(0.1)
    assert topic_name not in a.list_topics(timeout=10).topics


def test_invalid_requests_get_kafka_errors(broker, topic_name):
    a = admin(broker)
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic("bad/name", 1, 1)])["bad/name"].result(30)
    assert e.value.args[0].code() == KafkaError.TOPIC_EXCEPTION
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic(topic_name, 1, 1, config={"cleanup.policy": "bogus"})])[topic_name].result(30)
    assert "INVALID_CONFIG" in str(e.value) or "config" in str(e.value).lower()
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic(topic_name, 1, 1, config={"no.such.config": "1"})])[topic_name].result(30)
    assert "INVALID_CONFIG" in str(e.value) or "config" in str(e.value).lower()
    create_topic(broker, topic_name)
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(30)
    assert "TOPIC_ALREADY_EXISTS" in str(e.value)
    with pytest.raises(KafkaException) as e:
        a.create_partitions([NewPartitions(topic_name, 1)])[topic_name].result(30)
    assert "INVALID_PARTITIONS" in str(e.value)


def test_validate_only_creates_nothing(broker, topic_name):
    a = admin(broker)
    a.create_topics([NewTopic(topic_name, 2, 1)], validate_only=True)[topic_name].result(30)
    assert topic_name not in a.list_topics(timeout=10).topics
