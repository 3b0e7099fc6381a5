"""Raw Kafka frames for malformed-input tests.

Valid record batches come from kafka-python's own builder; the request
envelopes are written here by hand, because the point is to send bytes no
well-behaved client would (and to corrupt them on purpose).
"""


import socket


import struct


from kafka.record.default_records import DefaultRecordBatchBuilder


def string(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def request(api_key, version, body, correlation_id=1, client_id="raw-test"):
    """Request header v1 + body, framed."""
    msg = struct.pack(">hhi", api_key, version, correlation_id) + string(client_id) + body
    return struct.pack(">i", len(msg)) + msg


def record_batch(values, base_offset=0):
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 20)
    for i, v in enumerate(values):
        b.append(i, timestamp=1_700_000_000_000 + i, key=None, value=v, headers=[])
    return bytes(b.build())


def produce_v3(topic, partition, records, acks=-1):
    body = string(None) + struct.pack(">hi", acks, 30_000)
    body += struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">i", partition)
    body += struct.pack(">i", len(records)) + records
    return body


def create_topics_v2(name, partitions, replication=1, configs=(), validate_only=False):
    body = struct.pack(">i", 1) + string(name) + struct.pack(">ih", partitions, replication)
    body += struct.pack(">i", 0)  # assignments
    body += struct.pack(">i", len(configs))
    for k, v in configs:
        body += string(k) + string(v)
    body += struct.pack(">i?", 30_000, validate_only)
    return body


class Conn:
    def __init__(self, bootstrap, timeout=10):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)

    def send(self, data):
        self.sock.sendall(data)

    def recv_frame(self):
        """Returns (correlation_id, body) or None if the broker closed the connection."""
        head = self._recv_exact(4)
        if head is None:
            return None
        (n,) = struct.unpack(">i", head)
        data = self._recv_exact(n)
        if data is None:
            return None
        return struct.unpack(">i", data[:4])[0], data[4:]

    def closed_by_peer(self):
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except (ConnectionResetError, BrokenPipeError):
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def close(self):
        self.sock.close()


def parse_produce_v3_response(body):
    """-> list of (topic, partition, error_code, base_offset)."""
    out = []
    pos = 0
    (nt,) = struct.unpack_from(">i", body, pos); pos += 4
    for _ in range(nt):
        (ln,) = struct.unpack_from(">h", body, pos); pos += 2
        name = body[pos:pos + ln].decode(); pos += ln
        (np,) = struct.unpack_from(">i", body, pos); pos += 4
        for _ in range(np):
            idx, err, base, _ts = struct.unpack_from(">ihqq", body, pos); pos += 22
            out.append((name, idx, err, base))
    return out


def parse_create_topics_v2_response(body):
    """-> list of (name, error_code, message)."""
    pos = 4  # throttle
    (nt,) = struct.unpack_from(">i", body, pos); pos += 4
    out = []
    for _ in range(nt):
        (ln,) = struct.unpack_from(">h", body, pos); pos += 2
        name = body[pos:pos + ln].decode(); pos += ln
        (err, ml) = struct.unpack_from(">hh", body, pos); pos += 4
        msg = None
        if ml >= 0:
            msg = body[pos:pos + ml].decode(); pos += ml
        out.append((name, err, msg))
    return out


def uvarint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def read_uvarint(body, pos):
    n = shift = 0
    while True:
        b = body[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, pos


def cstring(s):
    """Compact nullable string."""
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


def read_cstring(body, pos):
    n, pos = read_uvarint(body, pos)
    if n == 0:
        return None, pos
    return body[pos:pos + n - 1].decode(), pos + n - 1


def carray(items):
    """Compact nullable array of already-encoded items."""
    if items is None:
        return uvarint(0)
    return uvarint(len(items) + 1) + b"".join(items)


TAGS = uvarint(0)


def request_v2(api_key, version, body, correlation_id=1, client_id="raw-test"):
    """Request header v2 (flexible) + body, framed."""
    msg = struct.pack(">hhi", api_key, version, correlation_id) + string(client_id) + TAGS + body
    return struct.pack(">i", len(msg)) + msg


def consumer_group_heartbeat_v1(group, member_id, epoch, topics=None, regex=None,
                                assignor=None, owned=None, instance_id=None,
                                rebalance_timeout_ms=30_000):
    """ConsumerGroupHeartbeat v1 body; owned: list of (topic_id bytes, [partitions])."""
    body = cstring(group) + cstring(member_id) + struct.pack(">i", epoch)
    body += cstring(instance_id) + cstring(None) + struct.pack(">i", rebalance_timeout_ms)
    body += carray(None if topics is None else [cstring(t) for t in topics])
    body += cstring(regex) + cstring(assignor)
    body += carray(None if owned is None else [
        tid + carray([struct.pack(">i", p) for p in ps]) + TAGS for tid, ps in owned])
    return body + TAGS


def parse_consumer_group_heartbeat_response(body):
    """-> dict(error, message, member_id, epoch, interval, assignment[(topic_id, [p])] | None)."""
    _, pos = read_uvarint(body, 0)  # response header v1 tags
    _throttle, err = struct.unpack_from(">ih", body, pos); pos += 6
    msg, pos = read_cstring(body, pos)
    member, pos = read_cstring(body, pos)
    epoch, interval = struct.unpack_from(">ii", body, pos); pos += 8
    (present,) = struct.unpack_from(">b", body, pos); pos += 1
    assignment = None
    if present >= 0:
        assignment = []
        n, pos = read_uvarint(body, pos)
        for _ in range(max(n - 1, 0)):
            tid = body[pos:pos + 16]; pos += 16
            k, pos = read_uvarint(body, pos)
            ps = list(struct.unpack_from(f">{max(k - 1, 0)}i", body, pos)); pos += 4 * max(k - 1, 0)
            _, pos = read_uvarint(body, pos)
            assignment.append((tid, ps))
        _, pos = read_uvarint(body, pos)
    return {"error": err, "message": msg, "member_id": member, "epoch": epoch,
            "interval": interval, "assignment": assignment}


def offset_commit_v9(group, member_id, epoch, topic, partition, offset, metadata=""):
    body = cstring(group) + struct.pack(">i", epoch) + cstring(member_id) + cstring(None)
    part = struct.pack(">iqi", partition, offset, -1) + cstring(metadata) + TAGS
    body += carray([cstring(topic) + carray([part]) + TAGS])
    return body + TAGS


def parse_offset_commit_v9_response(body):
    """-> list of (topic, partition, error)."""
    _, pos = read_uvarint(body, 0)
    pos += 4  # throttle
    out = []
    nt, pos = read_uvarint(body, pos)
    for _ in range(nt - 1):
        name, pos = read_cstring(body, pos)
        np_, pos = read_uvarint(body, pos)
        for _ in range(np_ - 1):
            idx, err = struct.unpack_from(">ih", body, pos); pos += 6
            _, pos = read_uvarint(body, pos)
            out.append((name, idx, err))
        _, pos = read_uvarint(body, pos)
    return out


def txn_record_batch(values, producer_id, producer_epoch, base_sequence=0):
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=True,
                                  producer_id=producer_id, producer_epoch=producer_epoch,
                                  base_sequence=base_sequence, batch_size=1 << 20)
    for i, v in enumerate(values):
        b.append(i, timestamp=1_700_000_000_000 + i, key=None, value=v, headers=[])
    return bytes(b.build())


def produce_v3_txn(transactional_id, topic, partition, records, acks=-1):
    body = string(transactional_id) + struct.pack(">hi", acks, 30_000)
    body += struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">i", partition)
    body += struct.pack(">i", len(records)) + records
    return body


def find_coordinator_v1(key, key_type):
    return string(key) + struct.pack(">b", key_type)


def parse_find_coordinator_v1(body):
    """-> (error_code, node_id, host, port)."""
    pos = 4
    (err,) = struct.unpack_from(">h", body, pos); pos += 2
    (ml,) = struct.unpack_from(">h", body, pos); pos += 2
    if ml > 0:
        pos += ml
    (node,) = struct.unpack_from(">i", body, pos); pos += 4
    (hl,) = struct.unpack_from(">h", body, pos); pos += 2
    host = body[pos:pos + hl].decode(); pos += hl
    (port,) = struct.unpack_from(">i", body, pos)
    return err, node, host, port


def init_producer_id_v1(transactional_id, timeout_ms):
    return string(transactional_id) + struct.pack(">i", timeout_ms)


def parse_init_producer_id_v1(body):
    """-> (error_code, producer_id, producer_epoch)."""
    _throttle, err, pid, epoch = struct.unpack_from(">ihqh", body, 0)
    return err, pid, epoch


def add_partitions_to_txn_v1(transactional_id, producer_id, producer_epoch, topics):
    """topics: {name: [partition, ...]}"""
    body = string(transactional_id) + struct.pack(">qh", producer_id, producer_epoch)
    body += struct.pack(">i", len(topics))
    for name, parts in topics.items():
        body += string(name) + struct.pack(">i", len(parts))
        body += b"".join(struct.pack(">i", p) for p in parts)
    return body


def parse_add_partitions_to_txn_v1(body):
    """-> {(topic, partition): error_code}"""
    out = {}
    pos = 4
    (nt,) = struct.unpack_from(">i", body, pos); pos += 4
    for _ in range(nt):
        (ln,) = struct.unpack_from(">h", body, pos); pos += 2
        name = body[pos:pos + ln].decode(); pos += ln
        (np_,) = struct.unpack_from(">i", body, pos); pos += 4
        for _ in range(np_):
            p, err = struct.unpack_from(">ih", body, pos); pos += 6
            out[(name, p)] = err
    return out


def add_offsets_to_txn_v1(transactional_id, producer_id, producer_epoch, group):
    return string(transactional_id) + struct.pack(">qh", producer_id, producer_epoch) + \
        string(group)


def txn_offset_commit_v2(transactional_id, group, producer_id, producer_epoch, offsets):
    """offsets: {(topic, partition): offset}; the response parses with
    parse_add_partitions_to_txn_v1 (same shape)."""
    body = string(transactional_id) + string(group)
    body += struct.pack(">qh", producer_id, producer_epoch)
    topics = {}
    for (t, p), o in offsets.items():
        topics.setdefault(t, []).append((p, o))
    body += struct.pack(">i", len(topics))
    for name, parts in topics.items():
        body += string(name) + struct.pack(">i", len(parts))
        for p, o in parts:
            body += struct.pack(">iqi", p, o, -1) + string(None)
    return body


def end_txn_v1(transactional_id, producer_id, producer_epoch, commit):
    return string(transactional_id) + struct.pack(">qh?", producer_id, producer_epoch, commit)


def parse_end_txn_v1(body):
    """-> error_code"""
    return struct.unpack_from(">ih", body, 0)[1]


def call(conn, api_key, version, body, correlation_id=7):
    """Send one request and return the response body (after the correlation id)."""
    conn.send(request(api_key, version, body, correlation_id=correlation_id))
    frame = conn.recv_frame()
    assert frame is not None, "the broker closed the connection"
    assert frame[0] == correlation_id
    return frame[1]


def producer_batch(values, producer_id, epoch, base_sequence, transactional=False):
    """An idempotent (or transactional) batch from kafka-python's builder."""
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=transactional,
                                  producer_id=producer_id, producer_epoch=epoch,
                                  base_sequence=base_sequence, batch_size=1 << 20)
    for i, v in enumerate(values):
        b.append(i, timestamp=1_700_000_000_000 + i, key=None, value=v, headers=[])
    return bytes(b.build())


def init_producer_id_v0(transactional_id=None, timeout_ms=60_000):
    return string(transactional_id) + struct.pack(">i", timeout_ms)


def parse_init_producer_id_v0_response(body):
    """-> (error_code, producer_id, producer_epoch)."""
    _throttle, err, pid, epoch = struct.unpack_from(">ihqh", body, 0)
    return err, pid, epoch


def compact_string(s):
    b = s.encode()
    return uvarint(len(b) + 1) + b


def flexible_request(api_key, version, body, correlation_id=1, client_id="raw-test"):
    """Request header v2 (flexible versions) + body, framed."""
    msg = struct.pack(">hhi", api_key, version, correlation_id) + string(client_id) + b"\x00" + body
    return struct.pack(">i", len(msg)) + msg


def write_txn_markers_v1(markers):
    """markers: [(producer_id, epoch, commit, coordinator_epoch, {topic: [partitions]})]."""
    body = uvarint(len(markers) + 1)
    for pid, epoch, commit, coord, topics in markers:
        body += struct.pack(">qh?", pid, epoch, commit) + uvarint(len(topics) + 1)
        for name, parts in topics.items():
            body += compact_string(name) + uvarint(len(parts) + 1)
            body += b"".join(struct.pack(">i", p) for p in parts) + b"\x00"
        body += struct.pack(">i", coord) + b"\x00"
    return body + b"\x00"


def parse_write_txn_markers_v1_response(body):
    """Body after the correlation id (response header v1) -> {(pid, topic, partition): error}."""
    _tags, pos = read_uvarint(body, 0)
    out = {}
    n, pos = read_uvarint(body, pos)
    for _ in range(n - 1):
        (pid,) = struct.unpack_from(">q", body, pos); pos += 8
        nt, pos = read_uvarint(body, pos)
        for _ in range(nt - 1):
            ln, pos = read_uvarint(body, pos)
            name = body[pos:pos + ln - 1].decode(); pos += ln - 1
            np_, pos = read_uvarint(body, pos)
            for _ in range(np_ - 1):
                idx, err = struct.unpack_from(">ih", body, pos); pos += 6
                _t, pos = read_uvarint(body, pos)
                out[(pid, name, idx)] = err
            _t, pos = read_uvarint(body, pos)
        _t, pos = read_uvarint(body, pos)
    return out


def call_once(bootstrap, api_key, version, body):
    """One request on a fresh connection; returns the response body."""
    c = Conn(bootstrap)
    try:
        c.send(request(api_key, version, body))
        frame = c.recv_frame()
        assert frame is not None, "broker closed the connection"
        return frame[1]
    finally:
        c.close()
