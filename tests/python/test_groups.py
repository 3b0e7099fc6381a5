"""Consumer groups with real clients against the real binary: the classic
protocol (confluent-kafka and kafka-python), committed offsets across
kill -9, static membership, the admin CLI's lag, and the error codes of
bad group requests."""
import json
import struct
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

import kafka_raw as raw
from clients import create_topic
from conftest import skiff_bin
from group_helpers import Pump, fill

GROUP_FLAGS = (
    "--set", "groups.initial_rebalance_delay=200ms",
    "--set", "groups.offsets_topic_num_partitions=4",
)


@pytest.fixture
def gbroker(make_broker):
    return make_broker(*GROUP_FLAGS)


def group_name():
    return "g-" + uuid.uuid4().hex[:8]


def consumer(broker, group, **conf):
    c = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "partition.assignment.strategy": "range",
    }
    c.update(conf)
    return Consumer(c)


def test_three_consumers_share_rebalance_and_never_duplicate(gbroker, topic_name):
    create_topic(gbroker, topic_name, partitions=6)
    group = group_name()
    expected = set(fill(gbroker, topic_name, 6, 20))
    cs = [consumer(gbroker, group) for _ in range(3)]
    for c in cs:
        # A revoke callback makes librdkafka hand partitions back only from
        # poll(), i.e. after the last polled message was committed.
        c.subscribe([topic_name], on_revoke=lambda c, ps: None)
    pump = Pump(cs)
    try:
        pump.until(lambda: pump.sizes() == [2, 2, 2] and set(pump.seen) >= expected)
        assigned = sorted(tp.partition for c in cs for tp in c.assignment())
        assert assigned == list(range(6))

        # One leaves: its partitions move to the other two.
        leaver = cs.pop()
        leaver.close()
        pump.consumers = cs
        expected |= set(fill(gbroker, topic_name, 6, 20, start=20))
        pump.until(lambda: pump.sizes() == [3, 3] and set(pump.seen) >= expected)

        # One joins: it gets its share.
        newcomer = consumer(gbroker, group)
        newcomer.subscribe([topic_name], on_revoke=lambda c, ps: None)
        cs.append(newcomer)
        pump.consumers = cs
        expected |= set(fill(gbroker, topic_name, 6, 20, start=40))
        pump.until(lambda: pump.sizes() == [2, 2, 2] and set(pump.seen) >= expected)
        time.sleep(0.5)
        pump.poll_round()
        assert len(pump.seen) == len(set(pump.seen)), "a message was consumed twice"
        assert set(pump.seen) == expected, "a message was skipped or invented"
    finally:
        for c in cs:
            c.close()


def test_kafka_python_group_consumers(gbroker, topic_name):
    from kafka import KafkaConsumer

    create_topic(gbroker, topic_name, partitions=6)
    group = group_name()
    expected = set(fill(gbroker, topic_name, 6, 10))

    def kc():
        return KafkaConsumer(
            topic_name, bootstrap_servers=gbroker.bootstrap, group_id=group,
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=6000, heartbeat_interval_ms=500,
        )

    # One thread per consumer, as applications run them: kafka-python's
    # poll() blocks while its JoinGroup waits for the rest of the group, so
    # polling two consumers from one loop can stall a rebalance that needs
    # the other one to rejoin (until the 5-minute rebalance timeout).
    seen, lock = [], threading.Lock()

    class Loop:
        def __init__(self):
            self.c = kc()
            self.stop = threading.Event()
            self.t = threading.Thread(target=self.run, daemon=True)
            self.t.start()

        def run(self):
            while not self.stop.is_set():
                for tp, msgs in self.c.poll(timeout_ms=100).items():
                    with lock:
                        seen.extend((m.partition, m.offset) for m in msgs)
                    self.c.commit()

        def assigned(self):
            return len(self.c.assignment())

        def close(self):
            self.stop.set()
            self.t.join(30)
            self.c.close()

    def wait_for(cond, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline and not cond():
            time.sleep(0.1)
        return cond()

    a, b = Loop(), Loop()
    try:
        assert wait_for(lambda: set(seen) >= expected and a.assigned() == 3 and b.assigned() == 3), \
            f"assignments {a.assigned()}+{b.assigned()}, seen {len(set(seen))}/{len(expected)}"
        b.close()
        expected |= set(fill(gbroker, topic_name, 6, 10, start=10))
        assert wait_for(lambda: set(seen) >= expected and a.assigned() == 6), \
            f"after b left: {a.assigned()} assigned to a, seen {len(set(seen))}/{len(expected)}"
        with lock:
            assert set(seen) == expected
            assert len(seen) == len(set(seen)), "a message was consumed twice"
    finally:
        a.close()

def test_committed_offsets_survive_kill9(gbroker, topic_name):
    create_topic(gbroker, topic_name, partitions=3)
    group = group_name()
    first = set(fill(gbroker, topic_name, 3, 10))
    c = consumer(gbroker, group)
    c.subscribe([topic_name])
    pump = Pump([c])
    pump.until(lambda: set(pump.seen) >= first)
    committed = {tp.partition: tp.offset for tp in
                 c.committed([TopicPartition(topic_name, p) for p in range(3)], timeout=10)}
    assert committed == {0: 10, 1: 10, 2: 10}
    c.close()

    gbroker.kill9()
    gbroker.start()

    second = set(fill(gbroker, topic_name, 3, 5, start=10))
    c = consumer(gbroker, group)
    try:
        after = {tp.partition: tp.offset for tp in
                 c.committed([TopicPartition(topic_name, p) for p in range(3)], timeout=10)}
        assert after == committed
        c.subscribe([topic_name])
        pump = Pump([c])
        pump.until(lambda: set(pump.seen) >= second)
        time.sleep(0.3)
        pump.poll_round()
        assert set(pump.seen) == second, "resumed somewhere else than the committed offsets"
    finally:
        c.close()


def test_static_member_restart_causes_no_rebalance(gbroker, topic_name):
    create_topic(gbroker, topic_name, partitions=4)
    group = group_name()
    events = []

    def stable(name):
        return consumer(gbroker, group, **{"group.instance.id": name, "session.timeout.ms": 10000})

    a, b = stable("a"), stable("b")
    a.subscribe([topic_name])
    b.subscribe([topic_name],
                on_assign=lambda c, ps: events.append(("assign", len(ps))),
                on_revoke=lambda c, ps: events.append(("revoke", len(ps))))
    pump = Pump([a, b])
    pump.until(lambda: pump.sizes() == [2, 2])
    before_a = sorted(tp.partition for tp in a.assignment())
    for _ in range(20):
        pump.poll_round()
    settled = list(events)
    # Restart a with the same instance id, within the session timeout.
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
    r = subprocess.run([skiff_bin(), "admin", "-b", broker.bootstrap, *args],
                       capture_output=True, text=True, timeout=60)
    return r


def test_admin_groups_lag_and_reset(gbroker, topic_name):
    create_topic(gbroker, topic_name, partitions=2)
    group = group_name()
    fill(gbroker, topic_name, 2, 10)
    c = consumer(gbroker, group)
    c.assign([TopicPartition(topic_name, 0, 0), TopicPartition(topic_name, 1, 0)])
    c.commit(offsets=[TopicPartition(topic_name, 0, 4), TopicPartition(topic_name, 1, 7)],
             asynchronous=False)
    c.close()

    r = admin(gbroker, "groups", "list", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert group in [g["group"] for g in json.loads(r.stdout)]

    r = admin(gbroker, "groups", "describe", group, "-o", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    lag = {(o["topic"], o["partition"]): (o["committed"], o["end"], o["lag"]) for o in d["offsets"]}
    assert lag == {(topic_name, 0): (4, 10, 6), (topic_name, 1): (7, 10, 3)}
    r = admin(gbroker, "groups", "describe", group)
    assert r.returncode == 0 and topic_name in r.stdout, r.stdout + r.stderr

    r = admin(gbroker, "groups", "reset-offsets", group, "--topic", topic_name, "--to-earliest")
    assert r.returncode == 0, r.stderr
    d = json.loads(admin(gbroker, "groups", "describe", group, "-o", "json").stdout)
    assert {o["partition"]: o["lag"] for o in d["offsets"]} == {0: 10, 1: 10}

    r = admin(gbroker, "groups", "delete", group)
    assert r.returncode == 0, r.stderr
    r = admin(gbroker, "groups", "list", "-o", "json")
    assert group not in [g["group"] for g in json.loads(r.stdout)]


# --- hand-built frames -------------------------------------------------------

def call(conn, api_key, version, body, cid=[0]):
    cid[0] += 1
    conn.send(raw.request(api_key, version, body, correlation_id=cid[0]))
    got = conn.recv_frame()
    assert got is not None, "broker closed the connection"
    assert got[0] == cid[0]
    return got[1]


def find_coordinator(conn, group):
    deadline = time.time() + 20
    while time.time() < deadline:
        body = call(conn, 10, 0, raw.string(group))
        (err,) = struct.unpack_from(">h", body, 0)
        if err == 0:
            return
        time.sleep(0.2)
    raise AssertionError("no coordinator")


def join_v0(conn, group, member, protocol_type="consumer", protocol="range"):
    body = raw.string(group) + struct.pack(">i", 6000) + raw.string(member) + raw.string(protocol_type)
    body += struct.pack(">i", 1) + raw.string(protocol) + struct.pack(">i", 4) + b"meta"
    resp = call(conn, 11, 0, body)
    err, gen = struct.unpack_from(">hi", resp, 0)
    pos = 6
    strs = []
    for _ in range(3):  # protocol, leader, member id
        (n,) = struct.unpack_from(">h", resp, pos); pos += 2
        strs.append(resp[pos:pos + max(n, 0)].decode()); pos += max(n, 0)
    return err, gen, strs[2]


def heartbeat_v0(conn, group, gen, member):
    resp = call(conn, 12, 0, raw.string(group) + struct.pack(">i", gen) + raw.string(member))
    return struct.unpack_from(">h", resp, 0)[0]


def commit_v2(conn, group, gen, member, topic="t", partition=0, offset=1):
    body = raw.string(group) + struct.pack(">i", gen) + raw.string(member) + struct.pack(">q", -1)
    body += struct.pack(">i", 1) + raw.string(topic) + struct.pack(">i", 1)
    body += struct.pack(">iq", partition, offset) + raw.string("")
    resp = call(conn, 8, 2, body)
    pos = 4
    (n,) = struct.unpack_from(">h", resp, pos); pos += 2 + n
    pos += 4  # partition count
    _p, err = struct.unpack_from(">ih", resp, pos)
    return err


def sync_v0(conn, group, gen, member):
    body = raw.string(group) + struct.pack(">i", gen) + raw.string(member) + struct.pack(">i", 0)
    return struct.unpack_from(">h", call(conn, 14, 0, body), 0)[0]


UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, INCONSISTENT_GROUP_PROTOCOL = 25, 22, 23
REBALANCE_IN_PROGRESS = 27


def test_bad_group_requests_get_kafka_codes(gbroker):
    group = group_name()
    conn = raw.Conn(gbroker.bootstrap)
    try:
        find_coordinator(conn, group)
        assert heartbeat_v0(conn, group, 1, "nobody") == UNKNOWN_MEMBER_ID
        err, _, _ = join_v0(conn, group, "made-up-member")
        assert err == UNKNOWN_MEMBER_ID
        err, gen, member = join_v0(conn, group, "")
        assert err == 0 and gen == 1 and member
        assert heartbeat_v0(conn, group, gen + 5, member) == ILLEGAL_GENERATION
        assert heartbeat_v0(conn, group, gen, "someone-else") == UNKNOWN_MEMBER_ID
        assert sync_v0(conn, group, gen + 1, member) == ILLEGAL_GENERATION
        assert sync_v0(conn, group, gen, "someone-else") == UNKNOWN_MEMBER_ID
        assert commit_v2(conn, group, gen, "someone-else") == UNKNOWN_MEMBER_ID
        assert commit_v2(conn, group, gen + 1, member) == ILLEGAL_GENERATION
        err, _, _ = join_v0(conn, group, "", protocol_type="not-a-consumer")
        assert err == INCONSISTENT_GROUP_PROTOCOL
        err, _, _ = join_v0(conn, group, "", protocol_type="")
        assert err == INCONSISTENT_GROUP_PROTOCOL
        err, _, _ = join_v0(conn, group, "", protocol="no-such-assignor")
        assert err == INCONSISTENT_GROUP_PROTOCOL
    finally:
        conn.close()
