"""kcat (Debian's build, on librdkafka 2.0.2)."""
import shutil
import subprocess

import pytest


def kcat(*args, input=None, timeout=60):
    exe = shutil.which("kcat")
    if exe is None:
        pytest.fail("kcat not installed (scripts/test installs it)")
    r = subprocess.run([exe, *args], input=input, capture_output=True, timeout=timeout)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def test_kcat_produce_consume_metadata(broker, topic_name):
    lines = "\n".join(f"VIN{i:014d}:report {i}" for i in range(200)) + "\n"
    kcat("-b", broker.bootstrap, "-P", "-t", topic_name, "-K:", "-H", "src=kcat",
         "-X", "topic.request.required.acks=all", input=lines.encode())
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-e", "-o", "beginning",
               "-f", "%k|%s|%o|%h\n")
    rows = out.strip().split("\n")
    assert len(rows) == 200
    assert rows[0] == "VIN00000000000000|report 0|0|src=kcat"
    assert rows[-1] == "VIN00000000000199|report 199|199|src=kcat"
    md = kcat("-b", broker.bootstrap, "-L", "-t", topic_name)
    assert f'topic "{topic_name}" with 1 partitions' in md
    assert "leader 1" in md


def test_kcat_consume_from_end_and_offset(broker, topic_name):
    kcat("-b", broker.bootstrap, "-P", "-t", topic_name, input=b"a\nb\nc\nd\n")
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-e", "-o", "2", "-f", "%s\n")
    assert out.split() == ["c", "d"]
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic_name, "-e", "-o", "-1", "-f", "%s\n")
    assert out.split() == ["d"]
