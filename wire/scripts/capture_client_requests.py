"""Capture request frames real Kafka clients send, for wire's test corpus.

1. The first frame a client sends to a silent listener (its ApiVersions probe).
2. Everything a producer sends to `capture_broker` (wire/examples), which answers
   well enough for it to produce one message with each compression codec: the
   Metadata, InitProducerId and Produce frames land in wire/tests/corpus/.

Run from the repository root with a Python that has confluent-kafka and
kafka-python:

    cargo build -p skiff-wire --example capture_broker
    /work/main/.venv/bin/python wire/scripts/capture_client_requests.py \
        $CARGO_TARGET_DIR/debug/examples/capture_broker
"""

import glob
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "corpus")
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def first_frame(name, start_client):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    threading.Thread(target=start_client, args=(f"127.0.0.1:{port}",), daemon=True).start()
    srv.settimeout(20)
    conn, _ = srv.accept()
    conn.settimeout(20)
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    frame = data[: 4 + struct.unpack(">i", data[:4])[0]]
    with open(os.path.join(OUT, name + ".bin"), "wb") as f:
        f.write(frame)
    print(f"{name}: api_key={struct.unpack('>h', frame[4:6])[0]} {len(frame)} bytes")
    conn.close()
    srv.close()


def librdkafka_produce(bootstrap, codec="none"):
    import confluent_kafka

    p = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 5, "message.timeout.ms": 5000}
    )
    for i in range(3):
        p.produce("telemetry", key=b"LSVAX4182E2123456", value=b'{"speed": %d}' % i, headers={"src": b"can"})
    p.flush(10)


def kafka_python_produce(bootstrap, codec="none"):
    import kafka

    try:
        p = kafka.KafkaProducer(
            bootstrap_servers=bootstrap,
            compression_type=None if codec == "none" else codec,
            request_timeout_ms=5000,
            max_block_ms=5000,
        )
        for i in range(3):
            p.send("telemetry", key=b"LSVAX4182E2123456", value=b'{"speed": %d}' % i, headers=[("src", b"can")])
        p.flush(10)
        p.close(2)
    except Exception as e:  # the capture keeps what arrived
        print("kafka-python:", codec, e)


def via_broker(broker_bin, name, produce, codec):
    tmp = tempfile.mkdtemp()
    proc = subprocess.Popen([broker_bin, tmp], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        produce(f"127.0.0.1:{port}", codec)
    finally:
        proc.kill()
        proc.wait()
    for path in sorted(glob.glob(os.path.join(tmp, "*.bin"))):
        api = os.path.basename(path).split("-", 1)[1]
        if api.startswith("ApiVersions"):
            continue
        dest = f"{name}-{codec}-{api}" if api.startswith("Produce") else f"{name}-{api}"
        shutil.copy(path, os.path.join(OUT, dest))
        print(dest)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    first_frame("librdkafka-2.16-ApiVersions", librdkafka_produce)
    first_frame("kafka-python-3.0-ApiVersions", kafka_python_produce)
    if len(sys.argv) > 1:
        for codec in CODECS:
            via_broker(sys.argv[1], "librdkafka-2.16", librdkafka_produce, codec)
            via_broker(sys.argv[1], "kafka-python-3.0", kafka_python_produce, codec)
