"""The partition side of transactions with a real read_committed consumer
(librdkafka): transactional batches written over the wire, ended with
WriteTxnMarkers; the consumer stops at the last stable offset, sees committed
records and filters aborted ones using the broker's aborted-transaction list."""
import time

import pytest

from clients import consume, create_topic
from kafka_raw import (
    Conn, request_v2, parse_produce_v3_response, parse_write_txn_markers_v1_response,
    produce_v3, producer_batch, request, write_txn_markers_v1,
)

PRODUCE, WRITE_TXN_MARKERS = 0, 27
INVALID_PRODUCER_EPOCH = 47


@pytest.fixture
def broker(make_broker):
    """These tests play the transaction coordinator with WriteTxnMarkers, so
    partitions must take transactional batches no coordinator knows."""
    return make_broker("--set", "transaction_partition_verification_enable=false")


def produce(conn, topic, batch):
    conn.send(request(PRODUCE, 3, produce_v3(topic, 0, batch), correlation_id=3))
    _, body = conn.recv_frame()
    [(_, _, err, base)] = parse_produce_v3_response(body)
    return err, base


def end_txn(conn, topic, pid, epoch, commit):
    conn.send(request_v2(WRITE_TXN_MARKERS, 1,
                               write_txn_markers_v1([(pid, epoch, commit, 0, {topic: [0]})]),
                               correlation_id=4))
    _, body = conn.recv_frame()
    return parse_write_txn_markers_v1_response(body)[(pid, topic, 0)]


def values(msgs):
    return [m.value() for m in msgs]


def test_read_committed_consumer_with_markers(broker, topic_name):
    create_topic(broker, topic_name)
    conn = Conn(broker.bootstrap)
    assert produce(conn, topic_name, producer_batch([b"c1", b"c2"], 500, 0, 0, True)) == (0, 0)
    assert produce(conn, topic_name, producer_batch([b"a1"], 501, 0, 0, True)) == (0, 2)
    # both transactions open: read_committed sees nothing, read_uncommitted all
    assert values(consume(broker, topic_name, 1, timeout=3,
                          **{"isolation.level": "read_committed"})) == []
    assert values(consume(broker, topic_name, 3, timeout=10,
                          **{"isolation.level": "read_uncommitted"})) == [b"c1", b"c2", b"a1"]
    # commit 500 (LSO moves to 501's first offset), abort 501
    assert end_txn(conn, topic_name, 500, 0, True) == 0
    assert values(consume(broker, topic_name, 3, timeout=3,
                          **{"isolation.level": "read_committed"})) == [b"c1", b"c2"]
    assert end_txn(conn, topic_name, 501, 0, False) == 0
    assert produce(conn, topic_name, producer_batch([b"c3"], 500, 0, 2, True)) == (0, 5)
    assert end_txn(conn, topic_name, 500, 0, True) == 0
    got = consume(broker, topic_name, 4, timeout=5, **{"isolation.level": "read_committed"})
    assert values(got) == [b"c1", b"c2", b"c3"], "aborted records must be filtered"
    # a marker from a fenced epoch
    assert produce(conn, topic_name, producer_batch([b"e"], 502, 3, 0, False))[0] == 0
    assert end_txn(conn, topic_name, 502, 1, False) == INVALID_PRODUCER_EPOCH
    conn.close()

    # after kill -9 (no close snapshot: replay) the aborted index is still served
    broker.kill9()
    broker.start()
    time.sleep(0.5)
    got = consume(broker, topic_name, 5, timeout=8, **{"isolation.level": "read_committed"})
    assert values(got) == [b"c1", b"c2", b"c3", b"e"]
