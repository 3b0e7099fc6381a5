"""A full WAL disk: produce requests are refused with a retriable error while
it lasts, nothing acknowledged is lost, and the broker takes writes again
once space returns, without a restart.

The WAL directory is a small tmpfs mounted by the test (root, as in CI)."""
import errno
import os
import subprocess
import time

import pytest

from clients import consume, create_topic, producer

WAL_DISK = "16m"


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                       capture_output=True)
    if r.returncode != 0:
        msg = f"cannot mount a tmpfs for the WAL: {r.stderr.decode().strip()}"
        if os.environ.get("SKIFF_REQUIRE_EXTERNAL"):
            pytest.fail(msg)
        pytest.skip(msg)


def fill(path):
    """Write a ballast file until the file system is full; returns its path."""
    ballast = os.path.join(path, "ballast")
    chunk = b"\0" * (64 << 10)
    with open(ballast, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    return ballast


@pytest.fixture
def wal_tmpfs(data_dir):
    wal = os.path.join(data_dir, "wal")
    mount_tmpfs(wal, WAL_DISK)
    yield wal
    subprocess.run(["umount", "-l", wal], capture_output=True)


def test_writes_resume_after_the_wal_disk_was_full(make_broker, wal_tmpfs, topic_name):
    # Small segments, so uploaded ones are trimmed and the tmpfs has room.
    b = make_broker("--set", "storage.wal.segment_bytes=1048576",
                    "--set", "storage.wal.group_commit_max_bytes=1048576",
                    "--set", "storage.upload.interval=100ms")
    create_topic(b, topic_name, partitions=2)
    acked, errors = [], []

    def on_delivery(err, msg):
        (errors if err else acked).append(err or (msg.partition(), msg.offset(), msg.value()))

    p = producer(b, **{"enable.idempotence": True, "message.timeout.ms": 120_000,
                       "linger.ms": 5})

    def send(prefix, n, pad=0):
        for i in range(n):
            p.produce(topic_name, key=b"k%d" % (i % 8),
                      value=b"%s-%05d-" % (prefix, i) + b"x" * pad,
                      on_delivery=on_delivery)
            p.poll(0)

    send(b"before", 300)
    assert p.flush(30) == 0 and not errors and len(acked) == 300

    ballast = fill(wal_tmpfs)
    # More than the 1 MiB of zeros the WAL keeps written ahead of its tail,
    # which needs no new space.
    send(b"during", 300, pad=8 << 10)
    # The broker refuses them (KAFKA_STORAGE_ERROR, retriable): the client
    # keeps retrying, nothing is acknowledged while the disk is full.
    assert p.flush(4) > 0, "writes were acknowledged with the WAL disk full"
    assert "file WAL write failed" in b.log()
    assert b.proc.poll() is None, "the broker died of a full disk"

    os.remove(ballast)
    assert p.flush(60) == 0, "writes did not resume once the WAL disk had room"
    send(b"after", 300)
    assert p.flush(60) == 0
    assert not errors, errors[:5]
    assert len(acked) == 900
    assert b.proc.poll() is None, "the broker restarted"

    got = consume(b, topic_name, 900, timeout=30)
    values = [m.value() for m in got]
    assert len(values) == len(set(values)) == 900, "a message was lost or stored twice"
    assert {a[2] for a in acked} == set(values)
    assert {(a[0], a[1]) for a in acked} == {(m.partition(), m.offset()) for m in got}
    for part in (0, 1):
        offs = sorted(m.offset() for m in got if m.partition() == part)
        assert offs == list(range(len(offs))), "offsets have a gap"
