"""Helpers shared by the consumer-group tests (classic and KIP-848)."""
import time

from clients import produce_all, producer


def fill(broker, topic, partitions, per_partition, start=0, with_topic=False):
    """Produce `per_partition` messages to each partition; returns what was
    written as (partition, offset), or (topic, partition, offset)."""
    p = producer(broker)
    out = []
    for part in range(partitions):
        msgs = [(None, f"{part}-{i}".encode()) for i in range(start, start + per_partition)]
        for pp, o in produce_all(p, topic, msgs, partition=part):
            out.append((topic, pp, o) if with_topic else (pp, o))
    return out


class Pump:
    """Polls several consumers in turn; commits every message synchronously
    before handling the next one, and records what each one consumed (as
    `key(message)`)."""

    def __init__(self, consumers, key=lambda m: (m.partition(), m.offset())):
        self.consumers = list(consumers)
        self.key = key
        self.seen = []

    def poll_round(self):
        for c in self.consumers:
            m = c.poll(0.05)
            if m is None or m.error():
                continue
            self.seen.append(self.key(m))
            c.commit(message=m, asynchronous=False)

    def until(self, cond, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.poll_round()
            if cond():
                return
        raise AssertionError("condition not reached in time; assignments: "
                             f"{[sorted(tp.partition for tp in c.assignment()) for c in self.consumers]}"
                             f"; seen {len(self.seen)}")

    def sizes(self):
        return sorted(len(c.assignment()) for c in self.consumers)
