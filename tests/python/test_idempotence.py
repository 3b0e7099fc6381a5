"""Idempotent producers: real clients across kill -9, and the sequence rules
over the wire (duplicates, gaps, old epochs, control batches, restarts)."""
import os
import threading
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KTP
from kafka.record.util import calc_crc32c

from clients import consume, create_topic, producer
from kafka_raw import (
    Conn, call, init_producer_id_v0, parse_init_producer_id_v0_response,
    parse_produce_v3_response, produce_v3, producer_batch,
)

PRODUCE, INIT_PRODUCER_ID = 0, 22
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
UNKNOWN_PRODUCER_ID = 59
INVALID_RECORD = 87

KILLS = int(os.environ.get("SKIFF_IDEMPOTENCE_KILLS", "3"))


def test_confluent_idempotent_producer_across_kill9(broker, topic_name):
    create_topic(broker, topic_name, partitions=3)
    p = producer(broker, **{"enable.idempotence": True, "linger.ms": 2,
                            "message.timeout.ms": 120_000})
    acked, errors = [], []
    stop = threading.Event()

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked.append((msg.partition(), msg.offset(), msg.value()))

    def run():
        i = 0
        while not stop.is_set():
            try:
                p.produce(topic_name, key=b"k%d" % (i % 30), value=b"%08d" % i,
                          on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            p.poll(0.001 if i % 50 else 0.01)
        return i

    sent = []
    t = threading.Thread(target=lambda: sent.append(run()))
    t.start()
    try:
        for _ in range(KILLS):
            time.sleep(1.0)
            broker.kill9()
            time.sleep(0.3)
            broker.start()
        time.sleep(1.0)
    finally:
        stop.set()
        t.join()
    assert p.flush(120) == 0
    assert not errors, errors[:5]
    assert len(acked) == sent[0] > 0
    got = consume(broker, topic_name, len(acked) + 1, timeout=20)
    values = [m.value() for m in got]
    assert len(values) == len(set(values)) == len(acked), "a message was stored twice or lost"
    # in production order within each partition (per-key order is per partition)
    for part in range(3):
        seq = [int(m.value()) for m in got if m.partition() == part]
        assert seq == sorted(seq)
        offs = [m.offset() for m in got if m.partition() == part]
        assert offs == list(range(len(offs))), "offsets have a gap"
    assert {(a[0], a[1]) for a in acked} == {(m.partition(), m.offset()) for m in got}
    print(f"{len(acked)} idempotent messages acked across {KILLS} kill -9s, each read once")


def test_kafka_python_idempotent_round_trip(broker, topic_name):
    create_topic(broker, topic_name)
    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True,
                       acks="all")
    futures = [kp.send(topic_name, value=b"v%d" % i, partition=0) for i in range(200)]
    kp.flush()
    offsets = [f.get(timeout=30).offset for f in futures]
    kp.close()
    assert offsets == list(range(200))
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                      consumer_timeout_ms=5000)
    c.assign([KTP(topic_name, 0)])
    c.seek_to_beginning()
    vals = [m.value for m in c]
    c.close()
    assert vals == [b"v%d" % i for i in range(200)]


NOT_LEADER_OR_FOLLOWER = 6


def produce(conn, topic, batch):
    """-> (error_code, base_offset); retries while the partition is still opening."""
    deadline = time.time() + 15
    while True:
        [(_, _, err, base)] = parse_produce_v3_response(
            call(conn, PRODUCE, 3, produce_v3(topic, 0, batch)))
        if err != NOT_LEADER_OR_FOLLOWER or time.time() > deadline:
            return err, base
        time.sleep(0.2)


def test_sequence_rules_over_the_wire(broker, topic_name):
    create_topic(broker, topic_name)
    conn = Conn(broker.bootstrap)
    err, pid, epoch = parse_init_producer_id_v0_response(
        call(conn, INIT_PRODUCER_ID, 0, init_producer_id_v0()))
    assert (err, epoch) == (0, 0) and pid >= 0
    err2, pid2, _ = parse_init_producer_id_v0_response(
        call(conn, INIT_PRODUCER_ID, 0, init_producer_id_v0()))
    assert err2 == 0 and pid2 != pid

    first = producer_batch([b"a", b"b", b"c"], pid, 0, 0)
    assert produce(conn, topic_name, first) == (0, 0)
    assert produce(conn, topic_name, producer_batch([b"d"], pid, 0, 3)) == (0, 3)
    # the same batch again: its original offset, not stored again
    assert produce(conn, topic_name, first) == (0, 0)
    # a gap
    err, _ = produce(conn, topic_name, producer_batch([b"x"], pid, 0, 9))
    assert err == OUT_OF_ORDER_SEQUENCE_NUMBER
    # an unknown producer id must start at sequence 0: a later one would
    # acknowledge a gap (librdkafka then treats the unwritten batches before
    # it as delivered), so it gets UNKNOWN_PRODUCER_ID and the client bumps
    err, _ = produce(conn, topic_name, producer_batch([b"x"], 10**12, 0, 17))
    assert err == UNKNOWN_PRODUCER_ID
    assert produce(conn, topic_name, producer_batch([b"e"], 10**12, 0, 0)) == (0, 4)
    # a new epoch must start at 0; then the old epoch is fenced
    err, _ = produce(conn, topic_name, producer_batch([b"x"], pid, 1, 4))
    assert err == OUT_OF_ORDER_SEQUENCE_NUMBER
    assert produce(conn, topic_name, producer_batch([b"f"], pid, 1, 0)) == (0, 5)
    err, _ = produce(conn, topic_name, producer_batch([b"x"], pid, 0, 4))
    assert err == INVALID_PRODUCER_EPOCH
    # clients may not write control batches
    control = bytearray(producer_batch([b"x"], pid, 1, 1, transactional=True))
    control[21:23] = (int.from_bytes(control[21:23], "big") | 0x20).to_bytes(2, "big")
    control[17:21] = calc_crc32c(bytes(control[21:])).to_bytes(4, "big")
    err, _ = produce(conn, topic_name, bytes(control))
    assert err == INVALID_RECORD
    conn.close()
    assert [m.value() for m in consume(broker, topic_name, 6, timeout=10)] == \
        [b"a", b"b", b"c", b"d", b"e", b"f"]

    # the state survives a crash: the sequence continues, duplicates are still caught
    broker.kill9()
    broker.start()
    conn = Conn(broker.bootstrap)
    last = producer_batch([b"f"], pid, 1, 0)
    assert produce(conn, topic_name, last) == (0, 5)
    assert produce(conn, topic_name, producer_batch([b"g"], pid, 1, 1)) == (0, 6)
    err, _ = produce(conn, topic_name, producer_batch([b"x"], pid, 1, 5))
    assert err == OUT_OF_ORDER_SEQUENCE_NUMBER
    err, _ = produce(conn, topic_name, producer_batch([b"x"], pid, 0, 4))
    assert err == INVALID_PRODUCER_EPOCH
    conn.close()
    assert len(consume(broker, topic_name, 8, timeout=5)) == 7
