"""Acknowledged writes survive kill -9, and uploaded data lives in objects."""
import os
import shutil
import time

from clients import consume, create_topic, produce_all, producer


def test_acked_writes_survive_kill9(broker, topic_name):
    create_topic(broker, topic_name, partitions=2)
    msgs = [(b"k%d" % i, b"v%d" % i) for i in range(2000)]
    reports = produce_all(producer(broker), topic_name, msgs)
    broker.kill9()
    broker.start()
    got = consume(broker, topic_name, len(msgs))
    assert len(got) == len(msgs)
    seen = {(m.partition(), m.offset()): (m.key(), m.value()) for m in got}
    assert len(seen) == len(msgs), "a message was read twice"
    for (k, v), (p, o) in zip(msgs, reports):
        assert seen[(p, o)] == (k, v)
    # offsets are dense per partition
    for p in (0, 1):
        offs = sorted(o for (pp, o) in seen if pp == p)
        assert offs == list(range(len(offs)))
    # and the broker keeps appending after the acknowledged end
    more = produce_all(producer(broker), topic_name, [(b"k0", b"after")])
    assert more[0][1] == max(o for (pp, o) in seen if pp == more[0][0]) + 1


def test_uploaded_data_survives_losing_the_wal(make_broker, topic_name):
    b = make_broker("--set", "storage.upload.interval=100ms")
    create_topic(b, topic_name)
    msgs = [(None, b"m%d" % i) for i in range(1000)]
    produce_all(producer(b), topic_name, msgs)
    time.sleep(2)  # several upload intervals
    assert b.stop() == 0
    wal = os.path.join(b.data_dir, "wal")
    assert os.path.isdir(wal), os.listdir(b.data_dir)
    shutil.rmtree(wal)
    b.start()
    got = consume(b, topic_name, len(msgs))
    assert [m.value() for m in got] == [v for _, v in msgs]


def test_graceful_shutdown_flushes(broker, topic_name):
    create_topic(broker, topic_name)
    produce_all(producer(broker), topic_name, [(None, b"x%d" % i) for i in range(100)])
    assert broker.stop() == 0
    broker.start()
    assert len(consume(broker, topic_name, 100)) == 100
