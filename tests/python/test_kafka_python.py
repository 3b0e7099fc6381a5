"""kafka-python (a pure-Python client with its own protocol code)."""
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic


def test_produce_consume_with_keys_headers_and_compression(broker, topic_name):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic_name, num_partitions=3, replication_factor=1)])
    for codec in [None, "gzip", "snappy", "lz4", "zstd"]:
        p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", compression_type=codec,
                          # idempotence (InitProducerId) is the transactions issue
                          enable_idempotence=False)
        futs = [
            p.send(topic_name, key=b"VIN%014d" % i, value=b"v-%s-%d" % (str(codec).encode(), i),
                   headers=[("codec", str(codec).encode())])
            for i in range(100)
        ]
        p.flush()
        for f in futs:
            md = f.get(timeout=30)
            assert md.offset >= 0
        p.close()
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=10000)
    c.assign([TopicPartition(topic_name, p) for p in range(3)])
    got = [m for m in c]
    c.close()
    assert len(got) == 500
    per_part = {}
    for m in got:
        per_part.setdefault(m.partition, []).append(m.offset)
        assert m.headers[0][1] == m.value.split(b"-")[1]
    for offs in per_part.values():
        assert offs == list(range(len(offs)))
    admin.close()


def test_admin_create_describe_alter_add_partitions_delete(broker, topic_name):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic_name, num_partitions=2, replication_factor=1,
                                  topic_configs={"retention.ms": "3600000"})])
    assert topic_name in admin.list_topics()
    [desc] = admin.describe_topics([topic_name])
    assert len(desc["partitions"]) == 2
    res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic_name)])
    text = repr(res)
    assert "retention.ms" in text and "3600000" in text
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic_name,
                                        configs={"retention.ms": "7200000"})])
    res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic_name)])
    assert "7200000" in repr(res)
    admin.create_partitions({topic_name: NewPartitions(total_count=4)})
    [desc] = admin.describe_topics([topic_name])
    assert len(desc["partitions"]) == 4
    admin.delete_topics([topic_name])
    deadline = time.time() + 10
    while topic_name in admin.list_topics() and time.time() < deadline:
        time.sleep(0.1)
    assert topic_name not in admin.list_topics()
    admin.close()
