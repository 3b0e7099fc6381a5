"""Small helpers over confluent-kafka (librdkafka) shared by the tests."""
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create_topic(broker, name, partitions=1, config=None):
    a = admin(broker)  # keep the client alive until the future completes
    fs = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
    )
    fs[name].result(timeout=30)


def producer(broker, **conf):
    c = {"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5}
    c.update(conf)
    return Producer(c)


def produce_all(p, topic, messages, partition=None):
    """Produce (key, value, headers, timestamp) tuples and wait for every ack.
    Returns the delivery reports as (partition, offset) in send order."""
    reports = [None] * len(messages)
    errors = []

    def cb(i):
        def on_delivery(err, msg):
            if err is not None:
                errors.append(err)
            else:
                reports[i] = (msg.partition(), msg.offset())
        return on_delivery

    for i, m in enumerate(messages):
        key, value, headers, ts = (list(m) + [None] * 4)[:4]
        kw = {"key": key, "value": value, "on_delivery": cb(i)}
        if headers:
            kw["headers"] = headers
        if ts is not None:
            kw["timestamp"] = ts
        if partition is not None:
            kw["partition"] = partition
        while True:
            try:
                p.produce(topic, **kw)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    remaining = p.flush(60)
    assert remaining == 0, f"{remaining} messages not delivered"
    assert not errors, errors
    return reports


def consume(broker, topic, count, partitions=None, offset="earliest", timeout=60, **conf):
    """Read `count` messages by assignment (no group). Returns Message objects."""
    c = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": "unused",
        "enable.auto.commit": False,
    }
    if isinstance(offset, str):
        c["auto.offset.reset"] = offset
    c.update(conf)
    consumer = Consumer(c)
    try:
        md = consumer.list_topics(topic, timeout=10)
        parts = partitions if partitions is not None else sorted(md.topics[topic].partitions)
        start = {"earliest": -2, "latest": -1}.get(offset, offset)
        consumer.assign([TopicPartition(topic, p, start) for p in parts])
        out = []
        deadline = time.time() + timeout
        while len(out) < count and time.time() < deadline:
            m = consumer.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise AssertionError(m.error())
            out.append(m)
        return out
    finally:
        consumer.close()
