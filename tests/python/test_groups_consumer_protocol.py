"""KIP-848 consumer-protocol groups (group.protocol=consumer) with real
clients against the real binary: server-side assignment shared by three
confluent-kafka consumers with leave and join and no message consumed twice
or skipped, committed offsets across kill -9, regex subscriptions picking up
new topics, the admin CLI's lag and group type, and the error codes of bad
ConsumerGroupHeartbeat / OffsetCommit requests."""
import json
import struct
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, ConsumerGroupType, TopicPartition

import kafka_raw as raw
from clients import admin as admin_client, create_topic
from conftest import skiff_bin
from group_helpers import Pump, fill as group_fill

FLAGS = (
    "--set", "groups.offsets_topic_num_partitions=4",
    "--set", "groups.consumer_heartbeat_interval_ms=500",
    "--set", "groups.consumer_min_heartbeat_interval_ms=100",
    "--set", "groups.consumer_session_timeout_ms=6000",
    "--set", "groups.consumer_min_session_timeout_ms=1000",
)


@pytest.fixture
def cbroker(make_broker):
    return make_broker(*FLAGS)


def group_name():
    return "cg-" + uuid.uuid4().hex[:8]


def consumer(broker, group, **conf):
    c = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "topic.metadata.refresh.interval.ms": 1000,
    }
    c.update(conf)
    return Consumer(c)


def pump_(consumers):
    return Pump(consumers, key=lambda m: (m.topic(), m.partition(), m.offset()))


def fill(broker, topic, partitions, per_partition, start=0):
    return group_fill(broker, topic, partitions, per_partition, start, with_topic=True)


def revoke_cb(c, ps):
    # With a revoke callback librdkafka gives partitions back only from
    # poll(), i.e. after the last polled message was committed.
    pass


def test_three_consumers_share_leave_join_never_duplicate(cbroker, topic_name):
    create_topic(cbroker, topic_name, partitions=6)
    group = group_name()
    expected = set(fill(cbroker, topic_name, 6, 20))
    cs = [consumer(cbroker, group) for _ in range(3)]
    for c in cs:
        c.subscribe([topic_name], on_revoke=revoke_cb)
    pump = pump_(cs)
    try:
        pump.until(lambda: pump.sizes() == [2, 2, 2] and set(pump.seen) >= expected)
        assigned = sorted(tp.partition for c in cs for tp in c.assignment())
        assert assigned == list(range(6))

        # One leaves (close sends member epoch -1): its partitions move to
        # the other two well within the session timeout.
        leaver = cs.pop()
        leaver.close()
        pump.consumers = cs
        expected |= set(fill(cbroker, topic_name, 6, 20, start=20))
        started = time.time()
        pump.until(lambda: pump.sizes() == [3, 3], timeout=6)
        moved_in = time.time() - started
        pump.until(lambda: set(pump.seen) >= expected)

        # One joins: it receives its share, taken from the others only after
        # they revoked it.
        newcomer = consumer(cbroker, group)
        newcomer.subscribe([topic_name], on_revoke=revoke_cb)
        cs.append(newcomer)
        pump.consumers = cs
        expected |= set(fill(cbroker, topic_name, 6, 20, start=40))
        pump.until(lambda: pump.sizes() == [2, 2, 2] and set(pump.seen) >= expected)
        time.sleep(0.5)
        pump.poll_round()
        assert len(pump.seen) == len(set(pump.seen)), "a message was consumed twice"
        assert set(pump.seen) == expected, "a message was skipped or invented"
        print(f"partitions of the leaver moved in {moved_in:.2f}s")
    finally:
        for c in cs:
            c.close()


def test_committed_offsets_survive_kill9(cbroker, topic_name):
    create_topic(cbroker, topic_name, partitions=3)
    group = group_name()
    first = set(fill(cbroker, topic_name, 3, 10))
    c = consumer(cbroker, group)
    c.subscribe([topic_name])
    pump = pump_([c])
    pump.until(lambda: set(pump.seen) >= first)
    committed = {tp.partition: tp.offset for tp in
                 c.committed([TopicPartition(topic_name, p) for p in range(3)], timeout=10)}
    assert committed == {0: 10, 1: 10, 2: 10}

    cbroker.kill9()
    cbroker.start()
    c.close()

    second = set(fill(cbroker, topic_name, 3, 5, start=10))
    c = consumer(cbroker, group)
    try:
        after = {tp.partition: tp.offset for tp in
                 c.committed([TopicPartition(topic_name, p) for p in range(3)], timeout=10)}
        assert after == committed
        c.subscribe([topic_name])
        pump = pump_([c])
        pump.until(lambda: set(pump.seen) >= second)
        time.sleep(0.3)
        pump.poll_round()
        assert set(pump.seen) == second, "resumed somewhere else than the committed offsets"
    finally:
        c.close()


def test_regex_subscription_picks_up_new_topic(cbroker):
    prefix = "rx" + uuid.uuid4().hex[:6]
    first, later = f"{prefix}-a", f"{prefix}-b"
    create_topic(cbroker, first, partitions=2)
    create_topic(cbroker, f"other-{prefix}", partitions=1)
    group = group_name()
    expected = set(fill(cbroker, first, 2, 5))
    fill(cbroker, f"other-{prefix}", 1, 5)
    c = consumer(cbroker, group)
    c.subscribe([f"^{prefix}-.*"])
    pump = pump_([c])
    try:
        pump.until(lambda: set(pump.seen) >= expected)
        create_topic(cbroker, later, partitions=3)
        expected |= set(fill(cbroker, later, 3, 4))
        pump.until(lambda: set(pump.seen) >= expected, timeout=60)
        assert {t for t, _, _ in pump.seen} == {first, later}
        assert len(c.assignment()) == 5
    finally:
        c.close()


def test_static_member_restart_keeps_assignment_without_rebalance(cbroker, topic_name):
    create_topic(cbroker, topic_name, partitions=4)
    group = group_name()
    events = []

    def stable(name):
        return consumer(cbroker, group, **{"group.instance.id": name})

    a, b = stable("a"), stable("b")
    a.subscribe([topic_name])
    b.subscribe([topic_name],
                on_assign=lambda c, ps: events.append(("assign", len(ps))),
                on_revoke=lambda c, ps: events.append(("revoke", len(ps))))
    pump = pump_([a, b])
    pump.until(lambda: pump.sizes() == [2, 2])
    before_a = sorted(tp.partition for tp in a.assignment())
    for _ in range(20):
        pump.poll_round()
    settled = list(events)
    # Restart a with the same instance id within the session timeout: it
    # left with epoch -2 and comes back to the same partitions.
    a.close()
    a = stable("a")
    a.subscribe([topic_name])
    pump.consumers = [a, b]
    try:
        pump.until(lambda: len(a.assignment()) == 2, timeout=30)
        assert sorted(tp.partition for tp in a.assignment()) == before_a
        deadline = time.time() + 3
        while time.time() < deadline:
            pump.poll_round()
        assert events == settled, f"the other member saw a rebalance: {events[len(settled):]}"
    finally:
        a.close()
        b.close()


def admin(broker, *args):
    return subprocess.run([skiff_bin(), "admin", "-b", broker.bootstrap, *args],
                          capture_output=True, text=True, timeout=60)


def test_admin_lag_and_type_of_a_consumer_group(cbroker, topic_name):
    create_topic(cbroker, topic_name, partitions=2)
    group = group_name()
    fill(cbroker, topic_name, 2, 10)
    c = consumer(cbroker, group)
    c.subscribe([topic_name])
    deadline = time.time() + 60
    while len(c.assignment()) < 2 and time.time() < deadline:
        c.poll(0.1)
    c.commit(offsets=[TopicPartition(topic_name, 0, 4), TopicPartition(topic_name, 1, 7)],
             asynchronous=False)
    committed = {0: 4, 1: 7}
    try:
        r = admin(cbroker, "groups", "list", "-o", "json")
        assert r.returncode == 0, r.stderr
        listed = {g["group"]: g for g in json.loads(r.stdout)}
        assert listed[group]["type"] == "consumer"

        r = admin(cbroker, "groups", "describe", group, "-o", "json")
        assert r.returncode == 0, r.stderr
        d = json.loads(r.stdout)
        assert d["type"] == "consumer"
        assert len(d["members"]) == 1 and d["members"][0]["member_epoch"] > 0
        lag = {o["partition"]: (o["committed"], o["end"], o["lag"]) for o in d["offsets"]}
        assert lag == {p: (committed[p], 10, 10 - committed[p]) for p in range(2)}
        r = admin(cbroker, "groups", "describe", group)
        assert r.returncode == 0 and "consumer" in r.stdout, r.stdout + r.stderr

        # librdkafka's admin API: ListGroups with a type filter, and
        # DescribeConsumerGroups (ConsumerGroupDescribe for consumer groups).
        a = admin_client(cbroker)
        got = a.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(timeout=30)
        by_id = {g.group_id: g for g in got.valid}
        assert by_id[group].type == ConsumerGroupType.CONSUMER
        got = a.list_consumer_groups(types={ConsumerGroupType.CLASSIC}).result(timeout=30)
        assert group not in {g.group_id for g in got.valid}
        desc = a.describe_consumer_groups([group])[group].result(timeout=30)
        assert desc.type == ConsumerGroupType.CONSUMER
        assert [sorted(tp.partition for tp in m.assignment.topic_partitions)
                for m in desc.members] == [[0, 1]]
    finally:
        c.close()


# --- hand-built frames -------------------------------------------------------

def call_v2(conn, api_key, version, body, cid=[0]):
    cid[0] += 1
    conn.send(raw.request_v2(api_key, version, body, correlation_id=cid[0]))
    got = conn.recv_frame()
    assert got is not None, "broker closed the connection"
    assert got[0] == cid[0]
    return got[1]


def heartbeat(conn, group, member, epoch, **kw):
    body = raw.consumer_group_heartbeat_v1(group, member, epoch, **kw)
    return raw.parse_consumer_group_heartbeat_response(call_v2(conn, 68, 1, body))


def wait_coordinator(conn, group):
    deadline = time.time() + 20
    while time.time() < deadline:
        body = raw.string(group)
        conn.send(raw.request(10, 0, body, correlation_id=999))
        _, resp = conn.recv_frame()
        if struct.unpack_from(">h", resp, 0)[0] == 0:
            return
        time.sleep(0.2)
    raise AssertionError("no coordinator")


UNKNOWN_MEMBER_ID, INVALID_REQUEST, OFFSET_METADATA_TOO_LARGE = 25, 42, 12
FENCED_MEMBER_EPOCH, UNRELEASED_INSTANCE_ID, UNSUPPORTED_ASSIGNOR = 110, 111, 112
STALE_MEMBER_EPOCH, INVALID_REGULAR_EXPRESSION, GROUP_ID_NOT_FOUND = 113, 128, 69


def test_bad_consumer_protocol_requests_get_kafka_codes(cbroker, topic_name):
    create_topic(cbroker, topic_name, partitions=2)
    group = group_name()
    conn = raw.Conn(cbroker.bootstrap)
    try:
        wait_coordinator(conn, group)
        me = str(uuid.uuid4())
        assert heartbeat(conn, group, "nobody", 3)["error"] == UNKNOWN_MEMBER_ID
        assert heartbeat(conn, group, me, 0, topics=[topic_name],
                         assignor="no-such")["error"] == UNSUPPORTED_ASSIGNOR
        assert heartbeat(conn, group, me, 0, regex="(unclosed")["error"] == INVALID_REGULAR_EXPRESSION
        assert heartbeat(conn, group, me, 0)["error"] == INVALID_REQUEST  # no subscription
        assert heartbeat(conn, group, "", 0, topics=[topic_name])["error"] == INVALID_REQUEST

        r = heartbeat(conn, group, me, 0, topics=[topic_name], owned=[])
        assert r["error"] == 0 and r["epoch"] >= 1 and r["member_id"] == me
        assert r["interval"] == 500
        parts = sorted(p for _, ps in r["assignment"] for p in ps)
        assert parts == [0, 1]
        epoch = r["epoch"]
        assert heartbeat(conn, group, me, epoch + 7)["error"] == FENCED_MEMBER_EPOCH
        assert heartbeat(conn, group, me, epoch)["error"] == 0

        # Offsets: the member's epoch is checked.
        ok = raw.offset_commit_v9(group, me, epoch, topic_name, 0, 5)
        assert raw.parse_offset_commit_v9_response(call_v2(conn, 8, 9, ok)) == [(topic_name, 0, 0)]
        stale = raw.offset_commit_v9(group, me, epoch - 1, topic_name, 0, 5)
        assert raw.parse_offset_commit_v9_response(call_v2(conn, 8, 9, stale))[0][2] == STALE_MEMBER_EPOCH
        stranger = raw.offset_commit_v9(group, "stranger", epoch, topic_name, 0, 5)
        assert raw.parse_offset_commit_v9_response(call_v2(conn, 8, 9, stranger))[0][2] == UNKNOWN_MEMBER_ID
        big = raw.offset_commit_v9(group, me, epoch, topic_name, 0, 5, metadata="x" * 5000)
        assert raw.parse_offset_commit_v9_response(call_v2(conn, 8, 9, big))[0][2] == OFFSET_METADATA_TOO_LARGE

        # Static members: an instance id in use cannot be taken over.
        other = str(uuid.uuid4())
        r = heartbeat(conn, group, other, 0, topics=[topic_name], owned=[], instance_id="i1")
        assert r["error"] == 0
        r = heartbeat(conn, group, str(uuid.uuid4()), 0, topics=[topic_name], owned=[],
                      instance_id="i1")
        assert r["error"] == UNRELEASED_INSTANCE_ID

        # Leaving: epoch -1; a later heartbeat of that member is unknown.
        r = heartbeat(conn, group, me, -1)
        assert r["error"] == 0 and r["epoch"] == -1
        assert heartbeat(conn, group, me, epoch)["error"] == UNKNOWN_MEMBER_ID

        # A consumer-protocol heartbeat to a non-empty classic group is refused.
        classic = group_name()
        wait_coordinator(conn, classic)
        body = raw.string(classic) + struct.pack(">i", 6000) + raw.string("") + raw.string("consumer")
        body += struct.pack(">i", 1) + raw.string("range") + struct.pack(">i", 4) + b"meta"
        conn.send(raw.request(11, 0, body, correlation_id=4241))
        _, resp = conn.recv_frame()
        if struct.unpack_from(">h", resp, 0)[0] == 79:  # MEMBER_ID_REQUIRED is v4+ only
            raise AssertionError("unexpected MEMBER_ID_REQUIRED")
        r = heartbeat(conn, classic, str(uuid.uuid4()), 0, topics=[topic_name], owned=[])
        assert r["error"] == GROUP_ID_NOT_FOUND

        # A classic JoinGroup to this non-empty consumer group is refused.
        body = raw.string(group) + struct.pack(">i", 6000) + raw.string("") + raw.string("consumer")
        body += struct.pack(">i", 1) + raw.string("range") + struct.pack(">i", 4) + b"meta"
        conn.send(raw.request(11, 0, body, correlation_id=4242))
        _, resp = conn.recv_frame()
        assert struct.unpack_from(">h", resp, 0)[0] == 23  # INCONSISTENT_GROUP_PROTOCOL
    finally:
        conn.close()
