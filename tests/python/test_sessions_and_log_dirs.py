"""Incremental fetch sessions (KIP-227) as kafka-python's consumer uses them,
and DescribeTopicPartitions / DescribeLogDirs through kafka-python's admin."""
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic


def produce(broker, topic, partition, values):
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=False)
    for v in values:
        p.send(topic, value=v, partition=partition)
    p.flush()
    p.close()


def test_kafka_python_consumer_runs_in_an_incremental_session(broker, topic_name):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic_name, num_partitions=3, replication_factor=1)])
    admin.close()
    for p in range(3):
        produce(broker, topic_name, p, [b"first-%d-%d" % (p, i) for i in range(10)])

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                      enable_auto_commit=False, fetch_max_wait_ms=100)
    c.assign([TopicPartition(topic_name, p) for p in range(3)])
    got = []
    deadline = time.time() + 30
    while len(got) < 30 and time.time() < deadline:
        for msgs in c.poll(timeout_ms=200).values():
            got.extend(msgs)
    assert len(got) == 30

    # The broker gave the consumer a session, and it is fetching incrementally.
    handlers = c._fetcher._session_handlers
    assert handlers, "no fetch session handler"
    md = next(iter(handlers.values())).next_metadata
    assert md.session_id != 0, "broker declined the fetch session"
    assert md.epoch > 0, "not in an incremental session"
    sessions_before = md.session_id

    # New data in one partition arrives through the incremental session,
    # in order, and the session survives (same id, epoch moving on).
    produce(broker, topic_name, 1, [b"second-%d" % i for i in range(20)])
    more = []
    deadline = time.time() + 30
    while len(more) < 20 and time.time() < deadline:
        for msgs in c.poll(timeout_ms=200).values():
            more.extend(msgs)
    assert [m.value for m in more] == [b"second-%d" % i for i in range(20)]
    assert all(m.partition == 1 for m in more)
    md = next(iter(handlers.values())).next_metadata
    assert md.session_id == sessions_before
    assert md.epoch > 1
    # Dropping a partition from the assignment forgets it in the session.
    c.assign([TopicPartition(topic_name, 0)])
    produce(broker, topic_name, 0, [b"third"])
    produce(broker, topic_name, 2, [b"not-for-us"])
    last = []
    deadline = time.time() + 30
    while not last and time.time() < deadline:
        for msgs in c.poll(timeout_ms=200).values():
            last.extend(msgs)
    assert [(m.partition, m.value) for m in last] == [(0, b"third")]
    c.close()


def test_describe_topic_partitions_and_log_dirs(broker, topic_name):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic_name, num_partitions=3, replication_factor=1)])
    produce(broker, topic_name, 2, [b"x" * 1000] * 30)

    seen = []
    cursor = None
    for _ in range(5):
        r = admin.describe_topic_partitions([topic_name], response_partition_limit=2, cursor=cursor)
        for t in r["topics"]:
            assert t["error_code"] == 0 and t["name"] == topic_name
            seen += [p["partition_index"] for p in t["partitions"]]
            assert all(p["leader_id"] == 1 for p in t["partitions"])
        cursor = r["next_cursor"]
        if cursor is None:
            break
    assert seen == [0, 1, 2]

    [per_broker] = admin.describe_log_dirs({topic_name: [0, 1, 2]})
    assert per_broker["broker"] == 1
    [log_dir] = per_broker["log_dirs"]
    assert log_dir["error_code"] == 0
    assert log_dir["log_dir"]
    [t] = log_dir["topics"]
    sizes = {p["partition_index"]: p["partition_size"] for p in t["partitions"]}
    assert sizes[0] == 0 and sizes[1] == 0
    assert 30_000 <= sizes[2] < 40_000, sizes
    admin.close()
