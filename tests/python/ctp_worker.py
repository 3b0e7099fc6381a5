"""A consume-transform-produce worker for test_transactions.py: reads the
input topic (read_committed, by assignment, from the group's committed
offsets), writes each record upper-cased to the output topic and commits the
input offsets in the same transaction (send_offsets_to_transaction). Runs
until killed; the test SIGKILLs it at random points and restarts it.

usage: ctp_worker.py BOOTSTRAP IN_TOPIC PARTITIONS OUT_TOPIC GROUP TRANSACTIONAL_ID
"""
import sys

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def main():
    bootstrap, in_topic, partitions, out_topic, group, tid = sys.argv[1:7]
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": tid,
        "transaction.timeout.ms": 60000,
        "linger.ms": 5,
    })
    # Fence the previous incarnation (and abort its open transaction) before
    # reading committed offsets, so none of its pending offsets are current.
    producer.init_transactions(30)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    })
    consumer.assign([TopicPartition(in_topic, p) for p in range(int(partitions))])
    while True:
        msgs = consumer.consume(num_messages=20, timeout=0.5)
        msgs = [m for m in msgs if m.error() is None]
        if not msgs:
            continue
        producer.begin_transaction()
        for m in msgs:
            producer.produce(out_topic, key=m.key(), value=m.value().upper())
        positions = consumer.position(consumer.assignment())
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
        try:
            producer.commit_transaction(30)
        except KafkaException as e:
            print(f"commit failed: {e}", file=sys.stderr, flush=True)
            sys.exit(3)
        print(f"committed {len(msgs)}", flush=True)


if __name__ == "__main__":
    main()
