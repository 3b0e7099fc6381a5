"""Transactions with real clients against the real binary: read_committed
sees committed transactions only and stops at an open one (LSO), a
consume-transform-produce loop killed with SIGKILL over and over still
writes every input exactly once, Flink's resume-commit from a new connection
commits, an abandoned transaction is aborted after its timeout, and bad
requests get the codes the Java client expects."""
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

import kafka_raw as raw
from clients import create_topic, produce_all, producer
from conftest import skiff_bin

HERE = os.path.dirname(os.path.abspath(__file__))

# Kafka error codes
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TXN_STATE = 48
INVALID_PRODUCER_ID_MAPPING = 49
INVALID_TRANSACTION_TIMEOUT = 50
PRODUCER_FENCED = 90
INVALID_PRODUCER_EPOCH = 47
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53

TXN_FLAGS = (
    "--set", "transaction_state_log_num_partitions=4",
    "--set", "groups.offsets_topic_num_partitions=4",
    "--set", "groups.initial_rebalance_delay=200ms",
)


@pytest.fixture
def tbroker(make_broker):
    return make_broker(*TXN_FLAGS)


def tid():
    return "txn-" + uuid.uuid4().hex[:8]


def txn_producer(broker, transactional_id, **conf):
    c = {
        "bootstrap.servers": broker.bootstrap,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": 60000,
        "linger.ms": 5,
    }
    c.update(conf)
    p = Producer(c)
    p.init_transactions(30)
    return p


def read(broker, topic, isolation, until=None, count=None, partitions=(0,), timeout=20, quiet=None):
    """Values read by assignment from the start, until `until` was seen,
    `count` values arrived, or (with `quiet`) nothing came for that long."""
    c = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": "reader-" + uuid.uuid4().hex[:6],
        "enable.auto.commit": False,
        "isolation.level": isolation,
    })
    try:
        c.assign([TopicPartition(topic, p, 0) for p in partitions])
        out = []
        deadline = time.time() + timeout
        last = time.time()
        while time.time() < deadline:
            m = c.poll(0.2)
            if m is None:
                if quiet is not None and time.time() - last >= quiet:
                    break
                continue
            if m.error():
                raise AssertionError(m.error())
            out.append(m.value())
            last = time.time()
            if until is not None and m.value() == until:
                break
            if count is not None and len(out) >= count:
                break
        return out
    finally:
        c.close()


def admin_cli(broker, *args):
    return subprocess.run([skiff_bin(), "admin", "-b", broker.bootstrap, *args],
                          capture_output=True, text=True, timeout=60)


def describe(broker, transactional_id):
    r = admin_cli(broker, "-o", "json", "transactions", "describe", transactional_id)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_committed_visible_aborted_never(tbroker, topic_name):
    create_topic(tbroker, topic_name, 1)
    p = txn_producer(tbroker, tid())
    p.begin_transaction()
    for i in range(5):
        p.produce(topic_name, value=f"c{i}".encode(), partition=0)
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(5):
        p.produce(topic_name, value=f"a{i}".encode(), partition=0)
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    for i in range(5, 10):
        p.produce(topic_name, value=f"c{i}".encode(), partition=0)
    p.produce(topic_name, value=b"end", partition=0)
    p.commit_transaction(30)

    committed = [f"c{i}".encode() for i in range(10)] + [b"end"]
    assert read(tbroker, topic_name, "read_committed", until=b"end") == committed
    everything = read(tbroker, topic_name, "read_uncommitted", until=b"end")
    assert everything == committed[:5] + [f"a{i}".encode() for i in range(5)] + committed[5:]


def test_read_committed_stops_at_an_open_transaction(tbroker, topic_name):
    create_topic(tbroker, topic_name, 1)
    produce_all(producer(tbroker), topic_name, [(None, b"before")], partition=0)
    p = txn_producer(tbroker, tid())
    p.begin_transaction()
    for i in range(3):
        p.produce(topic_name, value=f"open{i}".encode(), partition=0)
    p.flush(30)
    # The data is in the log (read_uncommitted sees it) but above the LSO.
    assert read(tbroker, topic_name, "read_uncommitted", count=4) == \
        [b"before", b"open0", b"open1", b"open2"]
    c = Consumer({
        "bootstrap.servers": tbroker.bootstrap, "group.id": "lso", "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    try:
        c.assign([TopicPartition(topic_name, 0, 0)])
        seen = []
        deadline = time.time() + 3
        while time.time() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                seen.append(m.value())
        assert seen == [b"before"], "read_committed must stop at the open transaction"
        p.commit_transaction(30)
        deadline = time.time() + 20
        while len(seen) < 4 and time.time() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                seen.append(m.value())
        assert seen == [b"before", b"open0", b"open1", b"open2"]
    finally:
        c.close()


def raw_call(broker, api, version, body):
    return raw.call_once(broker.bootstrap, api, version, body)


# Codes a client retries: the coordinator's partition is still loading or
# moving (COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE,
# NOT_COORDINATOR), as right after a broker start on a busy machine.
RETRIABLE_COORDINATOR = (14, 15, 16)


def init_pid(broker, transactional_id, timeout_ms=60000):
    deadline = time.time() + 20
    while True:
        err, pid, epoch = raw.parse_init_producer_id_v0_response(
            raw_call(broker, 22, 1, raw.init_producer_id_v0(transactional_id, timeout_ms)))
        if err not in RETRIABLE_COORDINATOR or time.time() > deadline:
            return err, pid, epoch
        time.sleep(0.2)


def add_partitions(broker, transactional_id, pid, epoch, topics):
    return raw.parse_add_partitions_to_txn_v1(
        raw_call(broker, 24, 1, raw.add_partitions_to_txn_v1(transactional_id, pid, epoch, topics)))


def end_txn(broker, transactional_id, pid, epoch, commit):
    return raw.parse_end_txn_v1(
        raw_call(broker, 26, 1, raw.end_txn_v1(transactional_id, pid, epoch, commit)))


def produce_txn_code(broker, transactional_id, topic, pid, epoch, values, seq=0):
    """The error code of one transactional produce (v3) to partition 0."""
    body = raw.produce_v3_txn(transactional_id, topic, 0,
                              raw.producer_batch(values, pid, epoch, seq, transactional=True))
    [(_, _, err, _)] = raw.parse_produce_v3_response(raw_call(broker, 0, 3, body))
    return err


def produce_txn(broker, transactional_id, topic, pid, epoch, values, seq=0):
    err = produce_txn_code(broker, transactional_id, topic, pid, epoch, values, seq)
    assert err == 0, err


def test_flink_resume_commit_from_a_new_connection(tbroker, topic_name):
    create_topic(tbroker, topic_name, 1)
    t = tid()
    err, node, _host, _port = raw.parse_find_coordinator_v1(
        raw_call(tbroker, 10, 1, raw.find_coordinator_v1(t, 1)))
    assert (err, node) == (0, 1)
    err, pid, epoch = init_pid(tbroker, t, timeout_ms=3_600_000)  # Flink's default: 1 hour
    assert err == 0 and pid >= 0 and epoch == 0
    assert add_partitions(tbroker, t, pid, epoch, {topic_name: [0]}) == {(topic_name, 0): 0}
    produce_txn(tbroker, t, topic_name, pid, epoch, [b"f1", b"f2"])
    assert describe(tbroker, t)["state"] == "Ongoing"
    # "Flink restarted": a new process/connection commits with the restored id/epoch.
    assert end_txn(tbroker, t, pid, epoch, True) == 0
    assert read(tbroker, topic_name, "read_committed", count=2) == [b"f1", b"f2"]
    d = describe(tbroker, t)
    assert (d["state"], d["producer_id"], d["producer_epoch"]) == ("CompleteCommit", pid, epoch)
    # Committing again (a retry after a lost answer) succeeds and changes nothing.
    assert end_txn(tbroker, t, pid, epoch, True) == 0
    assert end_txn(tbroker, t, pid, epoch, False) == INVALID_TXN_STATE


def test_resume_commit_survives_a_broker_restart(tbroker, topic_name):
    create_topic(tbroker, topic_name, 1)
    t = tid()
    err, pid, epoch = init_pid(tbroker, t)
    assert err == 0
    assert add_partitions(tbroker, t, pid, epoch, {topic_name: [0]}) == {(topic_name, 0): 0}
    produce_txn(tbroker, t, topic_name, pid, epoch, [b"r1"])
    tbroker.restart()
    # Replayed from __transaction_state: still Ongoing with the same id/epoch.
    deadline = time.time() + 20
    while True:
        code = end_txn(tbroker, t, pid, epoch, True)
        if code == 0 or time.time() > deadline:
            break
        time.sleep(0.2)  # coordinator loading / partition opening
    assert code == 0
    assert read(tbroker, topic_name, "read_committed", count=1) == [b"r1"]


def test_abandoned_transaction_is_aborted_after_its_timeout(tbroker, topic_name):
    create_topic(tbroker, topic_name, 1)
    t = tid()
    err, pid, epoch = init_pid(tbroker, t, timeout_ms=1500)
    assert err == 0
    assert add_partitions(tbroker, t, pid, epoch, {topic_name: [0]}) == {(topic_name, 0): 0}
    produce_txn(tbroker, t, topic_name, pid, epoch, [b"zombie"])
    deadline = time.time() + 20
    while describe(tbroker, t)["state"] != "CompleteAbort":
        assert time.time() < deadline, describe(tbroker, t)
        time.sleep(0.3)
    d = describe(tbroker, t)
    assert d["producer_epoch"] == epoch + 1, "the abort bumps the epoch"
    # The zombie is fenced.
    assert end_txn(tbroker, t, pid, epoch, True) == PRODUCER_FENCED
    # The LSO moved on: later committed data is readable, the zombie's never.
    p = txn_producer(tbroker, tid())
    p.begin_transaction()
    p.produce(topic_name, value=b"after", partition=0)
    p.commit_transaction(30)
    assert read(tbroker, topic_name, "read_committed", until=b"after") == [b"after"]


def test_bad_input_gets_the_java_clients_codes(tbroker, topic_name):
    create_topic(tbroker, topic_name, 1)
    t = tid()
    assert end_txn(tbroker, t, 1, 0, True) == INVALID_PRODUCER_ID_MAPPING
    assert add_partitions(tbroker, t, 1, 0, {topic_name: [0]}) == \
        {(topic_name, 0): INVALID_PRODUCER_ID_MAPPING}
    assert init_pid(tbroker, t, timeout_ms=0)[0] == INVALID_TRANSACTION_TIMEOUT
    assert init_pid(tbroker, t, timeout_ms=3 * 3_600_000)[0] == INVALID_TRANSACTION_TIMEOUT
    err, pid, epoch = init_pid(tbroker, t)
    assert err == 0
    assert end_txn(tbroker, t, pid, epoch, True) == INVALID_TXN_STATE, "nothing to commit"
    assert end_txn(tbroker, t, pid, epoch + 1, True) == PRODUCER_FENCED
    assert add_partitions(tbroker, t, pid + 1, epoch, {topic_name: [0]}) == \
        {(topic_name, 0): INVALID_PRODUCER_ID_MAPPING}
    assert add_partitions(tbroker, t, pid, epoch, {topic_name: [0], "no-such-topic": [0]}) == \
        {(topic_name, 0): 55, ("no-such-topic", 0): UNKNOWN_TOPIC_OR_PARTITION}  # 55: OPERATION_NOT_ATTEMPTED
    # A new instance bumps the epoch; the old one is fenced.
    err, pid2, epoch2 = init_pid(tbroker, t)
    assert (err, pid2, epoch2) == (0, pid, epoch + 1)
    assert add_partitions(tbroker, t, pid, epoch, {topic_name: [0]}) == \
        {(topic_name, 0): PRODUCER_FENCED}
    # The CLI: unknown ids fail with exit code 1, known ones are listed.
    r = admin_cli(tbroker, "transactions", "describe", "no-such-" + t)
    assert r.returncode == 1 and "TransactionalIdNotFound" in r.stderr, (r.returncode, r.stderr)
    r = admin_cli(tbroker, "-o", "json", "transactions", "list")
    assert r.returncode == 0, r.stderr
    assert {"transactional_id": t, "producer_id": pid, "state": "Empty"} in json.loads(r.stdout)
    r = admin_cli(tbroker, "transactions", "list", "--state", "Bogus")
    assert r.returncode == 2


def test_late_batch_after_an_abort_cannot_open_a_transaction(tbroker, topic_name):
    """KIP-890 part 1: a produce request held up past the end of its
    transaction (a paused broker, a full disk; the jepsen long run hit both)
    must not start a transaction the coordinator does not know. Without the
    check it would hold read_committed consumers back, and the producer's
    next commit would expose the aborted records."""
    create_topic(tbroker, topic_name, 1)
    t = tid()
    err, pid, epoch = init_pid(tbroker, t)
    assert err == 0
    assert add_partitions(tbroker, t, pid, epoch, {topic_name: [0]}) == {(topic_name, 0): 0}
    produce_txn(tbroker, t, topic_name, pid, epoch, [b"aborted-1"])
    assert end_txn(tbroker, t, pid, epoch, False) == 0
    # The late batch of the aborted transaction, same epoch, next sequence.
    assert produce_txn_code(tbroker, t, topic_name, pid, epoch, [b"late"], seq=1) == \
        INVALID_TXN_STATE
    # A fenced epoch, and a transactional batch without a transactional id.
    assert produce_txn_code(tbroker, t, topic_name, pid, epoch + 1, [b"x"]) == \
        INVALID_PRODUCER_EPOCH
    assert produce_txn_code(tbroker, "", topic_name, pid, epoch, [b"x"], seq=1) == \
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    # The producer's next transaction continues the sequence and commits.
    assert add_partitions(tbroker, t, pid, epoch, {topic_name: [0]}) == {(topic_name, 0): 0}
    produce_txn(tbroker, t, topic_name, pid, epoch, [b"committed"], seq=1)
    assert end_txn(tbroker, t, pid, epoch, True) == 0
    # Nothing hangs: a read_committed consumer reaches a later commit, and
    # neither the aborted nor the late record is visible.
    p = txn_producer(tbroker, tid())
    p.begin_transaction()
    p.produce(topic_name, value=b"after", partition=0)
    p.commit_transaction(30)
    assert read(tbroker, topic_name, "read_committed", until=b"after") == [b"committed", b"after"]
    assert read(tbroker, topic_name, "read_uncommitted", until=b"after") == \
        [b"aborted-1", b"committed", b"after"]


def test_late_txn_offset_commit_after_an_abort_is_refused(tbroker, topic_name):
    """The same for TxnOffsetCommit: offsets committed by a request held up
    past the abort must not stay pending and be applied by the producer's
    next commit (a consume-transform-produce loop would skip input)."""
    create_topic(tbroker, topic_name, 2)
    t, group = tid(), "g-" + tid()

    def add_offsets(pid, epoch):
        return raw.parse_end_txn_v1(raw_call(
            tbroker, 25, 1, raw.add_offsets_to_txn_v1(t, pid, epoch, group)))

    def commit_offsets(pid, epoch, offsets):
        deadline = time.time() + 20
        while True:
            codes = raw.parse_add_partitions_to_txn_v1(raw_call(
                tbroker, 28, 2, raw.txn_offset_commit_v2(t, group, pid, epoch, offsets)))
            if set(codes.values()) & set(RETRIABLE_COORDINATOR) and time.time() < deadline:
                time.sleep(0.2)  # the group's coordinator is loading
                continue
            return codes

    err, pid, epoch = init_pid(tbroker, t)
    assert err == 0
    assert add_offsets(pid, epoch) == 0
    assert commit_offsets(pid, epoch, {(topic_name, 0): 5}) == {(topic_name, 0): 0}
    assert end_txn(tbroker, t, pid, epoch, False) == 0
    # The late TxnOffsetCommit of the aborted transaction.
    assert commit_offsets(pid, epoch, {(topic_name, 0): 7}) == {(topic_name, 0): INVALID_TXN_STATE}
    # The next transaction commits an offset of the other partition only.
    assert add_offsets(pid, epoch) == 0
    assert commit_offsets(pid, epoch, {(topic_name, 1): 3}) == {(topic_name, 1): 0}
    assert end_txn(tbroker, t, pid, epoch, True) == 0
    c = Consumer({"bootstrap.servers": tbroker.bootstrap, "group.id": group})
    try:
        got = {tp.partition: tp.offset for tp in c.committed(
            [TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)], timeout=20)}
    finally:
        c.close()
    assert got == {0: -1001, 1: 3}, got


def test_consume_transform_produce_survives_sigkill(tbroker):
    # Defaults keep CI short; raise them for a soak (e.g. 50 kills, 20000 records).
    kills = int(os.environ.get("SKIFF_TXN_KILLS", "5"))
    n = int(os.environ.get("SKIFF_TXN_RECORDS", "1000"))
    delay = os.environ.get("SKIFF_TXN_WORKER_DELAY", "0.05")
    suffix = uuid.uuid4().hex[:8]
    src, dst, group, t = f"in-{suffix}", f"out-{suffix}", f"ctp-{suffix}", f"ctp-{suffix}"
    create_topic(tbroker, src, 2)
    create_topic(tbroker, dst, 1)
    inputs = [f"r{i:05d}".encode() for i in range(n)]
    produce_all(producer(tbroker), src, [(None, v) for v in inputs[: n // 2]], partition=0)
    produce_all(producer(tbroker), src, [(None, v) for v in inputs[n // 2:]], partition=1)
    rng = random.Random(int(os.environ.get("SKIFF_TXN_SEED", "7")))
    cmd = [sys.executable, os.path.join(HERE, "ctp_worker.py"), tbroker.bootstrap, src, "2", dst,
           group, t, delay]

    def start():
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    for _ in range(kills):
        w = start()
        time.sleep(rng.uniform(0.5, 3.0))
        w.send_signal(signal.SIGKILL)
        w.wait()
    before = len(set(read(tbroker, dst, "read_uncommitted", quiet=1, timeout=10)))
    print(f"{before} of {n} inputs processed (some maybe aborted) during {kills} kills")
    w = start()
    try:
        out = []
        deadline = time.time() + 90
        while len(out) < n and time.time() < deadline:
            out = read(tbroker, dst, "read_committed", count=n, quiet=2, timeout=30)
        assert w.poll() is None, w.stderr.read().decode()
    finally:
        w.send_signal(signal.SIGKILL)
        w.wait()
    expected = sorted(v.upper() for v in inputs)
    assert len(out) == n, f"{len(out)} of {n} records; duplicates: {len(out) - len(set(out))}"
    assert sorted(out) == expected, "each input exactly once"


def test_kafka_python_transactional_producer(tbroker, topic_name):
    kafka = pytest.importorskip("kafka")
    create_topic(tbroker, topic_name, 1)
    p = kafka.KafkaProducer(bootstrap_servers=tbroker.bootstrap, transactional_id=tid())
    try:
        p.init_transactions()
        p.begin_transaction()
        p.send(topic_name, b"kp-aborted", partition=0)
        p.flush()
        p.abort_transaction()
        p.begin_transaction()
        p.send(topic_name, b"kp-committed", partition=0)
        p.commit_transaction()
    finally:
        p.close()
    assert read(tbroker, topic_name, "read_committed", until=b"kp-committed") == [b"kp-committed"]


def test_admin_aborts_a_hanging_transaction(tbroker, topic_name):
    create_topic(tbroker, topic_name, 1)
    produce_all(producer(tbroker), topic_name, [(None, b"first")], partition=0)
    t = tid()
    err, pid, epoch = init_pid(tbroker, t)
    assert err == 0
    assert add_partitions(tbroker, t, pid, epoch, {topic_name: [0]}) == {(topic_name, 0): 0}
    produce_txn(tbroker, t, topic_name, pid, epoch, [b"hanging"])
    # kafka-transactions.sh style: find it by its start offset, abort it there.
    r = admin_cli(tbroker, "-o", "json", "transactions", "abort", "--topic", topic_name,
                  "--partition", "0", "--start-offset", "1")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["producer_id"] == pid
    produce_all(producer(tbroker), topic_name, [(None, b"last")], partition=0)
    assert read(tbroker, topic_name, "read_committed", until=b"last") == [b"first", b"last"]
    r = admin_cli(tbroker, "transactions", "abort", "--topic", topic_name, "--partition", "0",
                  "--start-offset", "1")
    assert r.returncode == 1, "nothing hangs there any more"
