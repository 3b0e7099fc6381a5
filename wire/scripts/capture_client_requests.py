"""Capture the first request frame real Kafka clients send, for wire's test corpus.

Listens on 127.0.0.1 (free port), points a client at it, saves the first whole
frame (size prefix included) to wire/tests/corpus/<name>.bin, then drops the
connection. Run with a Python that has confluent-kafka and kafka-python:

    /work/main/.venv/bin/python wire/scripts/capture_client_requests.py
"""

import os
import socket
import struct
import sys
import threading

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "corpus")


def capture(name, start_client):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    t = threading.Thread(target=start_client, args=(f"127.0.0.1:{port}",), daemon=True)
    t.start()
    srv.settimeout(20)
    conn, _ = srv.accept()
    conn.settimeout(20)
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    size = struct.unpack(">i", data[:4])[0]
    frame = data[: 4 + size]
    with open(os.path.join(OUT, name + ".bin"), "wb") as f:
        f.write(frame)
    api_key, version = struct.unpack(">hh", frame[4:8])
    print(f"{name}: api_key={api_key} version={version} {len(frame)} bytes")
    conn.close()
    srv.close()


def librdkafka_producer(bootstrap):
    import confluent_kafka

    p = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000})
    p.produce("t", b"v")
    p.flush(3)


def kafka_python_probe(bootstrap):
    import kafka

    try:
        kafka.KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=3000, max_block_ms=3000)
    except Exception:
        pass


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    capture("librdkafka-2.16-api-versions", librdkafka_producer)
    capture("kafka-python-3.0-api-versions", kafka_python_probe)
    sys.exit(0)
