"""`__consumer_offsets` stays short and clean, against the real binary:
compaction trims the stream and replay after kill -9 yields the same
committed offsets; offsets of a deleted topic are dropped and a group left
with nothing is removed."""
import json
import subprocess
import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from clients import admin as admin_client, create_topic
from conftest import skiff_bin

OFFSETS = "__consumer_offsets"


def committer(broker, group):
    return Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                     "enable.auto.commit": False})


def admin(broker, *args):
    return subprocess.run([skiff_bin(), "admin", "-b", broker.bootstrap, *args],
                          capture_output=True, text=True, timeout=60)


def watermarks(c, partition=0):
    return c.get_watermark_offsets(TopicPartition(OFFSETS, partition), timeout=10)


def test_compaction_trims_the_stream_and_replay_keeps_offsets(make_broker, topic_name):
    b = make_broker("--set", "groups.offsets_topic_num_partitions=1",
                    "--set", "groups.offsets_compaction_records=50")
    create_topic(b, topic_name, partitions=3)
    groups = ["cmp-" + uuid.uuid4().hex[:6] for _ in range(2)]
    want = {}
    for g in groups:
        c = committer(b, g)
        for i in range(1, 121):
            tps = [TopicPartition(topic_name, p, i * 10 + p) for p in range(3)]
            c.commit(offsets=tps, asynchronous=False)
        want[g] = {p: 1200 + p for p in range(3)}
        c.close()

    probe = committer(b, "probe-" + uuid.uuid4().hex[:6])
    deadline = time.time() + 30
    low, high = watermarks(probe)
    while low == 0 and time.time() < deadline:
        time.sleep(0.5)
        low, high = watermarks(probe)
    probe.close()
    assert low > 0, "the offsets stream was never trimmed"
    # 240 commit records went in; what is left is bounded by the threshold
    # plus a rewrite of the live state (2 groups x 3 partitions).
    assert high - low <= 50 + 6 + 50, (low, high)

    b.kill9()
    b.start()
    for g in groups:
        c = committer(b, g)
        got = {tp.partition: tp.offset for tp in
               c.committed([TopicPartition(topic_name, p) for p in range(3)], timeout=10)}
        c.close()
        assert got == want[g]
    print(f"offsets stream after compaction: [{low}, {high})")


def test_offsets_of_deleted_topics_are_dropped(make_broker, topic_name):
    b = make_broker("--set", "groups.offsets_retention_check_interval=1s")
    create_topic(b, topic_name, partitions=2)
    keep = "keep-" + uuid.uuid4().hex[:6]
    create_topic(b, keep, partitions=1)
    g1, g2 = "del-" + uuid.uuid4().hex[:6], "mix-" + uuid.uuid4().hex[:6]
    c = committer(b, g1)
    c.commit(offsets=[TopicPartition(topic_name, 0, 3)], asynchronous=False)
    c.close()
    c = committer(b, g2)
    c.commit(offsets=[TopicPartition(topic_name, 1, 4), TopicPartition(keep, 0, 5)],
             asynchronous=False)
    c.close()
    listed = [g["group"] for g in json.loads(admin(b, "groups", "list", "-o", "json").stdout)]
    assert g1 in listed and g2 in listed

    a = admin_client(b)  # alive until the future completes
    a.delete_topics([topic_name])[topic_name].result(timeout=30)
    deadline = time.time() + 30
    while time.time() < deadline:
        listed = [g["group"] for g in json.loads(admin(b, "groups", "list", "-o", "json").stdout)]
        if g1 not in listed:
            break
        time.sleep(0.5)
    assert g1 not in listed, "a group with only offsets of a deleted topic was kept"
    d = json.loads(admin(b, "groups", "describe", g2, "-o", "json").stdout)
    assert [(o["topic"], o["partition"], o["committed"]) for o in d["offsets"]] == [(keep, 0, 5)]
