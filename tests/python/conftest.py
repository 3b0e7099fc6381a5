"""Fixtures that run the real `skiff` binary for real-client tests.

The binary is $SKIFF_BIN (scripts/test builds it in release mode). Each broker
gets free loopback ports and its own data directory; it is killed at the end.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def skiff_bin():
    path = os.environ.get("SKIFF_BIN") or os.path.join(ROOT, "target", "release", "skiff")
    if not os.path.exists(path):
        pytest.fail(f"skiff binary not found at {path}: build it or set SKIFF_BIN")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A `skiff serve` process on loopback."""

    def __init__(self, data_dir, extra_args=()):
        self.data_dir = data_dir
        self.port = free_port()
        self.http_port = free_port()
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = os.path.join(data_dir, "broker.log")

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self, wait=True):
        args = [
            skiff_bin(), "serve",
            "--listen", self.bootstrap,
            "--http-listen", f"127.0.0.1:{self.http_port}",
            "--data-dir", self.data_dir,
            *self.extra_args,
        ]
        log = open(self.log_path, "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKIFF_")}
        env.setdefault("RUST_LOG", "info")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"broker not ready after {timeout}s:\n{self.log()}")

    def http_get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
            return r.status, r.read().decode()

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout=30):
        """Graceful stop (SIGTERM); returns the exit code."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode if self.proc else None

    def restart(self):
        self.kill9()
        return self.start()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-8000:]
        except OSError:
            return ""


@pytest.fixture
def data_dir():
    d = tempfile.mkdtemp(prefix="skiff-test-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def broker(data_dir):
    b = Broker(data_dir).start()
    yield b
    b.kill9()


@pytest.fixture
def make_broker(data_dir):
    """Factory for brokers with extra flags, e.g. make_broker("--set", "k=v")."""
    made = []

    def make(*extra, start=True):
        b = Broker(data_dir, extra)
        made.append(b)
        return b.start() if start else b

    yield make
    for b in made:
        b.kill9()


@pytest.fixture
def topic_name():
    return "t-" + uuid.uuid4().hex[:10]
